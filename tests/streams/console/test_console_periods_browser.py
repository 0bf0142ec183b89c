"""The Market view's periods, comparisons, exports, print and layout in a real headless Chromium.

The store holds a market seen on three days (2025-11-21, 2026-11-20 and 2026-11-21), so that a day has a
previous day and a year-earlier day to be compared with. Every figure is read twice: as rendered on the page,
and from the store with SQL written here from the definitions, never the console's own queries.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from dmm.query import query_rows
from dmm.stack import EmbeddedStack
from tests.support.console import change, exact, percent, point_change, readable

pytestmark = pytest.mark.slow

DB = "datamarket"
LAST = "2026-11-21"


def url(stack: EmbeddedStack, path: str = "/") -> str:
    return f"http://{stack.settings.web_host}:{stack.settings.web_port}{path}"


def figures(stack: EmbeddedStack, first: str, last: str) -> dict[str, Any]:
    """The period's figures by the definitions (China days, both inclusive), straight from the raw tables."""
    days = f"toDate(occurred_at, 'Asia/Shanghai') BETWEEN toDate('{first}') AND toDate('{last}')"
    first_seen = f"toDate(first, 'Asia/Shanghai') BETWEEN toDate('{first}') AND toDate('{last}')"
    (row,) = query_rows(
        stack.settings,
        f"SELECT toString(sum(amount)) AS total, count() AS n, "
        f"toString(sumIf(amount, venue = 'on_exchange')) AS on_ex, "
        f"toString(sumIf(amount, high_quality = 1)) AS hq, "
        f"(SELECT count() FROM (SELECT product_id, min(occurred_at) AS first FROM {DB}.listings FINAL "
        f"WHERE action = 'list' GROUP BY product_id) WHERE {first_seen}) AS new_products, "
        f"(SELECT count() FROM (SELECT party, min(at) AS first FROM ("
        f"SELECT buyer_id AS party, occurred_at AS at FROM {DB}.trades FINAL "
        f"UNION ALL SELECT seller_id, occurred_at FROM {DB}.trades FINAL "
        f"UNION ALL SELECT assumeNotNull(seller_id), occurred_at FROM {DB}.listings FINAL "
        f"WHERE action = 'list' AND seller_id IS NOT NULL) GROUP BY party) WHERE {first_seen}) AS new_participants "
        f"FROM {DB}.trades FINAL WHERE {days}",
    )
    return {
        "amount": Decimal(row["total"]),
        "trades": int(row["n"]),
        "on_exchange": Decimal(row["on_ex"]),
        "high_quality": Decimal(row["hq"]),
        "new_products": int(row["new_products"]),
        "new_participants": int(row["new_participants"]),
    }


def by_exchange(stack: EmbeddedStack, first: str, last: str) -> dict[str, Decimal]:
    rows = query_rows(
        stack.settings,
        f"SELECT exchange_id, toString(sum(amount)) AS s FROM {DB}.trades FINAL "
        f"WHERE toDate(occurred_at, 'Asia/Shanghai') BETWEEN toDate('{first}') AND toDate('{last}') "
        f"GROUP BY exchange_id",
    )
    return {r["exchange_id"]: Decimal(r["s"]) for r in rows}


def count(n: int) -> str:
    return f"{n:,}"


def open_market(page: Any, stack: EmbeddedStack, lang: str = "zh") -> None:
    if lang == "en":
        page.add_init_script("localStorage.setItem('dmm-console-lang', 'en')")
    page.goto(url(stack, "/#market"))
    page.wait_for_selector("body[data-loaded=market]", timeout=30_000)


def choose(page: Any, period: str, expected_range: str) -> None:
    page.click(f"[data-period={period}]")
    page.wait_for_selector(f'body[data-range="{expected_range}"]', timeout=30_000)


def pick_day(page: Any, day: str) -> None:
    page.fill("#period-date", day)
    page.dispatch_event("#period-date", "change")


def kpi(page: Any, key: str, part: str) -> str:
    return str(page.text_content(f"#kpi-{key} {part}"))


def assert_kpis(page: Any, now: dict[str, Any], bases: dict[str, dict[str, Any]], lang: str) -> None:
    """Every key figure, beside the previous period and the year-earlier one with the change, as SQL says."""
    assert kpi(page, "amount", ".figure") == readable(now["amount"], lang)
    assert page.get_attribute("#kpi-amount .figure .amount", "title") == exact(now["amount"])
    assert kpi(page, "trades", ".figure") == count(now["trades"])
    assert kpi(page, "new-products", ".figure") == count(now["new_products"])
    assert kpi(page, "new-participants", ".figure") == count(now["new_participants"])
    assert kpi(page, "on-exchange", ".figure") == percent(now["on_exchange"], now["amount"])
    assert kpi(page, "high-quality", ".figure") == percent(now["high_quality"], now["amount"])
    for which, base in bases.items():
        compare = f"[data-compare={which}]"
        assert kpi(page, "amount", f"{compare} .base") == readable(base["amount"], lang)
        assert kpi(page, "amount", f"{compare} .delta") == change(now["amount"], base["amount"])
        for key, name in (
            ("trades", "trades"),
            ("new-products", "new_products"),
            ("new-participants", "new_participants"),
        ):
            assert kpi(page, key, f"{compare} .base") == count(base[name]), (which, key)
            assert kpi(page, key, f"{compare} .delta") == change(now[name], base[name]), (which, key)
        for key, name in (("on-exchange", "on_exchange"), ("high-quality", "high_quality")):
            assert kpi(page, key, f"{compare} .base") == percent(base[name], base["amount"]), (which, key)
            shift = point_change(now[name], now["amount"], base[name], base["amount"], lang)
            assert kpi(page, key, f"{compare} .delta") == shift, (which, key)


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_a_day_picked_is_compared_with_the_day_before_and_a_year_earlier(
    page: Any, history_stack: EmbeddedStack, lang: str
) -> None:
    stack = history_stack
    open_market(page, stack, lang)
    pick_day(page, "2026-11-20")  # away from the default first, so that the range below is the one picked
    page.wait_for_selector('body[data-range="2026-11-20/2026-11-20"]', timeout=30_000)
    pick_day(page, LAST)
    page.wait_for_selector(f'body[data-range="{LAST}/{LAST}"]', timeout=30_000)
    now = figures(stack, LAST, LAST)
    previous = figures(stack, "2026-11-20", "2026-11-20")
    year_ago = figures(stack, "2025-11-21", "2025-11-21")
    assert now["amount"] > 0 and previous["amount"] > 0 and year_ago["amount"] > 0
    assert previous["new_products"] > 0 and year_ago["new_products"] > 0  # 2026 ids first listed on the 20th
    assert_kpis(page, now, {"previous": previous, "year_ago": year_ago}, lang)
    assert change(now["amount"], previous["amount"]) != "—"

    rows = page.eval_on_selector_all(
        "#exchanges tbody tr[data-code]",
        "rows => rows.map(r => [r.dataset.code, r.querySelector('[data-col=amount] .amount').title,"
        " r.querySelector('[data-col=previous]').textContent, r.querySelector('[data-col=year_ago]').textContent])",
    )
    today, before, earlier = (by_exchange(stack, d, d) for d in (LAST, "2026-11-20", "2025-11-21"))
    for code, title, versus_previous, versus_year in rows:
        assert title == exact(today.get(code, Decimal(0))), code
        assert versus_previous == change(today.get(code, 0), before.get(code, 0)), code
        assert versus_year == change(today.get(code, 0), earlier.get(code, 0)), code

    # A day trends by hour: one bar per hour up to the watermark's, the sum of the bars the day's amount.
    hours = query_rows(
        stack.settings,
        f"SELECT toString(sum(amount)) AS s FROM {DB}.trades FINAL WHERE toDate(occurred_at, 'Asia/Shanghai') = "
        f"'{LAST}' GROUP BY toStartOfHour(occurred_at) ORDER BY toStartOfHour(occurred_at)",
    )
    titles = page.eval_on_selector_all("#trend rect.bar title", "ts => ts.map(t => t.textContent)")
    shown = [Decimal(re.search(r"¥([\d,]+\.\d\d)", text).group(1).replace(",", "")) for text in titles]  # type: ignore[union-attr]
    assert [s for s in shown if s] == [Decimal(h["s"]) for h in hours]
    page.screenshot(path=f"/tmp/dmm-console-day-{lang}.png", full_page=True)


def test_every_period_kind_reads_its_china_days_up_to_the_watermark(page: Any, history_stack: EmbeddedStack) -> None:
    stack = history_stack
    open_market(page, stack)
    expected = {  # the period holding the watermark's day (a Saturday), stopped at that day
        "week": ("2026-11-16", LAST, "2026-11-10", "2026-11-15"),
        "month": ("2026-11-01", LAST, "2026-10-11", "2026-10-31"),
        "quarter": ("2026-10-01", LAST, "2026-08-10", "2026-09-30"),
        "half": ("2026-07-01", LAST, "2026-02-07", "2026-06-30"),
        "year": ("2026-01-01", LAST, "2025-02-10", "2025-12-31"),
    }
    for period, (first, last, previous_first, previous_last) in expected.items():
        choose(page, period, f"{first}/{last}")
        now = figures(stack, first, last)
        previous = figures(stack, previous_first, previous_last)
        year_ago = figures(stack, first.replace("2026", "2025", 1), last.replace("2026", "2025", 1))
        assert_kpis(page, now, {"previous": previous, "year_ago": year_ago}, "zh")
        assert previous_first in page.text_content("#compare-note"), period
    # The year before holds 2025-11-21: the year's previous period is no longer empty.
    assert page.text_content("#kpi-amount [data-compare=previous] .delta") != "—"
    # A month trends by day, a year by month; their ticks are round (1, 2 or 5 times a power of ten) in one unit.
    assert page.text_content("#trend-title") == "成交额走势（按月）"
    assert page.locator("#trend rect.bar").count() == 11
    choose(page, "month", f"2026-11-01/{LAST}")
    assert page.text_content("#trend-title") == "成交额走势（按日）"
    assert page.locator("#trend rect.bar").count() == 21
    ticks = [Decimal(t) for t in page.eval_on_selector_all("#trend text.tick", "ts => ts.map(t => t.textContent)")]
    steps = {b - a for a, b in itertools.pairwise(ticks)}
    assert ticks[0] == 0 and len(steps) == 1, ticks
    (step,) = steps
    assert step.normalize().as_tuple().digits[0] in (1, 2, 5) and len(step.normalize().as_tuple().digits) == 1, step
    month = figures(stack, "2026-11-01", LAST)
    unit = page.text_content("#trend-unit")
    size = {"单位：亿元": Decimal(10**8), "单位：万元": Decimal(10**4), "单位：元": Decimal(1)}[str(unit)]
    days = query_rows(
        stack.settings,
        f"SELECT toString(max(s)) AS top FROM (SELECT sum(amount) AS s FROM {DB}.trades FINAL "
        f"WHERE toDate(occurred_at, 'Asia/Shanghai') BETWEEN '2026-11-01' AND '{LAST}' "
        f"GROUP BY toDate(occurred_at, 'Asia/Shanghai'))",
    )
    top = Decimal(days[0]["top"]) / size
    assert ticks[-2] < top <= ticks[-1] and top >= 1, (ticks, top)
    assert month["amount"] > 0


def test_a_custom_range_of_days_and_back_to_the_latest(page: Any, history_stack: EmbeddedStack) -> None:
    stack = history_stack
    open_market(page, stack, "en")
    choose(page, "custom", f"{LAST}/{LAST}")
    page.fill("#period-from", "2025-11-21")
    page.dispatch_event("#period-from", "change")
    page.wait_for_selector(f'body[data-range="2025-11-21/{LAST}"]', timeout=30_000)
    everything = figures(stack, "2025-11-21", LAST)
    assert kpi(page, "amount", ".figure") == readable(everything["amount"], "en")
    assert kpi(page, "trades", ".figure") == count(everything["trades"])
    assert page.text_content("#trend-title") == "Traded amount per month"
    assert "366 days" in page.text_content("#span-note")
    page.click("#period-latest")
    page.wait_for_selector(f'body[data-range="{LAST}/{LAST}"][data-period=day]', timeout=30_000)


def test_tables_download_as_csv_with_exact_figures_readable_by_excel(page: Any, history_stack: EmbeddedStack) -> None:
    stack = history_stack
    open_market(page, stack)
    choose(page, "month", f"2026-11-01/{LAST}")
    with page.expect_download() as downloaded:
        page.click("[data-csv=exchanges]")
    download = downloaded.value
    assert download.suggested_filename == f"dmm-exchanges-2026-11-01_{LAST}.csv"
    raw = Path(download.path()).read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 byte-order mark: Excel reads the Chinese
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    header, body = rows[0], rows[1:]
    assert header[:4] == ["交易机构", "成交额", "占比", "成交笔数"]
    expected = by_exchange(stack, "2026-11-01", LAST)
    amounts = {re.search(r"\((\w+)\)$", r[0]).group(1): Decimal(r[1]) for r in body}  # type: ignore[union-attr]
    assert {code: a for code, a in amounts.items() if a} == expected
    assert all(re.fullmatch(r"\d+\.\d\d", r[1]) for r in body)  # exact to the fen, never 万 / 亿

    with page.expect_download() as downloaded:
        page.click("[data-csv=sectors]")
    sectors = list(csv.reader(io.StringIO(Path(downloaded.value.path()).read_text(encoding="utf-8-sig"))))
    assert sum(Decimal(r[1]) for r in sectors[1:]) == figures(stack, "2026-11-01", LAST)["amount"]


def test_the_period_report_prints_without_controls_and_with_the_exact_figures(
    page: Any, history_stack: EmbeddedStack
) -> None:
    stack = history_stack
    page.set_viewport_size({"width": 1000, "height": 900})
    open_market(page, stack)
    choose(page, "month", f"2026-11-01/{LAST}")
    month = figures(stack, "2026-11-01", LAST)
    page.emulate_media(media="print")
    for hidden in (".top", "#periods", "#print", "[data-csv=exchanges]"):
        assert not page.is_visible(hidden), hidden
    assert page.is_visible(".report-head")
    assert page.text_content("#kpi-amount .exact") == exact(month["amount"])
    assert page.is_visible("#kpi-amount .exact")
    overflow = page.eval_on_selector_all(".scroll", "nodes => nodes.map(n => getComputedStyle(n).overflowX)")
    assert set(overflow) == {"visible"}  # tables whole on paper, not clipped to a scroll box
    page.screenshot(path="/tmp/dmm-console-report.png", full_page=True)

    pdf = Path("/tmp/dmm-console-report.pdf")
    page.pdf(path=str(pdf), format="A4", print_background=True)  # Chromium's print to PDF (what --print-to-pdf runs)
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF")
    assert len(re.findall(rb"/Type\s*/Page\b", data)) >= 1
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, check=True, text=True)
        assert exact(month["amount"]) in text.stdout
        assert f"2026-11-01 至 {LAST}" in text.stdout

"""The console in a real headless Chromium, on a real worker fed a seeded replay.

Every figure checked here is read twice: as rendered on the page, and from the store
through the worker's SQL socket (what `dmm sql` runs), with SQL written here from the
contract's definitions, not taken from the console's own queries.
"""

from __future__ import annotations

import csv
import io
import json
import re
import urllib.error
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from dmm.query import query_rows
from dmm.stack import EmbeddedStack
from tests.support.console import TOKEN, exact, percent, readable

pytestmark = pytest.mark.slow

DB = "datamarket"
WATERMARK = (
    "(SELECT max(t) FROM ("
    + " UNION ALL ".join(
        f"SELECT max(occurred_at) AS t FROM {DB}.{table}" for table in ("listings", "trades", "usage", "heartbeats")
    )
    + "))"
)
TODAY = f"toDate(occurred_at, 'Asia/Shanghai') = toDate({WATERMARK}, 'Asia/Shanghai')"


def url(stack: EmbeddedStack, path: str = "/") -> str:
    return f"http://{stack.settings.web_host}:{stack.settings.web_port}{path}"


def sql(stack: EmbeddedStack, statement: str) -> list[dict[str, Any]]:
    return query_rows(stack.settings, statement)


def one(stack: EmbeddedStack, statement: str) -> dict[str, Any]:
    rows = sql(stack, statement)
    assert len(rows) == 1, rows
    return rows[0]


def money(text: str) -> Decimal:
    """A rendered amount (`¥1,234.50` or `1,234.50`) back to its exact Decimal."""
    assert re.fullmatch(r"¥?-?[\d,]+\.\d\d", text.strip()), text
    return Decimal(text.strip().lstrip("¥").replace(",", ""))


def number(text: str) -> int:
    """The first whole number in a rendered label (`1,234 笔成交` -> 1234)."""
    found = re.search(r"\d[\d,]*", text)
    assert found, text
    return int(found.group().replace(",", ""))


def open_view(page: Any, stack: EmbeddedStack, view: str) -> None:
    page.goto(url(stack, f"/#{view}"))
    page.wait_for_selector(f"body[data-loaded={view}]", timeout=30_000)


def table_cells(page: Any, table: str, column: str) -> dict[str, str]:
    return dict(
        page.eval_on_selector_all(
            f"#{table} tbody tr[data-code]",
            f"rows => rows.map(r => [r.dataset.code, r.querySelector('[data-col={column}]').textContent])",
        )
    )


def exact_cells(page: Any, table: str, column: str) -> dict[str, Decimal]:
    """A table's amounts as exact on hover (the cell's title), by row code."""
    titles = page.eval_on_selector_all(
        f"#{table} tbody tr[data-code]",
        f"rows => rows.map(r => [r.dataset.code, r.querySelector('[data-col={column}] .amount').title])",
    )
    return {code: money(title) for code, title in titles}


def test_market_page_totals_equal_the_store_to_the_fen(page: Any, console_stack: EmbeddedStack) -> None:
    stack = console_stack
    open_view(page, stack, "market")
    today = one(
        stack,
        f"SELECT toString(sum(amount)) AS total, count() AS trades, "
        f"toString(sumIf(amount, venue = 'on_exchange')) AS on_exchange, "
        f"toString(sumIf(amount, venue = 'off_exchange_registered')) AS off_exchange, "
        f"toString(sumIf(amount, high_quality = 1)) AS hq FROM {DB}.trades FINAL WHERE {TODAY}",
    )
    assert Decimal(today["total"]) > 0
    assert page.text_content("#kpi-amount .figure") == readable(today["total"], "zh")
    assert page.get_attribute("#kpi-amount .figure .amount", "title") == exact(today["total"])
    assert number(page.text_content("#kpi-amount .sub")) == int(today["trades"])
    assert number(page.text_content("#kpi-trades .figure")) == int(today["trades"])
    assert page.text_content("#kpi-on-exchange .figure") == percent(today["on_exchange"], today["total"])
    assert percent(today["off_exchange"], today["total"]) in page.text_content("#kpi-on-exchange .sub")
    assert page.text_content("#kpi-high-quality .figure") == percent(today["hq"], today["total"])
    assert page.get_attribute("#kpi-high-quality .sub .amount", "title") == exact(today["hq"])

    by_exchange = sql(
        stack,
        f"SELECT exchange_id, toString(sum(amount)) AS s FROM {DB}.trades FINAL WHERE {TODAY} GROUP BY exchange_id",
    )
    rendered = exact_cells(page, "exchanges", "amount")
    assert {code: amount for code, amount in rendered.items() if amount} == {
        r["exchange_id"]: Decimal(r["s"]) for r in by_exchange
    }
    shown = table_cells(page, "exchanges", "amount")
    assert all(shown[r["exchange_id"]] == readable(r["s"], "zh") for r in by_exchange)
    by_sector = sql(
        stack, f"SELECT sector, toString(sum(amount)) AS s FROM {DB}.trades FINAL WHERE {TODAY} GROUP BY sector"
    )
    rendered = exact_cells(page, "sectors", "amount")
    assert {code: amount for code, amount in rendered.items() if amount} == {
        r["sector"]: Decimal(r["s"]) for r in by_sector
    }

    products = one(
        stack,
        f"SELECT uniqExact(product_id) AS products FROM {DB}.listings FINAL "
        f"WHERE action = 'list' AND {TODAY} AND product_id NOT IN "
        f"(SELECT product_id FROM {DB}.listings FINAL WHERE action = 'list' AND NOT ({TODAY}))",
    )
    assert number(page.text_content("#kpi-new-products .figure")) == int(products["products"]) > 0

    participants = one(
        stack,
        f"SELECT count() AS n FROM (SELECT party, min(at) AS first FROM ("
        f"SELECT buyer_id AS party, occurred_at AS at FROM {DB}.trades FINAL "
        f"UNION ALL SELECT seller_id, occurred_at FROM {DB}.trades FINAL "
        f"UNION ALL SELECT assumeNotNull(seller_id), occurred_at FROM {DB}.listings FINAL "
        f"WHERE action = 'list' AND seller_id IS NOT NULL) GROUP BY party) "
        f"WHERE toDate(first, 'Asia/Shanghai') = toDate({WATERMARK}, 'Asia/Shanghai')",
    )
    assert number(page.text_content("#kpi-new-participants .figure")) == int(participants["n"])
    # Nothing before this market's day: no base to compare with, so no change but "—".
    assert page.text_content("#kpi-amount [data-compare=previous] .delta") == "—"
    assert page.text_content("#kpi-amount [data-compare=year_ago] .base") == readable("0", "zh")

    if page.is_visible("#metering-card"):  # sections the API adds for the period when it has them
        metering = one(stack, f"SELECT sum(calls) AS calls FROM {DB}.usage FINAL WHERE {TODAY}")
        assert number(page.text_content("#metering-calls")) == int(metering["calls"])
    if page.is_visible("#recognition-card"):
        recognized = one(
            stack,
            f"SELECT uniqExact(product_id) AS n FROM (SELECT exchange_id, product_id, "
            f"argMax(action, occurred_at) AS last, argMaxIf(recognized_by, occurred_at, action = 'list') AS by "
            f"FROM {DB}.listings FINAL WHERE action IN ('list', 'delist') GROUP BY exchange_id, product_id) "
            f"WHERE last = 'list' AND arrayExists(x -> x != exchange_id, by)",
        )
        assert number(page.text_content("#recognition-products")) == int(recognized["n"])
    if page.is_visible("#public-card"):
        free_deliveries = one(
            stack,
            f"SELECT count() AS n FROM {DB}.trades FINAL WHERE source = 'public' AND {TODAY} AND product_id IN "
            f"(SELECT product_id FROM {DB}.listings FINAL WHERE action = 'list' GROUP BY product_id "
            f"HAVING argMax(pricing, occurred_at) IN ('free', 'conditional_free'))",
        )
        assert number(page.text_content("#public-deliveries")) == int(free_deliveries["n"])
    page.screenshot(path="/tmp/dmm-console-market.png", full_page=True)


def test_language_switch_changes_the_labels_and_units_not_the_figures_and_is_remembered(
    page: Any, console_stack: EmbeddedStack
) -> None:
    open_view(page, console_stack, "market")
    total = money(page.get_attribute("#kpi-amount .figure .amount", "title"))
    assert page.text_content("#kpi-amount .figure") == readable(total, "zh")
    assert page.get_attribute("html", "lang") == "zh-CN"
    assert page.text_content("[data-view=market]") == "市场"
    assert "成交额" in page.text_content("#exchanges thead")
    assert "上海数据交易所" in page.text_content("#exchanges tbody")

    page.click("#lang")
    page.wait_for_selector("html[lang=en]")
    assert page.text_content("[data-view=market]") == "Market"
    assert page.text_content("[data-view=surveillance]") == "Surveillance"
    assert "Traded" in page.text_content("#exchanges thead")
    assert "Shanghai Data Exchange" in page.text_content("#exchanges tbody")
    assert page.text_content("#kpi-amount .figure") == readable(total, "en")
    assert money(page.get_attribute("#kpi-amount .figure .amount", "title")) == total
    page.screenshot(path="/tmp/dmm-console-market-en.png", full_page=True)

    open_view(page, console_stack, "feeds")
    assert page.get_attribute("html", "lang") == "en"
    assert "Rejected messages" in page.text_content("#feeds thead")


def test_feeds_page_shows_each_exchange_s_health_as_stored(page: Any, console_stack: EmbeddedStack) -> None:
    stack = console_stack
    open_view(page, stack, "feeds")
    totals = one(
        stack,
        "SELECT "
        + " + ".join(f"(SELECT count() FROM {DB}.{t} FINAL)" for t in ("listings", "trades", "usage", "heartbeats"))
        + f" AS events, (SELECT count() FROM {DB}.rejected_events FINAL) AS rejected, "
        f"(SELECT count() FROM {DB}.duplicate_events FINAL) AS duplicates, "
        + " + ".join(f"(SELECT sum(late) FROM {DB}.{t} FINAL)" for t in ("listings", "trades", "usage", "heartbeats"))
        + " AS late",
    )
    assert int(totals["rejected"]) == 3 and int(totals["duplicates"]) == 2
    for name in ("events", "rejected", "duplicates", "late"):
        assert number(page.text_content(f"#feed-total-{name}")) == int(totals[name]), name

    rejected = sql(stack, f"SELECT exchange_id, count() AS n FROM {DB}.rejected_events FINAL GROUP BY exchange_id")
    rendered = {code: number(text) for code, text in table_cells(page, "feeds", "rejected").items()}
    expected: dict[str, int] = {}
    for row in rejected:
        code = row["exchange_id"] if row["exchange_id"] in rendered and row["exchange_id"] else "unattributed"
        expected[code] = expected.get(code, 0) + int(row["n"])
    assert {code: n for code, n in rendered.items() if n} == expected
    duplicates = sql(stack, f"SELECT exchange_id, count() AS n FROM {DB}.duplicate_events FINAL GROUP BY exchange_id")
    rendered_duplicates = {
        c: number(t) for c, t in table_cells(page, "feeds", "duplicates").items() if c != "unattributed"
    }
    assert {c: n for c, n in rendered_duplicates.items() if n} == {r["exchange_id"]: int(r["n"]) for r in duplicates}

    latest = " UNION ALL ".join(
        f"SELECT max(occurred_at) AS t FROM {DB}.{table} WHERE exchange_id = 'SHDEX'"
        for table in ("listings", "trades", "usage", "heartbeats")
    )
    last = one(stack, f"SELECT formatDateTime(max(t), '%Y-%m-%d %H:%i:%S', 'Asia/Shanghai') AS t FROM ({latest})")
    assert page.text_content("#feeds tr[data-code=SHDEX] [data-col=last_event]") == last["t"]
    assert page.text_content("#feeds tr[data-code=SHDEX] [data-col=status]") in ("正常", "静默")
    page.screenshot(path="/tmp/dmm-console-feeds.png", full_page=True)


def test_surveillance_lists_the_stored_alerts_and_filters_them(page: Any, console_stack: EmbeddedStack) -> None:
    stack = console_stack
    open_view(page, stack, "surveillance")
    stored = sql(
        stack, f"SELECT dedup_key, kind, message_zh FROM {DB}.alerts FINAL ORDER BY detected_at DESC, dedup_key"
    )
    assert {row["kind"] for row in stored} >= {
        "self_dealing",
        "price_outlier",
        "wash_trading",
        "pricing_policy_violation",
    }
    keys = page.eval_on_selector_all("#alerts tbody tr[data-key]", "rows => rows.map(r => r.dataset.key)")
    assert sorted(keys) == sorted(row["dedup_key"] for row in stored)
    acted = {r["dedup_key"] for r in sql(stack, f"SELECT DISTINCT dedup_key FROM {DB}.alert_actions")}
    assert number(page.text_content(".count.open")) == len({row["dedup_key"] for row in stored} - acted)
    first = stored[0]
    assert first["message_zh"] in page.text_content(f'#alerts tr[data-key="{first["dedup_key"]}"]')
    times = one(
        stack,
        f"SELECT formatDateTime(window_end, '%Y-%m-%d %H:%i:%S', 'Asia/Shanghai') AS event, "
        f"formatDateTime(detected_at, '%Y-%m-%d %H:%i:%S', 'Asia/Shanghai') AS detected "
        f"FROM {DB}.alerts FINAL WHERE dedup_key = '{first['dedup_key']}'",
    )
    row = f'#alerts tr[data-key="{first["dedup_key"]}"]'
    assert page.text_content(f"{row} [data-col=event_time]") == (times["event"] or "—")
    assert page.text_content(f"{row} [data-col=detected]") == times["detected"]
    headers = page.eval_on_selector_all("#alerts thead th", "cells => cells.map(c => c.textContent)")
    assert headers[:2] == ["事件时间", "发现时间（墙钟）"]
    assert "墙钟" in page.text_content("footer") and "时间为事件时间" not in page.text_content("footer")

    page.select_option("#f-kind", "self_dealing")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#alerts tbody tr[data-key]')]"
        ".every(r => r.dataset.key.startsWith('self_dealing'))"
    )
    filtered = page.eval_on_selector_all("#alerts tbody tr[data-key]", "rows => rows.map(r => r.dataset.key)")
    assert sorted(filtered) == sorted(row["dedup_key"] for row in stored if row["kind"] == "self_dealing")


def test_the_token_in_the_address_dmm_up_prints_is_kept_for_the_tab_and_taken_off_the_address(
    page: Any, console_stack: EmbeddedStack
) -> None:
    csp_violations: list[str] = []

    def note(message: Any) -> None:  # Chromium reports a Content-Security-Policy violation on the console
        if "Content Security Policy" in message.text:
            csp_violations.append(message.text)

    page.on("console", note)
    page.goto(url(console_stack, f"/#token={TOKEN}"))
    page.wait_for_selector("body[data-loaded=market]", timeout=30_000)
    assert "token" not in page.url
    assert page.evaluate("() => sessionStorage.getItem('dmm-console-token')") == TOKEN
    open_view(page, console_stack, "surveillance")
    assert page.input_value("#op-token") == TOKEN
    assert csp_violations == []


def test_ack_and_resolve_with_the_token_are_recorded_in_the_store(page: Any, console_stack: EmbeddedStack) -> None:
    stack = console_stack
    open_view(page, stack, "surveillance")
    key = page.eval_on_selector("#alerts tbody tr.row-open", "row => row.dataset.key")
    row = f'#alerts tr[data-key="{key}"]'
    page.fill("#op-actor", "ops-wang")
    page.fill("#op-note", "核查中")
    page.fill("#op-token", TOKEN)
    page.click(f"{row} button[data-action=ack]")
    page.wait_for_selector(f"{row} .status[data-status=acked]")
    assert "ops-wang" in page.text_content(f"{row} [data-col=status]")
    page.screenshot(path="/tmp/dmm-console-surveillance.png", full_page=True)

    page.fill("#op-note", "已处理")
    page.click(f"{row} button[data-action=resolve]")
    page.wait_for_selector(f"{row} .status[data-status=resolved]")
    assert page.is_disabled(f"{row} button[data-action=resolve]")
    actions = sql(stack, f"SELECT action, actor, note FROM {DB}.alert_actions WHERE dedup_key = '{key}' ORDER BY at")
    assert [(a["action"], a["actor"], a["note"]) for a in actions] == [
        ("ack", "ops-wang", "核查中"),
        ("resolve", "ops-wang", "已处理"),
    ]


@pytest.mark.parametrize("header", [None, "Bearer not-the-token"])
def test_alert_actions_without_the_token_are_forbidden_and_change_nothing(
    console_stack: EmbeddedStack, header: str | None
) -> None:
    stack = console_stack
    key = sql(stack, f"SELECT dedup_key FROM {DB}.alerts FINAL ORDER BY dedup_key LIMIT 1")[0]["dedup_key"]
    before = one(stack, f"SELECT count() AS n FROM {DB}.alert_actions")
    body = json.dumps({"dedup_key": key, "action": "resolve", "actor": "mallory"}).encode()
    request = urllib.request.Request(url(stack, "/api/alert-action"), data=body, method="POST")
    if header:
        request.add_header("Authorization", header)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 403
    assert one(stack, f"SELECT count() AS n FROM {DB}.alert_actions") == before


def test_without_a_token_the_console_is_read_only_and_an_empty_store_renders(
    page: Any, readonly_stack: EmbeddedStack
) -> None:
    stack = readonly_stack
    config = json.loads(urllib.request.urlopen(url(stack, "/api/console/config"), timeout=30).read())
    assert config["actions_enabled"] is False
    open_view(page, stack, "surveillance")
    assert "只读模式" in page.text_content("#op-hint")
    for field in ("#op-actor", "#op-note", "#op-token"):
        assert page.is_disabled(field), field
    assert number(page.text_content(".count.open")) == 0
    request = urllib.request.Request(
        url(stack, "/api/alert-action"),
        data=json.dumps({"dedup_key": "k", "action": "ack", "actor": "a"}).encode(),
        headers={"Authorization": "Bearer anything"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 403

    open_view(page, stack, "market")
    assert page.text_content("#span-note") == "暂无数据：尚未收到事件。"
    assert page.text_content("#trend") == "暂无数据"
    assert page.locator("#trend .tick").count() == 0
    assert page.text_content("#kpi-amount .figure") in (readable("0", "zh"), "—")
    open_view(page, stack, "feeds")
    statuses = page.eval_on_selector_all("#feeds tbody [data-col=status]", "cells => cells.map(c => c.textContent)")
    assert statuses and set(statuses) == {"未接入"}


def test_alerts_and_feeds_download_as_csv(page: Any, console_stack: EmbeddedStack) -> None:
    page.goto(url(console_stack, "/#surveillance"))
    page.wait_for_selector("body[data-loaded=surveillance]", timeout=30_000)
    stored = sql(console_stack, f"SELECT dedup_key, product_id FROM {DB}.alerts FINAL")
    with page.expect_download() as downloaded:
        page.click("[data-csv=alerts]")
    rows = list(csv.DictReader(io.StringIO(Path(downloaded.value.path()).read_text(encoding="utf-8-sig"))))
    assert sorted(r["告警键"] for r in rows) == sorted(r["dedup_key"] for r in stored)
    assert {r["告警键"]: r["产品"] for r in rows} == {r["dedup_key"]: r["product_id"] or "" for r in stored}
    assert "操作" not in rows[0]  # the buttons are not data
    page.goto(url(console_stack, "/#feeds"))
    page.wait_for_selector("body[data-loaded=feeds]", timeout=30_000)
    with page.expect_download() as downloaded:
        page.click("[data-csv=feeds]")
    feeds = list(csv.DictReader(io.StringIO(Path(downloaded.value.path()).read_text(encoding="utf-8-sig"))))
    assert sum(int(r["拒收消息"].replace(",", "")) for r in feeds) == 3


LAYOUT_VIEWS = ("market", "surveillance", "feeds")


@pytest.mark.parametrize("width", [390, 1440])
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_no_view_overflows_the_window(browser: Any, console_stack: EmbeddedStack, width: int, lang: str) -> None:
    context = browser.new_context(viewport={"width": width, "height": 900})
    try:
        page = context.new_page()
        page.add_init_script(f"localStorage.setItem('dmm-console-lang', '{lang}')")
        for view in LAYOUT_VIEWS:
            page.goto(url(console_stack, f"/#{view}"))
            page.wait_for_selector(f"body[data-loaded={view}]", timeout=30_000)
            widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
            assert widths[0] <= widths[1], (view, widths)
            # The navigation keeps each label on one line.
            heights = page.eval_on_selector_all(".tabs a", "links => links.map(a => a.getBoundingClientRect().height)")
            assert max(heights) < 48, (view, heights)
            if view == "market":  # the key figures are whole, not cut
                cut = page.eval_on_selector_all(
                    ".kpi .figure",
                    "nodes => nodes.filter(n => n.scrollWidth > n.clientWidth"
                    " || n.getBoundingClientRect().right > n.closest('.kpi').getBoundingClientRect().right)"
                    ".map(n => n.textContent)",
                )
                assert cut == [], cut
            if view == "surveillance" and width == 1440:
                box = page.locator("#alerts tbody tr[data-key] button[data-action=resolve]").first.bounding_box()
                assert box is not None and box["x"] + box["width"] <= width, box
            page.screenshot(path=f"/tmp/dmm-console-{view}-{width}-{lang}.png", full_page=True)
    finally:
        context.close()

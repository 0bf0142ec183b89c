"""A real stack fed a seeded market with anomalies and bad lines, and Debian's Chromium to look at it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from dmm.stack import EmbeddedStack
from tests.support.console import TOKEN, history_file, market_file, replayed_stack
from tests.support.stack import stack_settings

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def console_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    """`dmm worker` with a console token, after the seeded file is replayed and fully stored."""
    workdir = tmp_path_factory.mktemp("console")
    settings = stack_settings(workdir).model_copy(update={"console_token": SecretStr(TOKEN)})
    with replayed_stack(settings, workdir, market_file) as stack:
        yield stack


@pytest.fixture(scope="module")
def history_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    """`dmm worker` after a market of three days (a year apart, and the day before the last) is replayed."""
    workdir = tmp_path_factory.mktemp("history")
    settings = stack_settings(workdir)
    with replayed_stack(settings, workdir, history_file) as stack:
        yield stack


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Debian's headless Chromium driven by Playwright (never a browser Playwright downloads)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
    if not CHROMIUM.exists() or shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed: run scripts/install-chromium")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def readonly_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    """`dmm worker` without a console token, on an empty store."""
    workdir = tmp_path_factory.mktemp("readonly")
    with EmbeddedStack(stack_settings(workdir), workdir / "stack") as stack:
        yield stack


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    """A fresh browser context (no remembered language) with uncaught page errors collected."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})  # type: ignore[attr-defined]
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert not errors, errors

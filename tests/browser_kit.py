"""Driving the app in a real browser: what the browser test and `benchmarks/app_load.py` share.

Not a test module (pytest collects `test_*.py` only). The benchmark imports it as `tests.browser_kit`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

# Re-exported: the browser test and the benchmark import them from here.
from tests.helpers.server import free_port as free_port
from tests.helpers.server import healthy as healthy
from tests.helpers.server import running_app as running_app
from tests.helpers.server import streamlit_server as streamlit_server
from tests.helpers.server import wait_until as wait_until

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextlib.contextmanager
def chromium(extra_args: tuple[str, ...] = ()) -> Iterator:
    """Debian's Chromium, headless, through Playwright, with CHROMIUM_ARGS and `extra_args`; skips the calling
    test when Chromium or the playwright package is missing."""
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS + list(extra_args)
        )
        try:
            yield browser
        finally:
            browser.close()


def settle(page, timeout: float = 90, quiet: float = 1.5) -> float:
    """Waits until Streamlit has finished running the script (its status widget gone for `quiet` s).

    Returns:
        The time (`time.perf_counter()`) when the script was last seen finished.
    """
    status = page.get_by_test_id("stStatusWidget")
    quiet_since = None
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if status.count() and status.first.is_visible():
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.perf_counter()
        elif time.perf_counter() - quiet_since > quiet:
            return quiet_since
        time.sleep(0.05)
    return time.perf_counter()


def sidebar_links(page) -> list[str]:
    """The labels of the app's page links in the sidebar, in order (a link's text: its icon's name, its label)."""
    links = page.get_by_test_id("stSidebar").get_by_test_id("stPageLink-NavLink")
    return [text.split()[-1] for text in links.all_inner_texts()]


def go_to(page, name: str) -> None:
    """Opens a page through the sidebar's links and waits for it to settle."""
    links = page.get_by_test_id("stSidebar").get_by_test_id("stPageLink-NavLink")
    links.filter(has_text=name).first.click()
    settle(page)


def set_number(page, label: str, value: int) -> None:
    """Types a value into a number input of the Train page (opening "Hyperparameters" if needed)."""
    field = page.get_by_label(label, exact=True)
    # A rerun that changes the page's layout (another strategy) shows the new field while the old one, stale,
    # is still there: on a loaded machine for longer than `settle` waits.
    wait_until(lambda: field.count() == 1, 30, f"a single {label!r} field")
    if not field.is_visible():  # Inside the collapsed "Hyperparameters" expander.
        page.get_by_text("Hyperparameters").click()
    field.fill(str(value))
    field.press("Enter")
    settle(page)

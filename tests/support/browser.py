"""Debian's chromium driven by Playwright's client (no browser download: `make browser` installs it)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# As the machine's probe starts it: no sandbox as root, no background calls to a network that is closed
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@contextmanager
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    assert executable, "Debian's chromium is not installed (make browser)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def new_page(browser: Any) -> Iterator[Any]:
    """A page in a fresh context; ``page.errors`` collects the script errors it raised."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors
    try:
        yield page
    finally:
        context.close()


def expect(locator: Any) -> Any:
    """Playwright's waiting assertions (the dashboard's CSP forbids eval, so no JavaScript predicates)."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def screenshots(fallback: Path) -> Path:
    """Where screenshots go: TUNEFLOW_SCREENSHOTS (``make screenshots``: docs/), else ``fallback``."""
    target = Path(os.environ.get("TUNEFLOW_SCREENSHOTS") or fallback)
    target.mkdir(parents=True, exist_ok=True)
    return target


def dashboard_url(api: str, key: str) -> str:
    return f"{api}/dashboard?code={key}"

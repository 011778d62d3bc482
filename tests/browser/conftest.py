"""Browser fixtures: headless Chromium (the system's /usr/bin/chromium, driven by
Playwright; no browser is ever downloaded) and the real server processes of the e2e tier.

Chromium missing: the tests skip locally and fail under CI=true (`service_unreachable`).
`scripts/test` installs it with apt when it runs as root.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.conftest import service_unreachable
from tests.e2e.conftest import live_server, smtp_server
from tests.security_stage.conftest import Server, production_env, start_server, stop_server

__all__ = ["live_server", "smtp_server"]  # the e2e tier's fixtures, used here too

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
OUTPUT_DIR = Path(__file__).resolve().parents[2] / "test-output"


def chromium_path() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", "chromium"):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Per test: Playwright's sync API holds an event loop on this thread while it runs,
    which would break every asyncio test that runs after it."""
    executable = chromium_path()
    if executable is None:
        service_unreachable("Chromium", "no /usr/bin/chromium (apt-get install -y chromium)")
    assert executable is not None
    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(
                executable_path=executable, headless=True, args=CHROMIUM_ARGS
            )
        except Exception as exc:
            service_unreachable("Chromium", f"{executable} did not start: {exc}")
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def output_dir() -> Path:
    OUTPUT_DIR.mkdir(exist_ok=True)
    return OUTPUT_DIR


@pytest.fixture
def production_server(tmp_path: Path) -> Iterator[Server]:
    workdir = tmp_path / "prod-server"
    server = start_server(workdir, production_env(workdir))
    try:
        yield server
    finally:
        stop_server(server)

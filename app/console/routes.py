"""The console's routes: /console/ and its files (index.html, ES modules, stylesheets),
straight from app/static/console/ — no build step, nothing from elsewhere. With
STAFF_CONSOLE=false none of this is mounted and /console/ answers 404."""

from __future__ import annotations

from pathlib import Path

from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

CONSOLE_URL = "/console"
CONSOLE_DIR = Path(__file__).resolve().parents[1] / "static" / "console"


def console_routes(enabled: bool) -> list[BaseRoute]:
    if not enabled:
        return []
    # html=True: /console/ serves index.html
    return [Mount(CONSOLE_URL, StaticFiles(directory=CONSOLE_DIR, html=True), name="console")]

"""The README's web front end, run in Chromium: a page on an origin listed in CORS_ORIGINS
logs in and reads its orders with fetch and opens the live-updates WebSocket; a page on
any other origin is stopped by the browser on both."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import Page

from tests.e2e.conftest import DEMO_PASSWORD
from tests.security_stage.conftest import Server, start_server, stop_server

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

README = Path(__file__).resolve().parents[2] / "README.md"
README_API = "http://127.0.0.1:8000/graphql"
CODE = re.compile(r"^[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}$")


def readme_front_end_code() -> str:
    section = README.read_text().split("## From a web front end", 1)[1]
    match = re.search(r"```js\n(.*?)```", section, re.DOTALL)
    assert match, "README: no ```js block under 'From a web front end'"
    return match.group(1)


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!doctype html><title>a shop front end</title>"
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def origins() -> Iterator[tuple[str, str]]:
    """Two static sites on 127.0.0.1 (each port its own origin): (listed, unlisted)."""
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), _Page) for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        listed, unlisted = (f"http://127.0.0.1:{s.server_address[1]}" for s in servers)
        yield listed, unlisted
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


@pytest.fixture
def api_server(tmp_path: Path, origins: tuple[str, str]) -> Iterator[Server]:
    workdir = tmp_path / "server"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "APP_ENV": "development",
        "DATABASE_URL": f"sqlite:///{workdir / 'orders.db'}",
        "MAIL_DIR": str(workdir / "mail"),
        "CORS_ORIGINS": origins[0],
    }
    server = start_server(workdir, env)
    try:
        yield server
    finally:
        stop_server(server)


def run_front_end(page: Page, origin: str, api_url: str) -> str:
    page.goto(origin + "/")
    code = readme_front_end_code().replace(README_API, api_url)
    script = f"""async () => {{
      {code}
      try {{
        return JSON.stringify(await myOrderCodes("alice@example.com", "{DEMO_PASSWORD}"));
      }} catch (error) {{
        return "blocked: " + error;
      }}
    }}"""
    result: str = page.evaluate(script)
    return result


def open_socket(page: Page, ws_url: str) -> str:
    """ "ack" if a graphql-transport-ws connection opens and is acknowledged, else "refused"."""
    result: str = page.evaluate(
        """(url) => new Promise((resolve) => {
          const ws = new WebSocket(url, "graphql-transport-ws");
          ws.onopen = () => ws.send(JSON.stringify({ type: "connection_init", payload: {} }));
          ws.onmessage = (event) => {
            resolve(JSON.parse(event.data).type === "connection_ack" ? "ack" : "refused");
            ws.close();
          };
          ws.onerror = () => resolve("refused");
          ws.onclose = () => resolve("refused");
          setTimeout(() => resolve("timeout"), 10000);
        })""",
        ws_url,
    )
    return result


def test_a_listed_origin_uses_the_api_from_the_browser(
    api_server: Server, origins: tuple[str, str], page: Page
) -> None:
    api_url = f"{api_server.base_url}/graphql"
    result = run_front_end(page, origins[0], api_url)
    assert not result.startswith("blocked"), result
    codes = re.findall(r'"([^"]+)"', result)
    assert len(codes) == 4 and all(CODE.match(code) for code in codes)
    assert open_socket(page, api_url.replace("http", "ws", 1)) == "ack"


def test_an_unlisted_origin_is_stopped_by_the_browser(
    api_server: Server, origins: tuple[str, str], page: Page
) -> None:
    api_url = f"{api_server.base_url}/graphql"
    result = run_front_end(page, origins[1], api_url)
    assert result.startswith("blocked: TypeError"), result
    assert open_socket(page, api_url.replace("http", "ws", 1)) == "refused"

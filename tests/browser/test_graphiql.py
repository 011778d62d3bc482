"""GraphiQL in a real headless Chromium against the real server: the customer journey as
a person does it in the IDE (log in, paste the token into the Headers pane, list orders,
look one up, follow it live), and no IDE at all in production."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from app.graphiql import ASSETS_URL, TOKEN_PLACEHOLDER
from tests.e2e.conftest import LiveServer
from tests.e2e.test_live_updates import post_event
from tests.security_stage.conftest import Server

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CODE = re.compile(r"\b[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}\b")
TIMEOUT_MS = 15_000

LOGIN = """mutation Login {
  login(email: "alice@example.com", password: "orders-demo-2026") {
    tokens { accessToken }
    userErrors { code }
  }
}"""
SHIPPED_ORDERS = """query MyOrders {
  myOrders(first: 10, filter: {status: [SHIPPED]}) { edges { node { code status } } }
}"""


def order_query(code: str) -> str:
    return f"""query Order {{
  order(code: "{code}") {{
    code status
    shipments {{ trackingNumber status }}
  }}
}}"""


def follow(code: str) -> str:
    return f"""subscription FollowOrder {{
  orderUpdates(code: "{code}") {{
    type
    order {{ code shipments {{ status events {{ location }} }} }}
  }}
}}"""


TOOL_EDITOR = ".graphiql-editor-tool .graphiql-editor:not(.hidden)"


class GraphiQLPage:
    """The IDE as a person uses it: type into editors, press run, read the result pane."""

    def __init__(self, page: Page) -> None:
        self.page = page

    def replace_text(self, editor_selector: str, text: str) -> None:
        self.page.locator(f"{editor_selector} .CodeMirror").first.click()
        self.page.keyboard.press("Control+A")
        # insert_text, not type(): the editor would auto-close every bracket typed
        self.page.keyboard.insert_text(text)

    def run(self, document: str) -> None:
        self.replace_text(".graphiql-query-editor", document)
        first_line = document.splitlines()[0]
        expect(self.page.locator(".graphiql-query-editor")).to_contain_text(first_line)
        # GraphiQL takes edits in after a short debounce; a click before then would run
        # (or offer to pick from) the previous document
        self.page.wait_for_timeout(400)
        self.page.locator(".graphiql-execute-button").click()

    def set_headers(self, headers: dict[str, str]) -> None:
        self.page.get_by_role("button", name="Headers", exact=True).click()
        self.replace_text(TOOL_EDITOR, json.dumps(headers))

    def headers_text(self) -> str:
        editor = self.page.locator(TOOL_EDITOR)
        return editor.locator(".CodeMirror-code").inner_text()

    def result(self, containing: str) -> str:
        """The rendered result pane, once it shows `containing`."""
        pane = self.page.locator(".graphiql-response .CodeMirror-code")
        expect(pane).to_contain_text(containing, timeout=TIMEOUT_MS)
        return pane.inner_text()


def test_the_customer_journey_in_graphiql(
    live_server: LiveServer, page: Page, output_dir: Path
) -> None:
    # given GraphiQL, loaded with nothing from outside this server
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(live_server.graphql_url)
    page.wait_for_load_state("networkidle")  # the schema is loaded (introspection)
    ide = GraphiQLPage(page)
    expect(page.locator(".graphiql-query-editor")).to_contain_text(
        "mutation Login", timeout=TIMEOUT_MS
    )
    assert TOKEN_PLACEHOLDER in ide.headers_text()
    outside = [
        url
        for url in requested
        if not url.startswith((live_server.base_url, "ws://127.0.0.1", "data:"))
    ]
    assert outside == []
    assert any(ASSETS_URL in url for url in requested)

    # when alice logs in (the placeholder header still in place)
    ide.run(LOGIN)
    tokens = ide.result("accessToken")
    token = re.search(r'"accessToken":\s*"([^"]+)"', tokens)
    assert token is not None, tokens

    # and pastes the token into the Headers pane, then lists her shipped orders
    ide.set_headers({"Authorization": f"Bearer {token.group(1)}"})
    ide.run(SHIPPED_ORDERS)
    orders = ide.result('"edges"')
    codes = CODE.findall(orders)
    assert codes, orders
    assert "SHIPPED" in orders

    # then order(code) shows that order with its shipment
    ide.run(order_query(codes[0]))
    detail = ide.result('"shipments"')
    assert codes[0] in detail
    assert "DEMO-ALICE-2" in detail
    page.screenshot(path=str(output_dir / "graphiql-order.png"))

    # and a subscription started in GraphiQL (graphql-transport-ws, the token sent in
    # connection_init) shows a carrier event as it arrives
    ide.run(follow(codes[0]))
    page.wait_for_timeout(500)  # the subscription is registered
    post_event(live_server, "DEMO-ALICE-2", "OUT_FOR_DELIVERY")
    update = ide.result("TRACKING_EVENT")
    assert "OUT_FOR_DELIVERY" in update
    assert "Leipzig Hub" in update
    page.screenshot(path=str(output_dir / "graphiql-subscription.png"))


def test_production_serves_no_ide(production_server: Server, page: Page) -> None:
    graphql_url = f"{production_server.base_url}/graphql"
    response = page.goto(graphql_url)
    assert response is not None
    assert response.status == 405
    assert "GraphiQL" not in page.content()
    assets = httpx.get(f"{production_server.base_url}{ASSETS_URL}/graphiql.min.js", timeout=5)
    assert assets.status_code == 404

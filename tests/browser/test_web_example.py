"""The example web front end (examples/web/) driven in Chromium as a customer would, against
the real API on another loopback origin (listed in CORS_ORIGINS): log in, page through the
orders, open a shipped order and watch a signed carrier event arrive over the
graphql-transport-ws subscription without a reload, start a return on a delivered order and
get its RMA code, see errors by their code, refresh an expired access token, resume after a
reload, log out."""

from __future__ import annotations

import functools
import json
import os
import re
import secrets
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import ConsoleMessage, Page, Request, expect

from scripts.carrier_client import event_body, signed_headers
from tests.e2e.conftest import DEMO_PASSWORD
from tests.security_stage.conftest import Server, start_server, stop_server

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

WEB_DIR = Path(__file__).resolve().parents[2] / "examples" / "web"
CODE = re.compile(r"^[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}$")
ALICE = "alice@example.com"
REFRESH_KEY = "orders-api-example.refreshToken"  # examples/web/app.js
CARRIER_SECRET = secrets.token_urlsafe(32)
TIMEOUT_MS = 10_000

MY_ORDERS = "{ myOrders(first: 50) { edges { node { code status total { amount } } } } }"
REFRESH = """
mutation ($refreshToken: String!) {
  refreshToken(refreshToken: $refreshToken) { tokens { accessToken } userErrors { code } }
}
"""


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def web_origin() -> Iterator[str]:
    """examples/web/ as static files on its own loopback origin (a port of its own)."""
    handler = functools.partial(_Quiet, directory=str(WEB_DIR))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def start_api(tmp_path: Path, web_origin: str) -> Iterator[Callable[..., Server]]:
    """`start_api(**env)`: the real, demo-seeded API in development mode, the page's origin
    in CORS_ORIGINS, our own carrier secret, plus any extra settings."""
    started: list[Server] = []

    def start(**extra: str) -> Server:
        workdir = tmp_path / f"server-{len(started)}"
        env = {
            "PATH": os.environ.get("PATH", ""),
            "APP_ENV": "development",
            "DATABASE_URL": f"sqlite:///{workdir / 'orders.db'}",
            "MAIL_DIR": str(workdir / "mail"),
            "CORS_ORIGINS": web_origin,
            "CARRIER_WEBHOOK_SECRET": CARRIER_SECRET,
            **extra,
        }
        server = start_server(workdir, env)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            stop_server(server)


@dataclass
class FrontEnd:
    """The example page in a browser tab, with everything it sent and complained about."""

    page: Page
    web_origin: str
    api: Server
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (url, operation)
    problems: list[str] = field(default_factory=list)  # console errors, uncaught exceptions

    def open(self) -> None:
        self.page.on("request", self._request)
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.problems.append(f"pageerror: {error}"))
        self.page.goto(f"{self.web_origin}/?api={quote(self.api.graphql_url, safe='')}")
        expect(self.page.locator("#api-url")).to_have_text(self.api.graphql_url)

    def _request(self, request: Request) -> None:
        operation = None
        if request.method == "POST" and request.post_data:
            operation = json.loads(request.post_data).get("operationName")
        self.requests.append((request.url, operation))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.problems.append(f"console: {message.text}")

    def operations(self, since: int = 0) -> list[str]:
        return [op for _, op in self.requests[since:] if op]

    def login(self, email: str, password: str) -> None:
        form = self.page.locator("#login-form")
        expect(form).to_be_visible()
        form.locator("input[name=email]").fill(email)
        form.locator("input[name=password]").fill(password)
        form.locator("button[type=submit]").click()

    def order_buttons(self) -> list[tuple[str, str]]:
        """(code, status) of every order in the list, top to bottom."""
        buttons = self.page.locator("#order-list .order-link")
        return [
            (str(b.get_attribute("data-code")), str(b.get_attribute("data-status")))
            for b in buttons.all()
        ]

    def open_order(self, code: str) -> None:
        self.page.locator(f'.order-link[data-code="{code}"]').click()
        expect(self.page.locator("#order-code")).to_have_text(code)
        expect(self.page.locator("#live-status")).to_have_attribute("data-state", "live")

    def refresh_token(self) -> str | None:
        value: str | None = self.page.evaluate(f"sessionStorage.getItem('{REFRESH_KEY}')")
        return value

    def error_codes(self) -> list[str]:
        return [
            str(e.get_attribute("data-code")) for e in self.page.locator("#messages .error").all()
        ]

    def assert_clean(self) -> None:
        """No script errors, and nothing fetched from anywhere but the page and the API."""
        assert self.problems == []
        api_ws = self.api.ws_url
        for url, _ in self.requests:
            assert url.startswith((self.web_origin + "/", self.api.graphql_url, api_ws)), url


@pytest.fixture
def front_end(page: Page, web_origin: str) -> Callable[[Server], FrontEnd]:
    def make(api: Server) -> FrontEnd:
        front = FrontEnd(page, web_origin, api)
        front.open()
        return front

    return make


def post_carrier_event(
    api: Server,
    tracking_number: str,
    status: str,
    description: str,
    occurred_at: datetime | None = None,
) -> None:
    body = event_body(
        occurred_at=occurred_at.isoformat(timespec="seconds") if occurred_at else None,
        carrier="DHL",
        tracking_number=tracking_number,
        status=status,
        location="Leipzig",
        description=description,
        event_id=f"web-{uuid.uuid4().hex}",
    )
    response = httpx.post(
        f"{api.base_url}/webhooks/carrier",
        content=body,
        headers=signed_headers(CARRIER_SECRET, body),
        timeout=10,
    )
    assert response.status_code == 202, response.text


def wait_until_followed(api: Server, page: Page, tracking_number: str) -> None:
    """The page sends `subscribe` after `connection_ack`, and the server starts following
    a moment later, with no message to say so. Until the page shows a live update, post an
    old event (history only: it does not move the shipment's status) once a second."""
    updates = page.locator("#updates li")
    for attempt in range(TIMEOUT_MS // 1000):
        post_carrier_event(
            api,
            tracking_number,
            "LABEL_CREATED",
            f"Label printed (check {attempt})",
            occurred_at=datetime.now(UTC) - timedelta(hours=44),
        )
        try:
            expect(updates).not_to_have_count(0, timeout=1000)
            return
        except AssertionError:
            continue
    pytest.fail(f"no live update on the page within {TIMEOUT_MS} ms")


def alice_orders(api: Server) -> list[dict[str, Any]]:
    token = api.login(ALICE).access
    body = api.gql(MY_ORDERS, token=token)
    return [edge["node"] for edge in body["data"]["myOrders"]["edges"]]


def test_a_customer_follows_a_shipped_order_live_and_returns_a_delivered_one(
    start_api: Callable[..., Server],
    front_end: Callable[[Server], FrontEnd],
    page: Page,
    output_dir: Path,
) -> None:
    api = start_api()
    expected = alice_orders(api)  # newest first, as the page must list them
    by_status = {order["status"]: order for order in expected}
    shipped, delivered = by_status["SHIPPED"]["code"], by_status["DELIVERED"]["code"]
    web = front_end(api)

    # Log in: the first page of orders (3), then "More" with the cursor for the 4th.
    web.login(ALICE, DEMO_PASSWORD)
    expect(page.locator("#who")).to_contain_text(ALICE)
    expect(page.locator("#login-form")).to_be_hidden()
    expect(page.locator("#order-list .order-link")).to_have_count(3)
    page.locator("#more").click()
    expect(page.locator("#order-list .order-link")).to_have_count(4)
    expect(page.locator("#more")).to_be_hidden()
    listed = web.order_buttons()
    assert listed == [(order["code"], order["status"]) for order in expected]
    assert all(CODE.match(code) for code, _ in listed)
    page.screenshot(path=str(output_dir / "web-example-1-orders.png"), full_page=True)

    # The shipped order: items, totals, shipment and its tracking events, followed live.
    web.open_order(shipped)
    expect(page.locator("#order-status")).to_have_attribute("data-status", "SHIPPED")
    expect(page.locator("#lines")).to_contain_text("Organic T-shirt, black, M")
    total = by_status["SHIPPED"]["total"]["amount"]
    expect(page.locator("#totals")).to_contain_text(f"{total // 100}.{total % 100:02d}")
    shipment = page.locator('.shipment[data-tracking-number="DEMO-ALICE-2"]')
    expect(shipment).to_contain_text("Arrived at the sorting centre")
    expect(shipment.locator(".event")).to_have_count(1)

    # A carrier event reaches the page over the subscription: no reload, no re-fetch.
    page.evaluate("window.__sameDocument = true")
    sent_before = len(web.requests)
    wait_until_followed(api, page, "DEMO-ALICE-2")
    news = f"With the courier, parcel {uuid.uuid4().hex[:8]}"
    post_carrier_event(api, "DEMO-ALICE-2", "OUT_FOR_DELIVERY", news)
    events = shipment.locator(".event")
    expect(events.first).to_contain_text(news, timeout=TIMEOUT_MS)  # newest first
    expect(events.filter(has_text=news)).to_have_count(1)
    expect(events.first).to_have_class("event new")  # marked as arrived while watching
    expect(events.first).to_contain_text("Out for delivery")
    expect(shipment).to_have_attribute("data-status", "OUT_FOR_DELIVERY")
    page.screenshot(path=str(output_dir / "web-example-2-live-event.png"), full_page=True)

    # Delivered: the status changes live, in the list too, and a return can be started.
    post_carrier_event(api, "DEMO-ALICE-2", "DELIVERED", "Handed to the customer")
    expect(page.locator("#order-status")).to_have_attribute(
        "data-status", "DELIVERED", timeout=TIMEOUT_MS
    )
    expect(page.locator(f'.order-link[data-code="{shipped}"]')).to_have_attribute(
        "data-status", "DELIVERED"
    )
    expect(page.locator("#start-return")).to_be_visible()
    assert page.evaluate("window.__sameDocument") is True
    assert "Order" not in web.operations(since=sent_before)  # it all came over the socket

    # The delivered order: returnEligibility, then requestReturn gives an RMA code.
    web.open_order(delivered)
    page.locator("#start-return").click()
    form = page.locator("#return-form")
    expect(form.locator("input[name=quantity]")).to_have_count(2)  # MUG-001 and NOTE-A5
    form.locator('input[data-sku="NOTE-A5"]').fill("0")
    form.locator("select[name=reason]").select_option("DAMAGED")
    form.locator("textarea[name=comment]").fill("Chipped rim")
    form.locator("button[type=submit]").click()
    rma_element = page.locator("#rma")
    expect(rma_element).to_be_visible()
    rma = rma_element.inner_text()
    assert CODE.match(rma), rma
    expect(page.locator(f'#returns li[data-rma="{rma}"]')).to_contain_text("Requested")
    page.screenshot(path=str(output_dir / "web-example-3-return.png"), full_page=True)
    assert web.operations().count("ReturnEligibility") == 1
    token = api.login(ALICE).access
    stored = api.gql(
        "query ($rma: String!) { returnRequest(rma: $rma) {"
        " orderCode status reason comment lines { sku quantity } } }",
        {"rma": rma},
        token=token,
    )["data"]["returnRequest"]
    assert stored == {
        "orderCode": delivered,
        "status": "REQUESTED",
        "reason": "DAMAGED",
        "comment": "Chipped rim",
        "lines": [{"sku": "MUG-001", "quantity": 1}],
    }

    # Log out: the session ends on the server, not just in the page.
    refresh_token = web.refresh_token()
    assert refresh_token
    page.locator("#logout").click()
    expect(page.locator("#login-form")).to_be_visible()
    expect(page.locator("#orders")).to_be_hidden()
    assert web.refresh_token() is None
    refused = api.gql(REFRESH, {"refreshToken": refresh_token})["data"]["refreshToken"]
    assert refused == {"tokens": None, "userErrors": [{"code": "UNAUTHENTICATED"}]}
    assert "Logout" in web.operations()
    assert web.error_codes() == []
    web.assert_clean()


def test_a_wrong_password_shows_its_error_code(
    start_api: Callable[..., Server],
    front_end: Callable[[Server], FrontEnd],
    page: Page,
    output_dir: Path,
) -> None:
    web = front_end(start_api())

    web.login(ALICE, "not-the-password")
    error = page.locator('#messages .error[data-code="UNAUTHENTICATED"]')
    expect(error).to_be_visible()
    expect(error).to_contain_text("UNAUTHENTICATED")
    expect(error).to_contain_text("Email or password is incorrect.")
    page.screenshot(path=str(output_dir / "web-example-4-wrong-password.png"), full_page=True)
    assert web.error_codes() == ["UNAUTHENTICATED"]
    expect(page.locator("#orders")).to_be_hidden()
    assert web.refresh_token() is None

    # After the login back-off (1 s for one failure) the right password gets in, and the
    # old message goes away.
    page.wait_for_timeout(2000)
    web.login(ALICE, DEMO_PASSWORD)
    expect(page.locator("#order-list .order-link")).to_have_count(3)
    assert web.error_codes() == []
    web.assert_clean()


def test_an_expired_access_token_is_refreshed_and_a_reload_resumes_the_session(
    start_api: Callable[..., Server],
    front_end: Callable[[Server], FrontEnd],
    page: Page,
) -> None:
    api = start_api(ACCESS_TOKEN_TTL_SECONDS="2")
    web = front_end(api)
    web.login(ALICE, DEMO_PASSWORD)
    expect(page.locator("#order-list .order-link")).to_have_count(3)
    first_refresh_token = web.refresh_token()
    assert first_refresh_token

    # The access token expires: "More" is answered UNAUTHENTICATED, the page spends the
    # refresh token for a new pair and asks again.
    page.wait_for_timeout(3000)
    sent_before = len(web.requests)
    page.locator("#more").click()
    expect(page.locator("#order-list .order-link")).to_have_count(4)
    assert web.operations(since=sent_before) == ["MyOrders", "Refresh", "MyOrders"]
    assert web.refresh_token() not in (None, first_refresh_token)
    assert web.error_codes() == []

    # A reload forgets the access token; the refresh token in sessionStorage resumes.
    page.reload()
    expect(page.locator("#who")).to_contain_text(ALICE)
    expect(page.locator("#order-list .order-link")).to_have_count(3)
    expect(page.locator("#login-form")).to_be_hidden()

    # Following an order; the session is ended from elsewhere (logoutAll on another
    # device): the stream completes, and the next request finds the refresh token dead.
    shipped = next(code for code, status in web.order_buttons() if status == "SHIPPED")
    web.open_order(shipped)
    other_device = api.login(ALICE).access
    ended = api.gql("mutation { logoutAll { ok } }", token=other_device)
    assert ended["data"]["logoutAll"]["ok"] is True
    expect(page.locator("#live-status")).to_have_attribute(
        "data-state", "ended", timeout=TIMEOUT_MS
    )
    page.locator("#more").click()
    expect(page.locator("#login-form")).to_be_visible()
    expect(page.locator('#messages .error[data-code="UNAUTHENTICATED"]')).to_be_visible()
    assert web.refresh_token() is None
    web.assert_clean()


def test_the_page_works_against_an_allowlist_only_api(
    start_api: Callable[..., Server],
    front_end: Callable[[Server], FrontEnd],
    page: Page,
) -> None:
    """PERSISTED_QUERIES=allowlist: the page's documents are in the allow-list generated
    from examples/ (app/graphql/persisted_queries.json), so the whole journey works, while
    any other document is refused."""
    api = start_api(PERSISTED_QUERIES="allowlist")
    web = front_end(api)
    web.login(ALICE, DEMO_PASSWORD)
    expect(page.locator("#order-list .order-link")).to_have_count(3)
    page.locator("#more").click()
    expect(page.locator("#order-list .order-link")).to_have_count(4)
    by_status = {status: code for code, status in web.order_buttons()}

    web.open_order(by_status["SHIPPED"])  # Order, then FollowOrder over the socket
    wait_until_followed(api, page, "DEMO-ALICE-2")
    news = f"Allow-listed and live {uuid.uuid4().hex[:8]}"
    post_carrier_event(api, "DEMO-ALICE-2", "OUT_FOR_DELIVERY", news)
    expect(page.locator(".event").first).to_contain_text(news, timeout=TIMEOUT_MS)

    web.open_order(by_status["DELIVERED"])
    page.locator("#start-return").click()
    form = page.locator("#return-form")
    form.locator('input[data-sku="NOTE-A5"]').fill("0")
    form.locator("select[name=reason]").select_option("DAMAGED")
    form.locator("button[type=submit]").click()
    expect(page.locator("#rma")).to_be_visible()
    assert CODE.match(page.locator("#rma").inner_text())

    page.locator("#logout").click()
    expect(page.locator("#login-form")).to_be_visible()
    assert web.error_codes() == []
    assert set(web.operations()) == {
        "Login", "MyOrders", "Order", "ReturnEligibility", "RequestReturn", "Logout",
    }  # fmt: skip
    web.assert_clean()
    refused = api.gql("{ products { edges { node { sku } } } }")
    assert [e["extensions"]["code"] for e in refused["errors"]] == ["FORBIDDEN"]

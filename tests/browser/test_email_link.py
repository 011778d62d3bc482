"""The link in an email, opened in Chromium against the example web front end
(examples/web/): `{SHOP_URL}/orders#<code>` asks for a sign-in, then shows that order, and
the code never reaches the web server (it only ever travels in the fragment). Signed in as
someone else, the same link shows nothing of the order."""

from __future__ import annotations

import email
import email.policy
import functools
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import Browser, Page, expect

from app.notifications import templates
from app.notifications.models import OutboxEmail
from app.notifications.templates import Shop
from app.notifications.transports import build_message
from tests.browser.test_web_example import ALICE, TIMEOUT_MS, WEB_DIR, start_api
from tests.e2e.conftest import DEMO_PASSWORD
from tests.email_checks import assert_order_link, assert_shop_frame, parse_email
from tests.notifications.test_email_parts import KINDS, SHOP
from tests.security_stage.conftest import Server

__all__ = ["start_api"]  # the example's API fixture, used here with our web origin

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

PLACE = """
mutation Place($key: String!) {
  placeOrder(lines: [{sku: "MUG-001", quantity: 1}], paymentToken: "tok_visa",
             idempotencyKey: $key,
             shippingAddress: {name: "Alice Example", line1: "1 Demo Street",
                               city: "Berlin", postalCode: "10115", country: "DE"}) {
    order { code } userErrors { code message }
  }
}
"""
MAIL_TIMEOUT = 20.0


@pytest.fixture
def web_log() -> list[str]:
    """Every request line the example's web server received: its access log."""
    return []


@pytest.fixture
def web_origin(web_log: list[str]) -> Iterator[str]:
    """examples/web/ on its own loopback origin, keeping an access log (replaces the
    example tests' fixture of the same name, which start_api uses for CORS_ORIGINS)."""

    class Logged(SimpleHTTPRequestHandler):
        def log_message(self, *_: object) -> None:
            web_log.append(self.requestline)

    handler = functools.partial(Logged, directory=str(WEB_DIR))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def wait_for_email(mail_dir: Path, subject: str) -> EmailMessage:
    """The .eml file the server's sender wrote (FileTransport, MAIL_DIR) with `subject`."""
    deadline = time.monotonic() + MAIL_TIMEOUT
    while time.monotonic() < deadline:
        for path in sorted(mail_dir.glob("*.eml")):
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            if str(message["Subject"]) == subject:
                return message
        time.sleep(0.2)
    pytest.fail(f"no email {subject!r} in {mail_dir} within {MAIL_TIMEOUT} s")


def log_in(page: Page, address: str) -> None:
    form = page.locator("#login-form")
    expect(form).to_be_visible()
    form.locator("input[name=email]").fill(address)
    form.locator("input[name=password]").fill(DEMO_PASSWORD)
    form.locator("button[type=submit]").click()


def test_the_link_in_an_email_opens_that_order_after_login(
    start_api: Callable[..., Server],
    web_origin: str,
    web_log: list[str],
    browser: Browser,
    output_dir: Path,
) -> None:
    api = start_api(SHOP_URL=web_origin, SHOP_NAME="Kettle & Co", OUTBOX_POLL_SECONDS="0.2")
    # given alice bought a mug, and the confirmation email was sent
    token = api.login(ALICE).access
    placed = api.gql(PLACE, {"key": f"email-link-{uuid.uuid4().hex}"}, token=token)
    code = placed["data"]["placeOrder"]["order"]["code"]
    mail = wait_for_email(api.workdir / "mail", f"Your order {code} is confirmed")
    parsed = parse_email(mail)
    assert_shop_frame(parsed, "Kettle & Co", "support@shop.example")
    link = assert_order_link(parsed, web_origin, code)

    # when she opens the link (the example talks to the API named by ?api=, so the test's
    # API on its own port is added in the query; the fragment is the email's)
    before, _, fragment = link.partition("#")
    opened = f"{before}?api={quote(api.graphql_url, safe='')}#{fragment}"
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    try:
        page.goto(opened)
        # then she is asked to sign in first, and nothing of the order is shown
        expect(page.locator("#login-form")).to_be_visible(timeout=TIMEOUT_MS)
        expect(page.locator("#messages")).to_contain_text("Log in to see your order.")
        expect(page.locator("#order")).to_be_hidden()
        page.screenshot(path=str(output_dir / "email-link-1-sign-in.png"), full_page=True)

        # and after signing in, that order's page is shown, and her list is there as usual
        log_in(page, ALICE)
        expect(page.locator("#order-code")).to_have_text(code, timeout=TIMEOUT_MS)
        expect(page.locator("#order")).to_be_visible()
        expect(page.locator(f'.order-link[data-code="{code}"]')).to_have_class(
            "order-link selected"
        )
        assert page.locator("#order-list .order-link").count() >= 2  # a page of them
        # the code is out of the address bar once used
        assert urlsplit_fragment(page.url) == ""
        page.screenshot(path=str(output_dir / "email-link-2-order.png"), full_page=True)

        # and the ordinary flow still works: another order opens from the list
        other = page.locator(f'.order-link:not([data-code="{code}"])').first
        other_code = str(other.get_attribute("data-code"))
        other.click()
        expect(page.locator("#order-code")).to_have_text(other_code)
    finally:
        context.close()
    assert problems == []
    # The web server saw the pages and scripts, never the code: it stayed in the fragment.
    assert any(line.startswith("GET /orders") for line in web_log), web_log
    for line in web_log:
        assert code not in line and code.replace("-", "") not in line, line


def test_the_link_shows_nothing_to_another_customer(
    start_api: Callable[..., Server], web_origin: str, browser: Browser
) -> None:
    api = start_api(SHOP_URL=web_origin, OUTBOX_POLL_SECONDS="0.2")
    token = api.login(ALICE).access
    placed = api.gql(PLACE, {"key": f"email-link-{uuid.uuid4().hex}"}, token=token)
    code = placed["data"]["placeOrder"]["order"]["code"]
    link = f"{web_origin}/orders?api={quote(api.graphql_url, safe='')}#{code}"

    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(link)
        log_in(page, "bob@example.com")
        # bob's own list appears, the order does not: the same answer as an unknown code
        expect(page.locator("#messages .error")).to_have_attribute(
            "data-code", "ORDER_NOT_FOUND", timeout=TIMEOUT_MS
        )
        expect(page.locator("#order")).to_be_hidden()
        expect(page.locator("#order-list .order-link").first).to_be_visible()
        assert page.locator(f'.order-link[data-code="{code}"]').count() == 0
    finally:
        context.close()


def urlsplit_fragment(url: str) -> str:
    return url.partition("#")[2]


def test_every_email_reads_in_a_narrow_mail_client_and_loads_nothing(
    browser: Browser, output_dir: Path
) -> None:
    """The HTML part of every kind in a 360 px wide window (a phone's mail app): no
    sideways scrolling, and opening it makes no request at all (no images, no trackers)."""
    shop = Shop(name="Kettle & Co", support_email="help@kettle.example", url=SHOP.url)
    context = browser.new_context(viewport={"width": 360, "height": 740})
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    try:
        for kind, (data, facts) in KINDS.items():
            subject, body = templates.render(kind, data)
            row = OutboxEmail(
                dedupe_key=f"{kind}.narrow",
                kind=kind,
                recipient="ada@example.com",
                subject=subject,
                body_text=body,
                template=body.template,
                template_data=json.dumps(body.data),
            )
            parsed = parse_email(build_message(row, "Orders <orders@shop.example>", shop))
            page.set_content(parsed.html)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 360, f"{kind}: {width} px wide"
            visible = page.locator("body").inner_text()
            for fact in facts[:2]:
                assert " ".join(fact.split()) in " ".join(visible.split()), (kind, fact)
            page.screenshot(path=str(output_dir / f"email-{kind}-360px.png"), full_page=True)
    finally:
        context.close()
    assert requests == [], requests

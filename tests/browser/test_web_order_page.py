"""The example web front end's order page (examples/web/) in Chromium against the real API:
the shipping address and the masked payment, "share tracking" (create a link, copy it,
open it as a stranger would: carrier, status and town, nothing personal; revoke it and it
stops working), live carrier events worded for people, and a 390 px wide phone screen on
which nothing overflows sideways and no word is broken in the middle."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Request, ViewportSize, expect

from scripts.carrier_client import event_body, signed_headers
from tests.browser.test_web_example import (
    ALICE,
    CARRIER_SECRET,
    TIMEOUT_MS,
    FrontEnd,
    front_end,
    start_api,
    wait_until_followed,
    web_origin,
)
from tests.e2e.conftest import DEMO_PASSWORD
from tests.security_stage.conftest import Server

__all__ = ["front_end", "start_api", "web_origin"]  # the example's fixtures, used here too

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

PHONE: ViewportSize = {"width": 390, "height": 844}
# 390 px (the phone) and 360 px (the narrowest common Android width), where an
# order code in the heading no longer fits beside the page's old margins
WIDTHS = (390, 360)
BERLIN = {"city": "Berlin", "postalCode": "10115", "country": "DE"}
ORDER = """
query ($code: String!) {
  order(code: $code) {
    shippingAddress { name line1 line2 city postalCode country }
    payment { brand last4 }
    lines { sku name }
    shipments { trackingNumber }
  }
}
"""
TRACKING_LINK = "query ($token: String!) { trackingLink(token: $token) { estimatedDelivery } }"

# Words split over two lines inside `selector` (a Range per whitespace-separated word: its
# boxes on more than one line mean the browser broke it, at a dash or anywhere).
BROKEN_WORDS = """(selector) => {
  const broken = [];
  for (const element of document.querySelectorAll(selector)) {
    const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const match of node.data.matchAll(/\\S+/g)) {
        const range = document.createRange();
        range.setStart(node, match.index);
        range.setEnd(node, match.index + match[0].length);
        const lines = new Set(
          [...range.getClientRects()].filter((r) => r.width > 0).map((r) => Math.round(r.top)),
        );
        if (lines.size > 1) broken.push(match[0]);
      }
    }
  }
  return broken;
}"""
# Elements that stick out of the window sideways, and the document's own width.
OVERFLOW = """() => ({
  scrollWidth: document.documentElement.scrollWidth,
  outside: [...document.querySelectorAll("body *")]
    .filter((el) => {
      const r = el.getBoundingClientRect();
      return r.width > 0 && (r.right > window.innerWidth + 0.5 || r.left < -0.5);
    })
    .map((el) => `${el.tagName.toLowerCase()}#${el.id}.${el.className}`),
})"""


def post_event(
    api: Server,
    status: str,
    *,
    location: str | dict[str, str] = "",
    description: str = "",
    estimated_delivery: date | None = None,
) -> None:
    body = event_body(
        carrier="DHL",
        tracking_number="DEMO-ALICE-2",
        status=status,
        location=location,
        description=description,
        estimated_delivery=estimated_delivery.isoformat() if estimated_delivery else None,
        event_id=f"page-{uuid.uuid4().hex}",
    )
    response = httpx.post(
        f"{api.base_url}/webhooks/carrier",
        content=body,
        headers=signed_headers(CARRIER_SECRET, body),
        timeout=10,
    )
    assert response.status_code == 202, response.text


def shipped_order(api: Server) -> tuple[str, dict[str, Any]]:
    """Alice's shipped order (its parcel is DEMO-ALICE-2) as the API gives it to her."""
    token = api.login(ALICE).access
    orders = api.gql("{ myOrders(first: 50) { edges { node { code status } } } }", token=token)
    code = next(
        edge["node"]["code"]
        for edge in orders["data"]["myOrders"]["edges"]
        if edge["node"]["status"] == "SHIPPED"
    )
    order = api.gql(ORDER, {"code": code}, token=token)["data"]["order"]
    assert [s["trackingNumber"] for s in order["shipments"]] == ["DEMO-ALICE-2"]
    return code, order


def log_in_and_open(web: FrontEnd, code: str) -> None:
    web.login(ALICE, DEMO_PASSWORD)
    page = web.page
    expect(page.locator("#order-list .order-link")).to_have_count(3)
    if page.locator(f'.order-link[data-code="{code}"]').count() == 0:
        page.locator("#more").click()
    web.open_order(code)


def assert_fits(page: Page, where: str) -> None:
    found = page.evaluate(OVERFLOW)
    assert found["scrollWidth"] <= page.viewport_size["width"], (where, found)  # type: ignore[index]
    assert found["outside"] == [], (where, found)


def assert_phone_layout(page: Page, where: str, whole: tuple[str, ...] = ()) -> None:
    """At each phone width: nothing sticks out sideways, no word in `whole` is broken, and
    the order code and "Log out" (when shown) each sit on one line."""
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": PHONE["height"]})
        for selector in whole:
            assert_unbroken(page, selector)
        for selector in ("#order-code", "#logout"):
            if page.locator(selector).is_visible():  # one box: on one line
                boxes = page.locator(selector).evaluate("e => e.getClientRects().length")
                assert boxes == 1, (where, width, selector)
        assert_fits(page, f"{where} at {width} px")
    page.set_viewport_size(PHONE)


def assert_unbroken(page: Page, selector: str) -> None:
    expect(page.locator(selector).first).to_be_visible()
    assert page.evaluate(BROKEN_WORDS, selector) == [], selector


def short_day(day: date) -> str:
    return f"{day.day} {day.strftime('%b')}"  # "4 Dec", as the page words it


def test_the_order_page_shows_address_and_payment_words_live_events_and_shares_tracking(
    start_api: Callable[..., Server],
    front_end: Callable[[Server], FrontEnd],
    page: Page,
    browser: Browser,
    web_origin: str,
    output_dir: Path,
) -> None:
    api = start_api()
    code, order = shipped_order(api)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=web_origin)
    web = front_end(api)
    log_in_and_open(web, code)

    # The address the parcel goes to, and the payment: brand and last four digits only.
    address = order["shippingAddress"]
    shown = page.locator("#shipping-address")
    for part in ("name", "line1", "city", "postalCode", "country"):
        expect(shown).to_contain_text(address[part])
    payment = page.locator("#payment")
    expect(payment.locator(".brand")).to_have_text(order["payment"]["brand"])
    expect(payment.locator(".last4")).to_have_text(order["payment"]["last4"])
    expect(payment).to_contain_text(f"ending in {order['payment']['last4']}")
    page.screenshot(path=str(output_dir / "web-order-1-address-payment.png"), full_page=True)

    # Live carrier events, worded for people (structured town, a moved estimate).
    wait_until_followed(api, page, "DEMO-ALICE-2")
    latest = page.locator('#updates li[data-type="TRACKING_EVENT"]').first
    courier = f"With courier {uuid.uuid4().hex[:8]}"
    post_event(api, "OUT_FOR_DELIVERY", location=BERLIN, description=courier)
    expect(latest.locator(".said")).to_have_text("Out for delivery in Berlin", timeout=TIMEOUT_MS)
    newest_event = page.locator(".shipment .event").first
    expect(newest_event).to_contain_text("Out for delivery in Berlin")
    expect(newest_event).to_contain_text(courier)  # the owner still sees the carrier's text
    later = datetime.now(UTC).date() + timedelta(days=6)
    post_event(api, "DELAYED", location=BERLIN, estimated_delivery=later)
    expect(latest.locator(".said")).to_have_text(
        f"Delayed: now expected {short_day(later)}", timeout=TIMEOUT_MS
    )
    post_event(api, "OUT_FOR_DELIVERY", location=BERLIN, description=courier)
    expect(latest.locator(".said")).to_have_text("Out for delivery in Berlin", timeout=TIMEOUT_MS)
    page.screenshot(path=str(output_dir / "web-order-2-live-words.png"), full_page=True)

    # Share tracking: a link to the public page, the token only in the fragment.
    page.locator("#share-create").click()
    field = page.locator("#share-url")
    expect(field).to_be_visible()
    link = field.input_value()
    assert link.startswith(f"{web_origin}/track/?api="), link
    token = link.partition("#")[2]
    assert len(token) >= 16 and code not in link
    page.locator("#share-copy").click()
    expect(page.locator("#share-copied")).to_have_attribute("data-copied", "yes")
    assert page.evaluate("navigator.clipboard.readText()") == link
    page.screenshot(path=str(output_dir / "web-order-3-share.png"), full_page=True)

    # Opened as a stranger would (no login, no token of Alice's): carrier, status, town.
    stranger = browser.new_context()
    public = stranger.new_page()
    sent: list[Request] = []
    public.on("request", lambda request: sent.append(request))
    try:
        public.goto(link)
        parcel = public.locator(".public-shipment")
        expect(parcel).to_have_count(1, timeout=TIMEOUT_MS)
        expect(parcel.locator(".carrier")).to_have_text("DHL")
        expect(parcel).to_have_attribute("data-status", "OUT_FOR_DELIVERY")
        expect(parcel.locator(".status")).to_have_text("Out for delivery")
        expect(parcel.locator(".event").first).to_have_text(
            f"{parcel.locator('.event time').first.inner_text()} Out for delivery in Berlin"
        )
        public.screenshot(path=str(output_dir / "web-order-4-public-tracking.png"), full_page=True)
        seen = public.locator("body").inner_text()
        personal = [
            code,
            "DEMO-ALICE-2",
            ALICE,
            courier,
            address["name"],
            address["line1"],
            order["payment"]["last4"],
            *(line["name"] for line in order["lines"]),
            *(line["sku"] for line in order["lines"]),
        ]
        assert [item for item in personal if item and item in seen] == []
        assert all(r.headers.get("authorization") is None for r in sent)
        assert [r for r in sent if r.method == "POST"] != []

        # Revoke: the page says so, and the link shows nothing any more.
        page.locator("#share-revoke").click()
        expect(page.locator("#share-revoked")).to_be_visible()
        expect(page.locator("#share-url")).to_have_count(0)
        public.reload()
        expect(public.locator("#tracking-gone")).to_be_visible(timeout=TIMEOUT_MS)
        expect(public.locator(".public-shipment")).to_have_count(0)
        assert "Berlin" not in public.locator("body").inner_text()
        public.screenshot(path=str(output_dir / "web-order-5-revoked.png"), full_page=True)
    finally:
        stranger.close()
    gone = api.gql(TRACKING_LINK, {"token": token})  # the API agrees: the link is dead
    assert gone.get("data") in (None, {"trackingLink": None})
    assert [e["extensions"]["code"] for e in gone["errors"]] == ["ORDER_NOT_FOUND"]

    # Delivered: worded, and the order's status change too.
    post_event(api, "DELIVERED", location=BERLIN, description="Handed over")
    expect(latest.locator(".said")).to_have_text("Delivered", timeout=TIMEOUT_MS)
    status_change = page.locator('#updates li[data-type="STATUS_CHANGED"] .said').first
    expect(status_change).to_have_text("Order delivered", timeout=TIMEOUT_MS)
    assert web.error_codes() == []
    web.assert_clean()


def test_the_pages_fit_a_390_px_phone_with_no_word_broken(
    start_api: Callable[..., Server],
    browser: Browser,
    web_origin: str,
    output_dir: Path,
) -> None:
    """Against an allow-list-only API (PERSISTED_QUERIES=allowlist), so that sharing and the
    public page also prove their documents are in app/graphql/persisted_queries.json."""
    api = start_api(PERSISTED_QUERIES="allowlist")
    post_event(api, "OUT_FOR_DELIVERY", location=BERLIN, description="With the courier")
    context = browser.new_context(viewport=PHONE)
    try:
        web = FrontEnd(context.new_page(), web_origin, api)
        web.open()
        page = web.page

        # The login form: the demo hint keeps the address and the password whole.
        expect(page.locator("#login-form")).to_be_visible()
        assert_phone_layout(page, "login", ("#login-form .hint",))
        page.screenshot(path=str(output_dir / "web-phone-1-login.png"), full_page=True)

        # The order page with its share panel open: the code, "Log out", the buttons whole.
        web.login(ALICE, DEMO_PASSWORD)
        expect(page.locator("#order-list .order-link")).to_have_count(3)
        page.locator("#more").click()
        expect(page.locator("#order-list .order-link")).to_have_count(4)
        code = next(code for code, status in web.order_buttons() if status == "SHIPPED")
        web.open_order(code)
        page.locator("#share-create").click()
        expect(page.locator("#share-url")).to_be_visible()
        # No clipboard permission in this context: the link is copied, or else selected in
        # its visible field for Ctrl+C, and the page says which.
        page.locator("#share-copy").click()
        said = page.locator("#share-copied")
        expect(said).to_have_attribute("data-copied", re.compile("^(yes|no)$"))
        if said.get_attribute("data-copied") == "no":
            selected = page.locator("#share-url").evaluate(
                "e => document.activeElement === e"
                " && e.selectionStart === 0 && e.selectionEnd === e.value.length"
            )
            assert selected is True
        whole = ("#order-code", "#logout", "#order-detail h2", "#share-panel button")
        assert_phone_layout(page, "order", whole)
        page.screenshot(path=str(output_dir / "web-phone-2-order.png"), full_page=True)

        # The public tracking page, on the same phone.
        public = context.new_page()
        public.goto(page.locator("#share-url").input_value())
        expect(public.locator(".public-shipment")).to_have_count(1, timeout=TIMEOUT_MS)
        assert_phone_layout(public, "tracking", (".public-shipment h3",))
        public.screenshot(path=str(output_dir / "web-phone-3-tracking.png"), full_page=True)
        expect(public.locator(".public-shipment .event").first).to_contain_text(
            "Out for delivery in Berlin"
        )

        page.locator("#share-revoke").click()
        expect(page.locator("#share-revoked")).to_be_visible()
        public.reload()
        expect(public.locator("#tracking-gone")).to_be_visible(timeout=TIMEOUT_MS)
        assert web.error_codes() == []
        assert {"CreateTrackingLink", "RevokeTrackingLink"} <= set(web.operations())
        web.assert_clean()
    finally:
        context.close()

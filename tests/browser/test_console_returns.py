"""The returns desk in Chromium against the real server: support starts a return for a
customer on the phone (the API's userErrors shown next to the field first), approves it
from the queue; the warehouse receives it by scanning the RMA and counting the units; the
admin refunds it."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.console_pages import console, graphql, orders_of, token_of
from tests.e2e.conftest import LiveServer

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def test_the_returns_desk_receives_and_refunds(
    live_server: LiveServer, browser: Browser, output_dir: Path
) -> None:
    base = live_server.base_url
    delivered = next(o for o in orders_of(base, "alice@example.com") if o["status"] == "DELIVERED")
    code, sku = delivered["code"], delivered["lines"][0]["sku"]

    # support starts a return for alice
    desk = console(browser, base)
    desk.open()
    desk.login("support@example.com")
    page = desk.page
    by_code = page.get_by_role("form", name="Find by order code")
    by_code.get_by_label("Order code").fill(code)
    by_code.get_by_label("Reason (ticket)").fill("T-5150")
    by_code.get_by_role("button", name="Look up").click()
    start = page.get_by_role("form", name="Start a return")
    expect(start).to_be_visible()
    start.get_by_role("button", name="Start return").click()  # no units chosen
    error = start.locator(".field-error[data-field=lines]")
    expect(error).to_have_text("Name at least one item.")
    start.locator(f"input[name='qty:{sku}']").fill("1")
    start.get_by_label("Return reason").select_option("DAMAGED")
    start.get_by_role("button", name="Start return").click()
    desk.expect_notice("started (REQUESTED)")
    sent = desk.operations("requestReturn")[-1]["variables"]
    assert sent["supportReason"] == "T-5150" and sent["lines"] == [{"sku": sku, "quantity": 1}]
    rma_element = page.locator("article.order .return[data-rma]")
    expect(rma_element).to_have_count(1)
    rma = rma_element.get_attribute("data-rma")
    assert rma

    # support approves it from the returns queue (oldest first)
    desk.go("Returns desk")
    row = page.locator(f"table.returns-queue tr[data-rma='{rma}']")
    expect(row).to_contain_text("REQUESTED")
    desk.shot(output_dir, "console-returns-queue.png")
    # the whole row is in view, its Open button too (no sideways scrolling of the queue)
    assert page.locator(".queue").evaluate("q => q.scrollWidth <= q.clientWidth")
    card, button = page.locator(".queue").bounding_box(), row.get_by_role("button").bounding_box()
    assert card is not None and button is not None
    assert button["x"] + button["width"] <= card["x"] + card["width"]
    row.get_by_role("button", name="Open").click()
    detail = page.locator(f"article.return-detail[data-rma='{rma}']")
    expect(detail.get_by_role("form", name="Receive")).to_have_count(0)  # not support's job
    detail.get_by_role("button", name="Approve").click()
    desk.expect_notice(f"Return {rma} approved.")
    expect(detail).to_have_attribute("data-status", "APPROVED")

    # the warehouse scans the RMA on the parcel and counts the units
    station = console(browser, base)
    station.open("returns")
    station.login("warehouse@example.com")
    wpage = station.page
    wpage.get_by_label("Scan RMA").fill(rma.lower().replace("-", " "))
    wpage.get_by_label("Scan RMA").press("Enter")
    received = wpage.locator(f"article.return-detail[data-rma='{rma}']")
    expect(received).to_be_visible()
    expect(received.get_by_role("button", name="Approve")).to_have_count(0)  # not theirs
    receive = received.get_by_role("form", name="Receive")
    item = receive.get_by_label("Scan returned item")
    item.fill("NOT-IN-RETURN")
    item.press("Enter")
    expect(receive.locator(".mismatch")).to_contain_text("not part of this return")
    item.fill(sku)
    item.press("Enter")
    expect(receive.locator(f"input[name='count:{sku}']")).to_have_value("1")
    station.shot(output_dir, "console-returns-receive.png")
    receive.get_by_role("button", name="Receive").click()
    station.expect_notice(f"Return {rma} received.")
    expect(received).to_have_attribute("data-status", "RECEIVED")
    assert station.operations("receiveReturn")[-1]["variables"]["lines"] == [
        {"sku": sku, "quantity": 1}
    ]

    # the admin refunds it
    admin = console(browser, base)
    admin.open("returns")
    admin.login("admin@example.com")
    apage = admin.page
    apage.locator(".filters label", has_text="RECEIVED").locator("input").check()
    admin_row = apage.locator(f"table.returns-queue tr[data-rma='{rma}']")
    expect(admin_row).to_contain_text("RECEIVED")
    admin_row.get_by_role("button", name="Open").click()
    refunded = apage.locator(f"article.return-detail[data-rma='{rma}']")
    refunded.get_by_role("button", name="Refund").click()
    admin.expect_notice(f"Return {rma} refunded.")
    expect(refunded).to_have_attribute("data-status", "REFUNDED")
    expect(refunded.locator(".refund-amount")).to_contain_text("EUR")
    admin.shot(output_dir, "console-returns-refunded.png")

    # and the customer's order says so
    order = graphql(
        base,
        "query($c: String!) { order(code: $c) { returns { rma status } } }",
        token_of(base, "alice@example.com"),
        c=code,
    )["data"]["order"]
    assert {"rma": rma, "status": "REFUNDED"} in order["returns"]

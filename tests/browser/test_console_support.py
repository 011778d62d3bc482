"""The support desk in Chromium against the real server: an agent finds an order by the
code a customer reads out (wrong case, odd spacing, O for 0) and, for a caller who lost
the code, by the customer's email; both lookups are in the audit log with the ticket."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.console_pages import console, orders_of
from tests.e2e.conftest import LiveServer

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def as_read_out(code: str) -> str:
    """How an agent types a code heard over the phone: lower case, no dashes, spaces where
    the caller paused, the letter O for every zero."""
    plain = code.replace("-", "").lower().replace("0", "o")
    return f" {plain[:3]} {plain[3:9]}  {plain[9:]} "


def test_support_finds_an_order_by_a_code_read_out_and_by_email(
    live_server: LiveServer, browser: Browser, output_dir: Path
) -> None:
    base = live_server.base_url
    shipped = next(o for o in orders_of(base, "alice@example.com") if o["status"] == "SHIPPED")
    code = shipped["code"]
    desk = console(browser, base)
    desk.open()
    desk.login("support@example.com")
    page = desk.page

    # by the code as read out, with the ticket as the reason
    by_code = page.get_by_role("form", name="Find by order code")
    by_code.get_by_label("Order code").fill(as_read_out(code))
    by_code.get_by_label("Reason (ticket)").fill("T-4711")
    by_code.get_by_role("button", name="Look up").click()
    order = page.locator("article.order")
    expect(order).to_have_attribute("data-code", code)
    expect(order.locator(".status")).to_have_text("SHIPPED")
    expect(order.locator(".customer")).to_contain_text("alice@example.com")
    expect(order.locator(".payment")).to_have_text("VISA •••• 4242")
    expect(order.locator("address")).to_contain_text("Berlin")
    expect(order.locator(".parcels")).to_contain_text("DEMO-ALICE-2")
    expect(order.locator(".parcels .events li").first).to_be_visible()
    expect(order.locator(".timeline li[data-kind=SHIPPED]")).to_have_count(1)
    assert desk.operations("supportOrder")[-1]["variables"] == {
        "code": as_read_out(code),  # the API normalises it, not the console
        "reason": "T-4711",
    }
    desk.shot(output_dir, "console-support-order.png")

    # the reason is required: the form does not go out without it
    sent = len(desk.sent)
    by_code.get_by_label("Reason (ticket)").fill("")
    by_code.get_by_role("button", name="Look up").click()
    page.wait_for_timeout(300)
    assert len(desk.sent) == sent

    # by the customer's email: the list, then open one
    by_email = page.get_by_role("form", name="Find by customer email")
    by_email.get_by_label("Customer email").fill("alice@example.com")
    by_email.get_by_label("Reason (ticket)").fill("T-4712")
    by_email.get_by_role("button", name="Search").click()
    results = page.locator(".search-results tbody tr")
    expect(results.first).to_be_visible()
    codes = [row.get_attribute("data-code") for row in results.all()]
    assert code in codes and len(codes) == len(orders_of(base, "alice@example.com"))
    desk.shot(output_dir, "console-support-search.png")
    page.locator(f".search-results tr[data-code='{code}']").get_by_role(
        "button", name="Open"
    ).click()
    expect(order).to_have_attribute("data-code", code)

    # an unknown email: an empty list, said in words
    by_email.get_by_label("Customer email").fill("nobody@example.com")
    by_email.get_by_role("button", name="Search").click()
    expect(page.locator("#support-result .empty")).to_contain_text("No orders found")

    # both lookups are in the audit log with their reasons (the admin's audit screen)
    admin = console(browser, base)
    admin.open()
    admin.login("admin@example.com")
    audit = admin.page.get_by_role("form", name="Audit filters")
    audit.get_by_label("Actor email").fill("support@example.com")
    audit.get_by_role("button", name="Filter").click()
    expect(admin.page.locator("table.audit-log:not([aria-busy])")).to_be_visible()
    rows = admin.page.locator("table.audit-log tbody tr")
    lookup = rows.filter(has_text="support_lookup").filter(has_text="T-4711")
    search = rows.filter(has_text="support_search").filter(has_text="T-4712")
    expect(lookup.first).to_be_visible()
    expect(search.first).to_be_visible()
    admin.shot(output_dir, "console-admin-audit.png")

    # the action filter narrows the log to the searches by email
    audit.get_by_label("Actions (comma separated)").fill("support_search")
    audit.get_by_role("button", name="Filter").click()
    expect(admin.page.locator("table.audit-log:not([aria-busy])")).to_be_visible()
    expect(rows.filter(has_text="support_lookup")).to_have_count(0)
    actions = set(rows.locator("td.action").all_inner_texts())
    assert actions == {"support_search"}

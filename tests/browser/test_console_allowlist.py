"""The staff console in Chromium against a real server with PERSISTED_QUERIES=allowlist: its
documents are in app/graphql/persisted_queries.json (exported from its modules), so a
support lookup and a warehouse pick list work there, every document the page sent is a
listed one, and a document outside the list is still refused — with the console's own,
valid staff session."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from graphql import OperationDefinitionNode, parse
from playwright.sync_api import Browser, expect

from app.graphql.persisted import load_allowlist
from tests.browser.console_pages import ConsolePage, console
from tests.e2e.conftest import DEMO_PASSWORD, LiveServer

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.server_env(PERSISTED_QUERIES="allowlist"),
]

ALLOWLIST = load_allowlist()  # sha256 → text
LISTED = set(ALLOWLIST.values())


def operation_name(text: str) -> str:
    operation = next(d for d in parse(text).definitions if isinstance(d, OperationDefinitionNode))
    assert operation.name is not None
    return operation.name.value


def by_hash(base_url: str, name: str, token: str | None = None, **variables: Any) -> Any:
    """A listed document of the example clients, sent by its SHA-256 alone (the only way
    to read anything here without the console: ad-hoc documents are refused)."""
    digest = next(d for d, text in ALLOWLIST.items() if operation_name(text) == name)
    response = httpx.post(
        f"{base_url}/graphql",
        json={
            "extensions": {"persistedQuery": {"version": 1, "sha256Hash": digest}},
            "variables": variables,
        },
        headers={"Authorization": f"Bearer {token}"} if token else {},
        timeout=15,
    )
    body = response.json()
    assert not body.get("errors"), body
    return body["data"]


def shipped_order_of(base_url: str, email: str) -> str:
    tokens = by_hash(base_url, "Login", email=email, password=DEMO_PASSWORD)["login"]["tokens"]
    orders = by_hash(base_url, "MyOrders", tokens["accessToken"], first=20)["myOrders"]
    code: str = next(e["node"]["code"] for e in orders["edges"] if e["node"]["status"] == "SHIPPED")
    return code


def send_from_the_page(desk: ConsolePage, query: str) -> Any:
    """POST a document from the console's page with its session's access token."""
    return desk.page.evaluate(
        """async (query) => {
          const { accessToken } = JSON.parse(sessionStorage.getItem("orders-console.tokens"));
          const response = await fetch("/graphql", {
            method: "POST",
            headers: { "Content-Type": "application/json", Authorization: `Bearer ${accessToken}` },
            body: JSON.stringify({ query, variables: {} }),
          });
          return await response.json();
        }""",
        query,
    )


def assert_only_listed_documents_were_sent(desk: ConsolePage) -> None:
    texts = [body["query"] for body in desk.sent]
    assert texts and all(text in LISTED for text in texts), [
        operation_name(text) for text in texts if text not in LISTED
    ]


def test_support_and_warehouse_work_against_an_allowlist_only_server(
    live_server: LiveServer, browser: Browser
) -> None:
    base = live_server.base_url
    code = shipped_order_of(base, "alice@example.com")

    # the support desk: a lookup by code, with the ticket
    desk = console(browser, base)
    desk.open()
    desk.login("support@example.com")
    by_code = desk.page.get_by_role("form", name="Find by order code")
    by_code.get_by_label("Order code").fill(code)
    by_code.get_by_label("Reason (ticket)").fill("T-9001")
    by_code.get_by_role("button", name="Look up").click()
    order = desk.page.locator("article.order")
    expect(order).to_have_attribute("data-code", code)
    expect(order.locator(".status")).to_have_text("SHIPPED")
    expect(order.locator(".customer")).to_contain_text("alice@example.com")
    expect(desk.banner).to_be_hidden()
    assert_only_listed_documents_were_sent(desk)
    assert [operation_name(b["query"]) for b in desk.sent] == ["ConsoleLogin", "SupportOrder"]

    # the warehouse station: the queue, then an order's pick list
    station = console(browser, base)
    station.open()
    station.login("warehouse@example.com")
    first = station.page.locator(".queue tbody tr").first
    expect(first).to_be_visible()
    queued = first.get_attribute("data-code")
    assert queued
    first.get_by_role("button", name="Open").click()
    pick = station.page.locator(f"article.pick[data-code='{queued}']")
    expect(pick).to_be_visible()
    bins = pick.locator("table.pick-list td.bin").all_inner_texts()
    assert bins and bins == sorted(bins)
    expect(station.banner).to_be_hidden()
    assert_only_listed_documents_were_sent(station)
    assert "PickList" in [operation_name(b["query"]) for b in station.sent]

    # outside the list: refused, though the session is valid and the field exists
    unlisted = send_from_the_page(desk, "query { me { email } }")
    assert [e["extensions"]["code"] for e in unlisted["errors"]] == ["FORBIDDEN"]
    assert "data" not in unlisted or unlisted["data"] is None
    # a console document with one field more is another document
    altered = desk.operations("supportOrder")[-1]["query"].replace(
        "customer { email name }", "customer { email name } order { code }", 1
    )
    assert altered not in LISTED
    refused = send_from_the_page(desk, altered)
    assert [e["extensions"]["code"] for e in refused["errors"]] == ["FORBIDDEN"]
    # and the console's own document, sent the same way, is served
    me = next(text for text in LISTED if operation_name(text) == "ConsoleMe")
    served = send_from_the_page(desk, me)
    assert "errors" not in served, served
    assert served["data"]["me"]["email"] == "support@example.com"

"""The pages this API serves itself, in Chromium against the real server: the console and
GraphiQL load under their Content-Security-Policy without a single violation, and script
injected into either (an inline <script>, an inline event handler) is blocked. Their
headers; a customer who logs in gets a clear "staff only" page; STAFF_CONSOLE=false
leaves no console; a rate-limited lookup says how long to wait."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from app.console.headers import CONTENT_SECURITY_POLICY
from app.graphiql import ASSETS_URL
from tests.browser.console_pages import ConsolePage, console, orders_of
from tests.e2e.conftest import LiveServer

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

WATCH_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__violations.push({ directive: event.violatedDirective, blocked: event.blockedURI });
});
"""

INJECT = """() => {
  const script = document.createElement("script");
  script.textContent = "window.__injected = 'inline script ran'";
  document.body.append(script);
  document.body.insertAdjacentHTML(
    "beforeend", '<img src="/nothing-here.png" onerror="window.__injected = \\'handler ran\\'">'
  );
}"""


def watched(browser: Browser) -> tuple[Page, list[str]]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.add_init_script(WATCH_VIOLATIONS)
    page = context.new_page()
    messages: list[str] = []
    page.on("console", lambda message: messages.append(message.text))
    return page, messages


def violations(page: Page) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = page.evaluate("window.__violations")
    return found


def csp_messages(messages: list[str]) -> list[str]:
    return [m for m in messages if "Content Security Policy" in m]


def assert_injection_blocked(page: Page) -> None:
    page.evaluate(INJECT)
    page.wait_for_function("window.__violations.length >= 2")
    assert page.evaluate("window.__injected") is None
    directives = {v["directive"] for v in violations(page)}
    assert directives == {"script-src-elem", "script-src-attr"}, violations(page)


def test_the_console_runs_under_its_csp_and_blocks_injected_script(
    live_server: LiveServer, browser: Browser
) -> None:
    page, messages = watched(browser)
    station = ConsolePage(page, live_server.base_url)
    station.open()
    station.login("admin@example.com")
    for screen, ready in [
        ("Support desk", "form[aria-label='Find by order code']"),
        ("Warehouse station", ".queue table"),
        ("Returns desk", ".queue .empty, .queue table"),
        ("Admin", "table.audit-log tbody tr"),
    ]:
        station.go(screen)
        expect(page.locator(ready).first).to_be_visible()
    page.wait_for_load_state("networkidle")
    assert violations(page) == []
    assert csp_messages(messages) == []
    assert_injection_blocked(page)
    assert csp_messages(messages)  # Chromium reported the refusals too


def test_graphiql_runs_under_the_csp_and_blocks_injected_script(
    live_server: LiveServer, browser: Browser
) -> None:
    page, messages = watched(browser)
    page.goto(live_server.graphql_url)
    page.wait_for_load_state("networkidle")  # the schema is loaded (introspection)
    expect(page.locator(".graphiql-query-editor")).to_contain_text("mutation Login")
    assert violations(page) == []
    assert csp_messages(messages) == []
    assert_injection_blocked(page)


def test_the_console_and_graphiql_carry_the_security_headers(live_server: LiveServer) -> None:
    base = live_server.base_url
    pages = [
        httpx.get(f"{base}/console/", timeout=5),
        httpx.get(f"{base}/console/app.js", timeout=5),
        httpx.get(f"{base}/graphql", headers={"Accept": "text/html"}, timeout=5),
        httpx.get(f"{base}{ASSETS_URL}/graphiql-start.js", timeout=5),
    ]
    for response in pages:
        assert response.status_code == 200, response.url
        policy = dict(
            directive.partition(" ")[::2]
            for directive in response.headers["content-security-policy"].split("; ")
        )
        assert policy["default-src"] == "'none'"
        assert policy["script-src"] == "'self'"
        assert policy["style-src"] == "'self'"
        assert policy["connect-src"] == "'self'"
        assert policy["frame-ancestors"] == "'none'"
        assert policy["base-uri"] == "'none'"
        assert policy["form-action"] == "'self'"
        assert "unsafe" not in response.headers["content-security-policy"]
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
    assert "GraphiQL" in pages[2].text
    assert pages[1].headers["content-type"].startswith("text/javascript")


def test_a_customer_who_logs_in_sees_staff_only(
    live_server: LiveServer, browser: Browser, output_dir: Path
) -> None:
    visitor = console(browser, live_server.base_url)
    visitor.open()
    visitor.login("alice@example.com")
    staff_only = visitor.page.get_by_role("region", name="Staff only")
    expect(staff_only).to_be_visible()
    expect(staff_only).to_contain_text("alice@example.com")
    expect(visitor.page.get_by_role("navigation")).to_have_count(0)
    # nothing but the login was asked of the API
    assert [re.findall(r"^\s*(\w+ \w+)", body["query"])[0] for body in visitor.sent] == [
        "mutation ConsoleLogin"
    ]
    visitor.shot(output_dir, "console-staff-only.png")
    staff_only.get_by_role("button", name="Log out").click()
    expect(visitor.page.get_by_role("form", name="Log in")).to_be_visible()


@pytest.mark.server_env(STAFF_CONSOLE="false")
def test_staff_console_false_serves_no_console(live_server: LiveServer) -> None:
    base = live_server.base_url
    assert httpx.get(f"{base}/console/", timeout=5).status_code == 404
    assert httpx.get(f"{base}/console/app.js", timeout=5).status_code == 404
    # the API itself is unchanged
    ide = httpx.get(f"{base}/graphql", headers={"Accept": "text/html"}, timeout=5)
    assert ide.status_code == 200


@pytest.mark.server_env(RATE_SUPPORT_LOOKUPS_PER_AGENT="2/hour")
def test_a_rate_limited_lookup_says_how_long_to_wait(
    live_server: LiveServer, browser: Browser, output_dir: Path
) -> None:
    code = orders_of(live_server.base_url, "bob@example.com")[0]["code"]
    desk = console(browser, live_server.base_url)
    desk.open()
    desk.login("support@example.com")
    form = desk.page.get_by_role("form", name="Find by order code")
    form.get_by_label("Order code").fill(code)
    form.get_by_label("Reason (ticket)").fill("T-9000")
    for _ in range(2):
        form.get_by_role("button", name="Look up").click()
        expect(desk.page.locator("article.order")).to_be_visible()
    form.get_by_role("button", name="Look up").click()
    expect(desk.banner).to_have_attribute("data-code", "RATE_LIMITED")
    expect(desk.banner).to_have_text(
        re.compile(r"^Too many lookups for now\. Wait \d+ seconds, then try again\.$")
    )
    expect(desk.page.locator("article.order")).to_have_count(0)
    desk.shot(output_dir, "console-rate-limited.png")

"""The staff console as people use it in the browser tests (tests/browser/test_console_*):
log in, pick a screen, read the banner; every GraphQL request the page sends is recorded
(operation name and variables), so a test can assert what was — and was not — sent."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, Locator, Page, Request, expect

from tests.e2e.conftest import DEMO_PASSWORD

TIMEOUT_MS = 15_000
CONSOLE_PATH = "/console/"


@dataclass
class ConsolePage:
    page: Page
    base_url: str
    sent: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.page.set_default_timeout(TIMEOUT_MS)
        self.page.on("request", self._record)

    def _record(self, request: Request) -> None:
        if request.url.endswith("/graphql") and request.method == "POST" and request.post_data:
            self.sent.append(json.loads(request.post_data))

    def operations(self, word: str) -> list[dict[str, Any]]:
        """Requests whose document mentions `word` (a field name)."""
        return [body for body in self.sent if word in body.get("query", "")]

    def open(self, screen: str = "") -> None:
        self.page.goto(f"{self.base_url}{CONSOLE_PATH}{'#' + screen if screen else ''}")

    def login(self, email: str, password: str = DEMO_PASSWORD) -> None:
        form = self.page.get_by_role("form", name="Log in")
        form.get_by_label("Email").fill(email)
        form.get_by_label("Password").fill(password)
        form.get_by_role("button", name="Log in").click()

    def go(self, screen_title: str) -> None:
        self.page.get_by_role("navigation", name="Screens").get_by_role(
            "link", name=screen_title
        ).click()

    @property
    def banner(self) -> Locator:
        return self.page.locator("#banner")

    def expect_notice(self, text: str) -> None:
        expect(self.banner).to_be_visible()
        expect(self.banner).to_have_class("banner ok")
        expect(self.banner).to_contain_text(text)

    def shot(self, output_dir: Path, name: str, *, full_page: bool = True) -> None:
        self.page.screenshot(path=str(output_dir / name), full_page=full_page)


def console(browser: Browser, base_url: str) -> ConsolePage:
    """A console in a browser context of its own (its own sessionStorage: its own login)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    return ConsolePage(context.new_page(), base_url)


def graphql(base_url: str, query: str, token: str | None = None, **variables: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.post(
        f"{base_url}/graphql",
        json={"query": query, "variables": variables},
        headers=headers,
        timeout=15,
    )
    return response.json()


def token_of(base_url: str, email: str, password: str = DEMO_PASSWORD) -> str:
    body = graphql(
        base_url,
        "mutation($e: String!, $p: String!) { login(email: $e, password: $p) "
        "{ tokens { accessToken } userErrors { message } } }",
        e=email,
        p=password,
    )
    token: str = body["data"]["login"]["tokens"]["accessToken"]
    return token


def orders_of(base_url: str, email: str) -> list[dict[str, Any]]:
    """The customer's orders (code, status, lines), newest first, over the API."""
    body = graphql(
        base_url,
        "{ myOrders(first: 20) { edges { node { code status lines { sku quantity } } } } }",
        token_of(base_url, email),
    )
    return [edge["node"] for edge in body["data"]["myOrders"]["edges"]]

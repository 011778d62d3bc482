"""The staff console's new doors against the real server in production mode (issue 16): a
staff account cannot enumerate customers' emails (supportSearch) or order codes (requestReturn
for the customer) faster than the staff budgets allow, however many requests it sends at
once; the two share the agent's staff failure lockout, and while it holds, a real email or
code answers exactly like an unknown one. A picker created through the API works until an
admin deactivates it, and its very next request is refused.

Budgets compressed for the run: staff failures `FAILURES` per 15 minutes, support lookups
`SUPPORT_BUDGET` per hour (defaults 60 and 120). Figures: test-output/staff_console_budgets.txt.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.security import codes
from tests.security_stage.conftest import Server, production_env, record, start_server, stop_server

pytestmark = pytest.mark.e2e

FAILURES = 10
SUPPORT_BUDGET = 40
BURST = 30
FIGURES: list[str] = []

SEARCH = """
query S($e: String!) { supportSearch(customerEmail: $e, reason: "TICKET-STAGE") { code } }
"""
RETURN_FOR = """
mutation R($c: String!) {
  requestReturn(code: $c, lines: [{sku: "MUG-001", quantity: 1}], reason: DAMAGED,
                supportReason: "TICKET-STAGE") {
    returnRequest { rma } userErrors { field code }
  }
}
"""
CREATE = """
mutation C($e: String!, $r: Role!) {
  createStaffUser(email: $e, name: "Stage Staff", password: "Stage-Passw0rd-long", role: $r) {
    user { email role active } userErrors { field code }
  }
}
"""
DEACTIVATE = """
mutation D($e: String!) { deactivateUser(email: $e) { user { active } userErrors { code } } }
"""
QUEUE = "{ fulfillmentQueue { edges { node { code } } } }"


@pytest.fixture(scope="module", autouse=True)
def figures() -> Iterator[None]:
    yield
    if FIGURES:
        record("staff_console_budgets.txt", FIGURES)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("stage-staff-console")
    env = production_env(
        workdir,
        RATE_STAFF_FAILED_LOOKUPS_PER_USER=f"{FAILURES}/15 minutes",
        RATE_SUPPORT_LOOKUPS_PER_AGENT=f"{SUPPORT_BUDGET}/hour",
    )
    running = start_server(workdir, env)
    try:
        yield running
    finally:
        stop_server(running)


def new_staff(server: Server, admin: str, role: str = "SUPPORT") -> tuple[str, str]:
    """A fresh staff account made through the API; (email, access token)."""
    email = f"stage-{role.lower()}-{secrets.token_hex(4)}@example.com"
    body = server.gql(CREATE, {"e": email, "r": role}, token=admin)
    assert body["data"]["createStaffUser"]["userErrors"] == [], body
    return email, server.login(email, "Stage-Passw0rd-long").access


def burst(server: Server, token: str, calls: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    """All at once, each on its own connection."""

    async def one(client: httpx.AsyncClient, query: str, variables: dict[str, Any]) -> Any:
        response = await client.post(
            server.graphql_url,
            json={"query": query, "variables": variables},
            headers={"authorization": f"Bearer {token}"},
        )
        return response.status_code, response.json()

    async def run_all() -> list[Any]:
        limits = httpx.Limits(max_connections=len(calls))
        async with httpx.AsyncClient(timeout=60.0, limits=limits) as client:
            return list(await asyncio.gather(*(one(client, q, v) for q, v in calls)))

    return asyncio.run(run_all())


def kind(answer: tuple[int, dict[str, Any]]) -> str:
    _, body = answer
    errors = body.get("errors") or []
    if errors:
        return str(errors[0].get("extensions", {}).get("code"))
    data = next(iter(body["data"].values()))
    return "found" if data else "empty"


def comparable(answer: tuple[int, dict[str, Any]]) -> Any:
    status, body = answer
    errors = [
        (e["message"], e.get("extensions", {}).get("code"), e.get("path"))
        for e in body.get("errors") or []
    ]
    return status, errors, body.get("data")


def test_emails_cannot_be_enumerated_faster_than_the_staff_failure_budget(server: Server) -> None:
    admin = server.login("admin@example.com").access
    _, agent = new_staff(server, admin)
    guesses = [
        (SEARCH, {"e": f"guess-{i}-{secrets.token_hex(3)}@example.com"}) for i in range(BURST)
    ]
    answers = burst(server, agent, guesses)
    tally = Counter(kind(a) for a in answers)
    FIGURES.append(f"supportSearch, {BURST} unknown emails at once: {dict(tally)}")
    # at most FAILURES emails were actually tested; the rest refused with a wait
    assert tally["empty"] == FAILURES
    assert tally["RATE_LIMITED"] == BURST - FAILURES
    # locked: a customer with orders answers exactly like an unknown email
    real = burst(server, agent, [(SEARCH, {"e": "alice@example.com"})])[0]
    unknown = burst(server, agent, [(SEARCH, {"e": "nobody-at-all@example.com"})])[0]
    assert kind(real) == "RATE_LIMITED"
    assert comparable(real)[:2] == comparable(unknown)[:2]
    assert real[1]["errors"][0]["extensions"]["retryAfter"] > 0


def test_codes_cannot_be_enumerated_through_a_return_for_the_customer(server: Server) -> None:
    admin = server.login("admin@example.com").access
    alice = server.login("alice@example.com").access
    real_code = server.order_codes(alice)[0]
    _, agent = new_staff(server, admin)
    guesses = [(RETURN_FOR, {"c": codes.generate()}) for _ in range(BURST)]
    answers = burst(server, agent, guesses)
    tally = Counter(kind(a) for a in answers)
    FIGURES.append(f"requestReturn for the customer, {BURST} unknown codes at once: {dict(tally)}")
    assert tally["ORDER_NOT_FOUND"] == FAILURES
    assert tally["RATE_LIMITED"] == BURST - FAILURES
    # locked: alice's real order answers like an unknown code, and searches are locked too
    real = burst(server, agent, [(RETURN_FOR, {"c": real_code})])[0]
    unknown = burst(server, agent, [(RETURN_FOR, {"c": codes.generate()})])[0]
    assert comparable(real)[:2] == comparable(unknown)[:2]
    assert kind(real) == "RATE_LIMITED"
    search = burst(server, agent, [(SEARCH, {"e": "alice@example.com"})])[0]
    assert kind(search) == "RATE_LIMITED"


def test_mixed_search_and_code_guesses_share_one_lockout(server: Server) -> None:
    admin = server.login("admin@example.com").access
    _, agent = new_staff(server, admin)
    calls: list[tuple[str, dict[str, Any]]] = []
    for i in range(BURST // 2):
        calls.append((SEARCH, {"e": f"mixed-{i}-{secrets.token_hex(3)}@example.com"}))
        calls.append((RETURN_FOR, {"c": codes.generate()}))
    tally = Counter(kind(a) for a in burst(server, agent, calls))
    FIGURES.append(f"both doors, {len(calls)} guesses at once: {dict(tally)}")
    assert tally["empty"] + tally["ORDER_NOT_FOUND"] == FAILURES


def test_the_support_budget_caps_searches_that_find_orders(server: Server) -> None:
    admin = server.login("admin@example.com").access
    _, agent = new_staff(server, admin)
    answers = burst(server, agent, [(SEARCH, {"e": "alice@example.com"})] * (SUPPORT_BUDGET + 10))
    tally = Counter(kind(a) for a in answers)
    FIGURES.append(f"supportSearch, {SUPPORT_BUDGET + 10} searches for alice: {dict(tally)}")
    assert tally["found"] == SUPPORT_BUDGET and tally["RATE_LIMITED"] == 10
    refused = next(a for a in answers if kind(a) == "RATE_LIMITED")
    assert refused[0] == 429  # nothing but RATE_LIMITED: HTTP 429 with Retry-After


def test_a_deactivated_picker_is_refused_on_its_next_request(server: Server) -> None:
    admin = server.login("admin@example.com").access
    email, picker = new_staff(server, admin, "WAREHOUSE")
    assert "errors" not in server.gql(QUEUE, token=picker)
    gone = server.gql(DEACTIVATE, {"e": email}, token=admin)
    assert gone["data"]["deactivateUser"] == {"user": {"active": False}, "userErrors": []}
    refused = server.gql(QUEUE, token=picker)
    assert [e["extensions"]["code"] for e in refused["errors"]] == ["UNAUTHENTICATED"]
    login = server.gql(
        'mutation($e:String!){ login(email:$e, password:"Stage-Passw0rd-long")'
        "{ tokens { accessToken } userErrors { code message } } }",
        {"e": email},
    )["data"]["login"]
    assert login["tokens"] is None
    assert [e["code"] for e in login["userErrors"]] == ["UNAUTHENTICATED"]

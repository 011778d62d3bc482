"""Brute force of order codes by every route the API offers today, against the real server in
production mode with a small budget, counting the codes ACTUALLY tested (answers that are
ORDER_NOT_FOUND or data): never more than the budget, whatever the route.

Instance A: `RATE_LOOKUPS_PER_USER=20/minute` (the budget under attack), per-IP 1000/minute,
failed lookups 1000 per 15 minutes per user and 100000 per IP (so the failure lockouts do not
hide the per-user budget). Each route attacks with a fresh account.
Instance B: per-IP budget 20/minute, per-user budgets out of the way: several accounts,
spoofed X-Forwarded-For / X-Real-IP / Forwarded, parallel connections (one address).

Figures: printed and written to test-output/bruteforce.txt.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import websockets
from websockets.typing import Subprotocol

from app.security import codes
from tests.security_stage.conftest import (
    Server,
    record,
    stage_server,
)

pytestmark = pytest.mark.e2e

BUDGET = 20  # RATE_LOOKUPS_PER_USER on instance A, RATE_LOOKUPS_PER_IP on instance B
MAX_ALIASES = 30  # the server's alias cap: the most lookups one document can carry
ORDER = "order(code: $c{i}) {{ code }}"
GRAPHQL_WS = Subprotocol("graphql-transport-ws")


@dataclass
class Tally:
    attempts: int = 0
    tested: int = 0  # ORDER_NOT_FOUND or data: a code really checked against the database
    refused: int = 0  # RATE_LIMITED
    other: list[str] | None = None

    def add(self, tested: int, refused: int, other: list[str]) -> None:
        self.tested += tested
        self.refused += refused
        self.other = [*(self.other or []), *other]


RESULTS: dict[str, tuple[str, Tally]] = {}


@pytest.fixture(scope="module", autouse=True)
def figures() -> Iterator[None]:
    yield
    lines = [
        f"{'route':<58} {'budget':>6} {'attempts':>8} {'tested':>6} {'refused':>7}",
    ]
    for route, (budget, tally) in RESULTS.items():
        lines.append(
            f"{route:<58} {budget:>6} {tally.attempts:>8} {tally.tested:>6} {tally.refused:>7}"
        )
    lines.append("tested = answers ORDER_NOT_FOUND or data; refused = RATE_LIMITED")
    record("bruteforce.txt", lines)


def _classify(body: dict[str, Any], keys: list[str]) -> tuple[int, int, list[str]]:
    """Per lookup field (response key): tested, refused or something else."""
    tested = refused = 0
    other: list[str] = []
    by_key: dict[str, str] = {}
    for error in body.get("errors") or []:
        path = error.get("path") or []
        code = (error.get("extensions") or {}).get("code", "?")
        if path:
            by_key[str(path[0])] = code
        elif len(keys) == 1:  # a subscription that failed to start reports no path
            by_key[keys[0]] = code
        else:
            other.append(f"{code}: {error.get('message')}")
    data = body.get("data") or {}
    for key in keys:
        code = by_key.get(key)
        if code == "ORDER_NOT_FOUND" or (code is None and data.get(key) is not None):
            tested += 1
        elif code == "RATE_LIMITED":
            refused += 1
        else:
            other.append(f"{key}: {code}")
    return tested, refused, other


def candidates(n: int, real: str) -> list[str]:
    """What an attacker tries: valid random codes, now and then a real (someone else's)."""
    return [real if i % 5 == 0 else codes.display(codes.generate()) for i in range(n)]


def aliased(n: int, prefix: str = "a") -> tuple[str, list[str]]:
    names = [f"{prefix}{i}" for i in range(n)]
    variables = ", ".join(f"$c{i}: String!" for i in range(n))
    fields = " ".join(f"{name}: {ORDER.format(i=i)}" for i, name in enumerate(names))
    return f"query Q({variables}) {{ {fields} }}", names


@pytest.fixture(scope="module")
def user_budget_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with stage_server(
        tmp_path_factory,
        "stage-brute-user",
        RATE_LOOKUPS_PER_USER=f"{BUDGET}/minute",
        RATE_LOOKUPS_PER_IP="1000/minute",
        RATE_FAILED_LOOKUPS_PER_USER="1000/15 minutes",
        RATE_FAILED_LOOKUPS_PER_IP="100000/15 minutes",
    ) as server:
        yield server


@pytest.fixture(scope="module")
def ip_budget_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with stage_server(
        tmp_path_factory,
        "stage-brute-ip",
        RATE_LOOKUPS_PER_USER="100000/minute",
        RATE_LOOKUPS_PER_IP=f"{BUDGET}/minute",
        RATE_FAILED_LOOKUPS_PER_USER="100000/15 minutes",
        RATE_FAILED_LOOKUPS_PER_IP="100000/15 minutes",
    ) as server:
        yield server


@pytest.fixture(scope="module")
def alice_code(user_budget_server: Server) -> str:
    alice = user_budget_server.login("alice@example.com").access
    return user_budget_server.order_codes(alice)[0]


# -- the routes (each returns its tally; the attacker is a fresh account) -------------------


def route_single_queries(server: Server, token: str, real: str) -> Tally:
    tally = Tally()
    query, keys = aliased(1)
    with httpx.Client(timeout=30.0) as client:
        for code in candidates(2 * BUDGET, real):
            body = server.post(query, {"c0": code}, token=token, client=client).json()
            tally.attempts += 1
            tally.add(*_classify(body, keys))
    return tally


def route_aliases(server: Server, token: str, real: str) -> Tally:
    tally = Tally()
    query, keys = aliased(MAX_ALIASES)
    for _ in range(2):
        variables = {f"c{i}": c for i, c in enumerate(candidates(MAX_ALIASES, real))}
        tally.attempts += MAX_ALIASES
        tally.add(*_classify(server.post(query, variables, token=token).json(), keys))
    return tally


def route_named_fragments(server: Server, token: str, real: str) -> Tally:
    # F0 is spread twice: the alias cap counts it twice (4 x 7 = 28 <= 30), graphql-core
    # merges the copies, so each document resolves 21 lookups.
    tally = Tally()
    per = 7
    fragments, keys = [], []
    for f in range(3):
        fields = []
        for j in range(per):
            i = f * per + j
            keys.append(f"f{i}")
            fields.append(f"f{i}: {ORDER.format(i=i)}")
        fragments.append(f"fragment F{f} on Query {{ {' '.join(fields)} }}")
    variables_decl = ", ".join(f"$c{i}: String!" for i in range(len(keys)))
    query = f"query Q({variables_decl}) {{ ...F0 ...F1 ...F2 ...F0 }} " + " ".join(fragments)
    for _ in range(3):
        variables = {f"c{i}": c for i, c in enumerate(candidates(len(keys), real))}
        tally.attempts += len(keys)
        tally.add(*_classify(server.post(query, variables, token=token).json(), keys))
    return tally


def route_inline_fragments(server: Server, token: str, real: str) -> Tally:
    tally = Tally()
    keys = [f"n{i}" for i in range(MAX_ALIASES)]
    blocks = " ".join(f"... on Query {{ n{i}: {ORDER.format(i=i)} }}" for i in range(len(keys)))
    decl = ", ".join(f"$c{i}: String!" for i in range(len(keys)))
    query = f"query Q({decl}) {{ {blocks} }}"
    for _ in range(2):
        variables = {f"c{i}": c for i, c in enumerate(candidates(len(keys), real))}
        tally.attempts += len(keys)
        tally.add(*_classify(server.post(query, variables, token=token).json(), keys))
    return tally


def _parallel(
    server: Server, jobs: list[tuple[str, dict[str, Any], list[str], dict[str, str]]]
) -> Tally:
    """Each job on its own new connection, all at once."""
    tally = Tally()

    def one(
        job: tuple[str, dict[str, Any], list[str], dict[str, str]],
    ) -> tuple[int, int, list[str]]:
        query, variables, keys, headers = job
        with httpx.Client(timeout=60.0) as client:  # a separate TCP connection each
            response = client.post(
                server.graphql_url, json={"query": query, "variables": variables}, headers=headers
            )
        return _classify(response.json(), keys)

    with ThreadPoolExecutor(max_workers=16) as pool:
        for (_, _, keys, _), result in zip(jobs, pool.map(one, jobs), strict=True):
            tally.attempts += len(keys)
            tally.add(*result)
    return tally


def route_parallel_connections(server: Server, token: str, real: str) -> Tally:
    query, keys = aliased(1)
    auth = {"authorization": f"Bearer {token}"}
    return _parallel(server, [(query, {"c0": c}, keys, auth) for c in candidates(3 * BUDGET, real)])


def route_parallel_alias_documents(server: Server, token: str, real: str) -> Tally:
    query, keys = aliased(MAX_ALIASES)
    auth = {"authorization": f"Bearer {token}"}
    jobs = []
    for _ in range(4):
        variables = {f"c{i}": c for i, c in enumerate(candidates(MAX_ALIASES, real))}
        jobs.append((query, variables, keys, auth))
    return _parallel(server, jobs)


def _spoofed(i: int) -> dict[str, str]:
    ip = f"198.51.{i // 250}.{i % 250 + 1}"
    return {
        "x-forwarded-for": ip if i % 2 else f"{ip}, 10.0.0.{i % 250}",
        "x-real-ip": ip,
        "forwarded": f"for={ip}",
        "true-client-ip": ip,
        "cf-connecting-ip": ip,
    }


def route_rotating_forwarded_for(server: Server, token: str, real: str) -> Tally:
    tally = Tally()
    query, keys = aliased(1)
    with httpx.Client(timeout=30.0) as client:
        for i, code in enumerate(candidates(2 * BUDGET, real)):
            body = server.post(query, {"c0": code}, token=token, headers=_spoofed(i), client=client)
            tally.attempts += 1
            tally.add(*_classify(body.json(), keys))
    return tally


def route_every_code_door(server: Server, token: str, real: str) -> Tally:
    doors = {
        "order": "query Q($c: String!) { door: order(code: $c) { code } }",
        "checkout": "query Q($c: String!) { door: checkout(code: $c) { code } }",
        "reorder": "query Q($c: String!) { door: reorder(code: $c) { unavailableSkus } }",
        "cancelOrder": "mutation M($c: String!) { door: cancelOrder(code: $c) "
        "{ order { code } userErrors { code } } }",
        "updateCheckout": "mutation M($c: String!) { door: updateCheckout(code: $c) "
        "{ checkout { code } userErrors { code } } }",
        "placeOrder": "mutation M($c: String!) { door: placeOrder(checkoutCode: $c, paymentToken: "
        '"tok_visa") { order { code } userErrors { code } } }',
    }
    tally = Tally()
    names = sorted(doors)
    with httpx.Client(timeout=30.0) as client:
        for i, code in enumerate(candidates(8 * len(doors), real)):
            body = server.post(
                doors[names[i % len(names)]], {"c": code}, token=token, client=client
            )
            tally.attempts += 1
            tally.add(*_classify(body.json(), ["door"]))
    return tally


def route_websocket(server: Server, token: str, real: str) -> Tally:
    """graphql-transport-ws: queries as `subscribe` messages, and orderUpdates starts."""
    tally = Tally()
    query = "query Q($c: String!) { w: order(code: $c) { code } }"
    subscription = "subscription S($c: String!) { w: orderUpdates(code: $c) { type } }"

    async def attack() -> None:
        async with websockets.connect(server.ws_url, subprotocols=[GRAPHQL_WS]) as ws:
            init = {"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}
            await ws.send(json.dumps(init))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            for i, code in enumerate(candidates(2 * BUDGET, real)):
                document = query if i % 2 else subscription
                payload = {"query": document, "variables": {"c": code}}
                await ws.send(json.dumps({"id": str(i), "type": "subscribe", "payload": payload}))
                tally.attempts += 1
                while True:
                    message = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    if message.get("id") != str(i):
                        continue
                    if message["type"] == "next":
                        tally.add(*_classify(message["payload"], ["w"]))
                        if i % 2 == 0 and message["payload"].get("data"):
                            await ws.send(json.dumps({"id": str(i), "type": "complete"}))
                            break
                    elif message["type"] == "error":
                        tally.add(0, 0, [f"ws error: {message['payload']}"])
                    if message["type"] in ("complete", "error"):
                        break

    asyncio.run(attack())
    return tally


USER_ROUTES: dict[str, Callable[[Server, str, str], Tally]] = {
    "single queries, one connection": route_single_queries,
    "30 aliases per document": route_aliases,
    "named fragments (3 x 7 aliases, one spread twice)": route_named_fragments,
    "inline fragments (30 per document)": route_inline_fragments,
    "separate parallel connections (1 lookup each)": route_parallel_connections,
    "parallel connections x 30 aliases": route_parallel_alias_documents,
    "rotating X-Forwarded-For / X-Real-IP / Forwarded": route_rotating_forwarded_for,
    "every code door (order, checkout, reorder, cancel…)": route_every_code_door,
    "WebSocket: queries and orderUpdates starts": route_websocket,
}


@pytest.mark.parametrize("route", list(USER_ROUTES))
def test_no_route_tests_more_codes_than_the_user_budget(
    user_budget_server: Server, alice_code: str, route: str
) -> None:
    token = user_budget_server.register().access
    started = time.monotonic()
    tally = USER_ROUTES[route](user_budget_server, token, alice_code)
    elapsed = time.monotonic() - started
    RESULTS[f"A/user: {route}"] = (f"{BUDGET}/min", tally)
    assert elapsed < 55, "the route outlived the budget window: figures would not mean much"
    assert not tally.other, f"unexpected answers: {tally.other[:5]}"
    assert tally.attempts > BUDGET
    assert tally.tested + tally.refused == tally.attempts
    assert tally.tested <= BUDGET, f"{route}: {tally.tested} codes tested, budget {BUDGET}"
    assert tally.tested > 0 and tally.refused > 0  # the route works, and the limiter engaged


def test_accounts_and_spoofed_addresses_do_not_beat_the_ip_budget(
    ip_budget_server: Server,
) -> None:
    """One address, three accounts, spoofed forwarding headers on parallel connections."""
    alice = ip_budget_server.login("alice@example.com").access
    real = ip_budget_server.order_codes(alice)[0]
    query, keys = aliased(1)
    jobs = []
    for _ in range(3):
        token = ip_budget_server.register().access
        for code in candidates(BUDGET, real):
            headers = {"authorization": f"Bearer {token}", **_spoofed(random.randrange(10**6))}
            jobs.append((query, {"c0": code}, keys, headers))
    random.shuffle(jobs)
    tally = _parallel(ip_budget_server, jobs)
    RESULTS["B/ip: 3 accounts x spoofed forwarding x parallel"] = (f"{BUDGET}/min", tally)
    assert not tally.other, f"unexpected answers: {tally.other[:5]}"
    assert tally.tested + tally.refused == tally.attempts == 3 * BUDGET
    assert tally.tested <= BUDGET, f"{tally.tested} codes tested from one address, budget {BUDGET}"
    assert tally.tested > 0 and tally.refused > 0

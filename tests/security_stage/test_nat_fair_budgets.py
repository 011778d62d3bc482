"""Budgets that stop the attacker, not the neighbours (DESIGN §4, docs/security.md §3),
against the real server in production mode, from real separate source addresses: clients
bind 127.0.0.2, 127.0.0.3, … (all of 127.0.0.0/8 is this machine's loopback), and the server
sees each as its own client IP.

Test A, scaled to run in well under a minute: 200 customers behind one address (127.0.0.2,
"the office NAT") look up their own orders at a steady pace while an attacker with 50
accounts behind the same address guesses codes as fast as the budgets let him; a second
group of customers behind another address is the control. The per-address failure ceiling
is compressed to `IP_CEILING` per `WINDOW_SECONDS` so that the run spans several windows.
Then: no customer lookup is ever refused; the attacker is told ORDER_NOT_FOUND (a code
really tested) no more often than the ceiling allows per window; and while the address is
locked, his answers for another customer's real code and for an unknown code are identical
(status, body, headers) and not told apart by time (Wilcoxon signed-rank, p > 0.001 as CI's
timing check).

Test B: ten typos (codes failing their check symbol) in a row lock nobody out; ten
well-formed unknown codes do.

Figures: printed and written to test-output/nat_fair_budgets.txt.
"""

from __future__ import annotations

import asyncio
import importlib.util
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import httpx
import pytest

from app.security import codes
from tests.security_stage.conftest import (
    ROOT,
    Server,
    record,
    stage_server,
)
from tests.support.crowd import seed_crowd

pytestmark = pytest.mark.e2e

NAT = "127.0.0.2"  # the shared address: customers and the attacker
CONTROL = "127.0.0.3"  # other customers, on an address of their own
TYPIST = "127.0.0.4"  # test B
CUSTOMERS = 200
CONTROL_CUSTOMERS = 20
ATTACKER_ACCOUNTS = 50
IP_CEILING = 20
WINDOW_SECONDS = 5
RUN_SECONDS = 16.0
CUSTOMER_LOOKUPS = 3  # each customer, spread over the run (a few a minute, compressed)
ATTACK_WORKERS = 4
ORDER = "query Order($code: String!) { order(code: $code) { code status } }"
VOLATILE_HEADERS = {"date", "x-request-id"}
FIGURES: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def figures() -> Iterator[None]:
    yield
    if FIGURES:
        record("nat_fair_budgets.txt", FIGURES)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with stage_server(
        tmp_path_factory,
        "stage-nat",
        RATE_FAILED_LOOKUPS_PER_IP=f"{IP_CEILING}/{WINDOW_SECONDS} seconds",
        # Out of the way, so that only the address's failure ceiling stops the attacker,
        # window after window: with the defaults his 50 accounts are locked (10 failures
        # each), their lookup budgets (60/minute each) run out within seconds, and the
        # address's lookup budget (120/minute, which the customers' own 600 lookups also
        # fill) is spent within the first window, after which he tests nothing at all.
        RATE_FAILED_LOOKUPS_PER_USER="100000/15 minutes",
        RATE_LOOKUPS_PER_USER="100000/minute",
        RATE_LOOKUPS_PER_IP="100000/minute",
    ) as running:
        yield running


@pytest.fixture(scope="module")
def default_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Every budget at its default (test B)."""
    with stage_server(tmp_path_factory, "stage-typos") as running:
        yield running


@pytest.fixture(scope="module")
def crowd(server: Server) -> dict[str, list[dict[str, str]]]:
    """Customers with one order each and accounts without orders, with live sessions."""
    return seed_crowd(server.env, CUSTOMERS + CONTROL_CUSTOMERS + 2, ATTACKER_ACCOUNTS + 2)


def client(address: str) -> httpx.AsyncClient:
    """An HTTP client whose connections come from `address` (a real source IP)."""
    return httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(local_address=address),
        timeout=30.0,
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
    )


async def lookup(
    http: httpx.AsyncClient, server: Server, token: str, code: str
) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = await http.post(
        server.graphql_url,
        json={"query": ORDER, "variables": {"code": code}},
        headers={"authorization": f"Bearer {token}"},
    )
    return response, time.perf_counter() - started


def outcome(response: httpx.Response) -> str:
    body = response.json()
    errors = body.get("errors") or []
    if errors:
        return str(errors[0].get("extensions", {}).get("code"))
    return "DATA" if (body.get("data") or {}).get("order") else "EMPTY"


def answer(response: httpx.Response) -> tuple[int, str, list[tuple[str, str]]]:
    headers = sorted((k, v) for k, v in response.headers.items() if k not in VOLATILE_HEADERS)
    return response.status_code, response.text, headers


def load_timing_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "timing_check", ROOT / "scripts" / "timing_check.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class Run:
    customer_answers: dict[str, int] = field(default_factory=dict)  # outcome -> count
    control_answers: dict[str, int] = field(default_factory=dict)
    attacker_answers: dict[str, int] = field(default_factory=dict)
    tested_at: list[float] = field(default_factory=list)  # when the attacker got NOT_FOUND
    locked_pairs: list[tuple[float, float]] = field(default_factory=list)  # (real, unknown) s
    unlocked_pairs: int = 0
    mismatches: list[str] = field(default_factory=list)
    customer_latency: list[float] = field(default_factory=list)


def _count(tally: dict[str, int], key: str) -> None:
    tally[key] = tally.get(key, 0) + 1


async def _customers(
    server: Server, people: list[dict[str, str]], address: str, tally: dict[str, int], run: Run
) -> None:
    async with client(address) as http:

        async def one(person: dict[str, str]) -> None:
            # a few lookups of her own order, at random moments of the run
            moments = sorted(random.uniform(0, RUN_SECONDS) for _ in range(CUSTOMER_LOOKUPS))
            started = time.monotonic()
            for moment in moments:
                await asyncio.sleep(max(0.0, started + moment - time.monotonic()))
                response, took = await lookup(http, server, person["token"], person["code"])
                _count(tally, outcome(response))
                run.customer_latency.append(took)

        await asyncio.gather(*(one(person) for person in people))


async def _attacker(
    server: Server, accounts: list[dict[str, str]], victims: list[str], run: Run, t0: float
) -> None:
    """As fast as allowed: every account in turn, real codes of other customers mixed in."""
    queue = list(accounts)
    async with client(NAT) as http:

        async def worker() -> None:
            i = 0
            while time.monotonic() - t0 < RUN_SECONDS:
                account = queue[i % len(queue)]
                i += 1
                code = random.choice(victims) if i % 5 == 0 else codes.generate()
                response, _ = await lookup(http, server, account["token"], code)
                kind = outcome(response)
                _count(run.attacker_answers, kind)
                if kind == "ORDER_NOT_FOUND":
                    run.tested_at.append(time.monotonic() - t0)
                elif kind == "DATA":  # never: nothing of his
                    run.mismatches.append(f"attacker got data for {codes.mask(code)}")

        await asyncio.gather(*(worker() for _ in range(ATTACK_WORKERS)))


async def _prober(
    server: Server, account: dict[str, str], victim: str, run: Run, t0: float
) -> None:
    """One more attacker account, now and then: another customer's real code, an unknown
    code, the real code again. The unknown code's answer must equal a neighbour's (both
    neighbours unless a window ended in between)."""
    async with client(NAT) as http:
        await asyncio.sleep(2.0)
        while time.monotonic() - t0 < RUN_SECONDS:
            real_1, t_real_1 = await lookup(http, server, account["token"], victim)
            unknown, t_unknown = await lookup(http, server, account["token"], codes.generate())
            real_2, _ = await lookup(http, server, account["token"], victim)
            kinds = {outcome(real_1), outcome(unknown), outcome(real_2)}
            if answer(unknown) not in (answer(real_1), answer(real_2)):
                run.mismatches.append(f"real {answer(real_1)[:2]} / unknown {answer(unknown)[:2]}")
            elif kinds == {"RATE_LIMITED"}:
                run.locked_pairs.append((t_real_1, t_unknown))
            else:
                run.unlocked_pairs += 1
            await asyncio.sleep(0.2)


def test_a_neighbours_are_never_refused_and_the_attacker_gets_the_ceiling(
    server: Server, crowd: dict[str, list[dict[str, str]]]
) -> None:
    customers = crowd["customers"]
    office, control, victims = (
        customers[:CUSTOMERS],
        customers[CUSTOMERS : CUSTOMERS + CONTROL_CUSTOMERS],
        customers[CUSTOMERS + CONTROL_CUSTOMERS :],
    )
    attackers, prober = crowd["others"][:ATTACKER_ACCOUNTS], crowd["others"][ATTACKER_ACCOUNTS]
    victim_codes = [v["code"] for v in victims]
    run = Run()

    async def scenario() -> float:
        t0 = time.monotonic()
        await asyncio.gather(
            _customers(server, office, NAT, run.customer_answers, run),
            _customers(server, control, CONTROL, run.control_answers, run),
            _attacker(server, attackers, victim_codes, run, t0),
            _prober(server, prober, victim_codes[0], run, t0),
        )
        return time.monotonic() - t0

    elapsed = asyncio.run(scenario())
    # The server's windows start at a failure and last WINDOW_SECONDS: at most this many
    # begin within the run (one of our 5 s bins may see the end of one and the start of
    # the next, hence 2 x the ceiling per bin).
    windows_touched = int(elapsed // WINDOW_SECONDS) + 1
    tested = run.attacker_answers.get("ORDER_NOT_FOUND", 0)
    per_window: dict[int, int] = {}
    for moment in run.tested_at:
        _count(per_window, int(moment // WINDOW_SECONDS))  # type: ignore[arg-type]
    pairs = run.locked_pairs
    wilcoxon = load_timing_check().wilcoxon_signed_rank
    timing = wilcoxon([real - unknown for real, unknown in pairs]) if pairs else None
    latencies = sorted(run.customer_latency)
    FIGURES.extend(
        [
            "Test A: one address (127.0.0.2) shared by "
            f"{CUSTOMERS} customers and an attacker with {ATTACKER_ACCOUNTS} accounts; "
            f"{CONTROL_CUSTOMERS} customers on 127.0.0.3",
            f"per-address failure ceiling {IP_CEILING} per {WINDOW_SECONDS} s, run {elapsed:.1f} s",
            f"customers behind the shared address: {run.customer_answers}",
            f"customers on their own address:      {run.control_answers}",
            f"customer lookup latency p50 {latencies[len(latencies) // 2] * 1000:.0f} ms, "
            f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:.0f} ms",
            f"attacker answers: {run.attacker_answers}",
            f"codes tested by the attacker (ORDER_NOT_FOUND): {tested}, at most "
            f"{IP_CEILING} x {windows_touched} windows = {IP_CEILING * windows_touched}; "
            f"per window: {dict(sorted(per_window.items()))}",
            f"i.e. at most {IP_CEILING} per window of {WINDOW_SECONDS} s, "
            f"{IP_CEILING * 3600 // WINDOW_SECONDS} per hour at these settings; at the "
            "defaults (30 per 15 minutes) 120 per hour",
            f"locked-out probes, real vs unknown code: {len(pairs)} identical triples "
            f"(+{run.unlocked_pairs} identical before the lockout), mismatches "
            f"{len(run.mismatches)}"
            + (f", timing Wilcoxon p = {timing.p_value:.3f}" if timing else ""),
            "",
        ]
    )
    assert not run.mismatches, run.mismatches[:5]
    assert run.customer_answers == {"DATA": CUSTOMERS * CUSTOMER_LOOKUPS}
    assert run.control_answers == {"DATA": CONTROL_CUSTOMERS * CUSTOMER_LOOKUPS}
    assert set(run.attacker_answers) <= {"ORDER_NOT_FOUND", "RATE_LIMITED"}
    assert run.attacker_answers.get("RATE_LIMITED", 0) > 0  # the attacker was stopped
    assert max(per_window.values()) <= 2 * IP_CEILING, per_window
    assert tested <= IP_CEILING * windows_touched
    assert tested >= IP_CEILING  # he did test codes: the ceiling, not a bug, stopped him
    assert len(per_window) >= 3  # over several windows, each held to the ceiling
    assert len(pairs) >= 5, "the address was never seen locked"
    assert timing is not None and timing.p_value > 0.001, timing


def test_b_typos_lock_nobody_out_unknown_codes_do(default_server: Server) -> None:
    server = default_server
    typist, guesser = (
        {"token": token, "code": server.order_codes(token)[0]}
        for token in (
            server.login(email).access for email in ("alice@example.com", "bob@example.com")
        )
    )
    typos = []
    for _ in range(10):
        good = codes.display(codes.generate())
        typos.append(good[:-1] + ("0" if good[-1] != "0" else "1"))  # a wrong check symbol

    async def scenario() -> dict[str, Any]:
        async with client(TYPIST) as http:
            typed = [outcome((await lookup(http, server, typist["token"], t))[0]) for t in typos]
            own_after_typos = outcome(
                (await lookup(http, server, typist["token"], typist["code"]))[0]
            )
            unknown_after_typos = outcome(
                (await lookup(http, server, typist["token"], codes.generate()))[0]
            )
            guessed = [
                outcome((await lookup(http, server, guesser["token"], codes.generate()))[0])
                for _ in range(10)
            ]
            own_after_guesses = await lookup(http, server, guesser["token"], guesser["code"])
        return {
            "typed": typed,
            "own_after_typos": own_after_typos,
            "unknown_after_typos": unknown_after_typos,
            "guessed": guessed,
            "own_after_guesses": outcome(own_after_guesses[0]),
            "retry_after": own_after_guesses[0].headers.get("retry-after"),
        }

    seen = asyncio.run(scenario())
    FIGURES.extend(
        [
            "Test B (127.0.0.4): ten typos, then her own order and an unknown code: "
            f"{set(seen['typed'])}, {seen['own_after_typos']}, {seen['unknown_after_typos']}",
            f"ten unknown well-formed codes: {set(seen['guessed'])}, then her own order: "
            f"{seen['own_after_guesses']} (Retry-After {seen['retry_after']} s)",
        ]
    )
    assert seen["typed"] == ["INVALID_ORDER_CODE"] * 10
    assert seen["own_after_typos"] == "DATA"
    assert seen["unknown_after_typos"] == "ORDER_NOT_FOUND"  # not a lockout either
    assert seen["guessed"] == ["ORDER_NOT_FOUND"] * 10
    assert seen["own_after_guesses"] == "RATE_LIMITED"  # her own failures lock her out
    assert int(seen["retry_after"]) > 60

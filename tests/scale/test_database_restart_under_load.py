"""PostgreSQL going away and coming back under sustained load, as the app sees a database
restart: two instances reach PostgreSQL through a TCP proxy on loopback; while client
threads keep sending a mix of orders (unique idempotency keys, and the same key again
after a failure), code lookups and `myOrders` to both, the proxy is cut for a few seconds
and restored. Every answer is a normal one or SERVICE_UNAVAILABLE; afterwards every key
is one order and one charge, and the stock adds up. The machine's real PostgreSQL never
restarts (others use it): open connections break and new ones are refused, which is what
a restart looks like from the app."""

from __future__ import annotations

import os
import secrets
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.e2e.conftest import DEMO_PASSWORD, SERVER_START_TIMEOUT, LiveServer, SmtpSink
from tests.scale.conftest import _start
from tests.scale.proxy import TcpProxy
from tests.support.processes import run_cli, stop_process, wait_until_healthy

pytestmark = pytest.mark.e2e

THREADS = 4
WARM_SECONDS = 2.0  # load before the cut
CUT_SECONDS = 4.0  # the database is gone
AFTER_SECONDS = 4.0  # load after it is back
RECOVERY_DEADLINE_SECONDS = 20.0
SKU = "MUG-001"
INITIAL_STOCK = 100_000
CUSTOMERS = ("alice@example.com", "bob@example.com")

LOGIN = """
mutation Login($email: String!, $password: String!) {
  login(email: $email, password: $password) { tokens { accessToken } userErrors { code } }
}"""
PLACE = """
mutation Place($key: String!, $quantity: Int!) {
  placeOrder(lines: [{sku: "MUG-001", quantity: $quantity}], paymentToken: "tok_visa",
    idempotencyKey: $key,
    shippingAddress: {name: "Load Tester", line1: "1 Load Street", city: "Berlin",
                      postalCode: "10115", country: "DE"}) {
    order { code } userErrors { code message }
  }
}"""
ORDER = "query Order($code: String!) { order(code: $code) { code } }"
MY_ORDERS = "{ myOrders(first: 3) { edges { node { code } } } }"


@dataclass
class Attempt:
    """One idempotency key of one customer, and what the API said about it."""

    email: str
    key: str
    quantity: int
    code: str | None = None  # the order it was answered with
    failures: int = 0  # SERVICE_UNAVAILABLE answers to it


@dataclass
class Load:
    servers: tuple[LiveServer, ...]
    tokens: dict[str, str]
    proxy: TcpProxy
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    attempts: dict[tuple[str, str], Attempt] = field(default_factory=dict)
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)  # (phase, outcome)
    violations: list[str] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"up": [], "cut": []})
    restored_at: float | None = None
    first_success_after_restore: dict[str, float] = field(default_factory=dict)

    def post(self, server: LiveServer, email: str, query: str, **variables: Any) -> Any:
        """The answer's `data`, or None for SERVICE_UNAVAILABLE; anything else is recorded
        as a violation."""
        phase = "up" if self.proxy.is_up else "cut"
        started = time.monotonic()
        try:
            response = httpx.post(
                server.graphql_url,
                json={"query": query, "variables": variables},
                headers={"Authorization": f"Bearer {self.tokens[email]}"},
                timeout=15,
            )
        except httpx.HTTPError as exc:
            return self._violation(phase, f"{server.base_url}: transport error {exc!r}")
        with self.lock:
            self.latencies[phase].append(time.monotonic() - started)
        if response.status_code >= 500 or "Traceback" in response.text:
            return self._violation(phase, f"HTTP {response.status_code}: {response.text[:300]}")
        body = response.json()
        codes = {e.get("extensions", {}).get("code") for e in body.get("errors") or []}
        if codes == {"SERVICE_UNAVAILABLE"}:
            with self.lock:
                self.outcomes[phase, "SERVICE_UNAVAILABLE"] += 1
            return None
        if codes:
            return self._violation(phase, f"unexpected errors {codes}: {response.text[:300]}")
        with self.lock:
            self.outcomes[phase, "ok"] += 1
            if self.restored_at is not None and server.base_url not in (
                self.first_success_after_restore
            ):
                self.first_success_after_restore[server.base_url] = (
                    time.monotonic() - self.restored_at
                )
        return body["data"]

    def _violation(self, phase: str, what: str) -> None:
        with self.lock:
            self.outcomes[phase, "violation"] += 1
            self.violations.append(what)

    def place(self, server: LiveServer, attempt: Attempt) -> None:
        data = self.post(server, attempt.email, PLACE, key=attempt.key, quantity=attempt.quantity)
        with self.lock:
            if data is None:
                attempt.failures += 1
                return
            payload = data["placeOrder"]
            if payload["userErrors"] or not payload["order"]:
                self.violations.append(f"{attempt.key}: {payload}")
                return
            code = payload["order"]["code"]
            if attempt.code not in (None, code):
                self.violations.append(f"{attempt.key}: answered {attempt.code}, then {code}")
            attempt.code = code

    def worker(self, index: int) -> None:
        email = CUSTOMERS[index % len(CUSTOMERS)]
        mine: list[Attempt] = []
        step = 0
        while not self.stop.is_set():
            server = self.servers[(step + index) % len(self.servers)]
            kind = step % 3
            step += 1
            if kind == 0:
                # the same key again after a failure, else a new key
                retry = next((a for a in mine if a.code is None), None)
                if retry is None:
                    retry = Attempt(email, f"load-{uuid.uuid4().hex}", 1 + step % 3)
                    mine.append(retry)
                    with self.lock:
                        self.attempts[email, retry.key] = retry
                self.place(server, retry)
            elif kind == 1:
                known = [a.code for a in mine if a.code]
                if known:
                    code = known[step % len(known)]
                    data = self.post(server, email, ORDER, code=code)
                    if data is not None and data["order"] is None:
                        self._violation("any", f"order {code} not found")
            else:
                self.post(server, email, MY_ORDERS)


@pytest.fixture
def restart_cluster(
    scratch_database: str, scale_smtp: SmtpSink, tmp_path: Path
) -> Iterator[tuple[tuple[LiveServer, LiveServer], TcpProxy]]:
    setup_env = {"PATH": os.environ.get("PATH", ""), "DATABASE_URL": scratch_database}
    run_cli(["migrate"], setup_env, tmp_path)
    run_cli(["seed-demo"], setup_env, tmp_path)
    with psycopg.connect(scratch_database, autocommit=True) as conn:
        conn.execute("UPDATE products SET stock = %s WHERE sku = %s", (INITIAL_STOCK, SKU))
    proxy = TcpProxy(("127.0.0.1", 5432))
    proxy.restore()
    database = scratch_database.rsplit("/", 1)[1]
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{proxy.port}/{database}",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(scale_smtp.port),
        "JWT_SECRET": secrets.token_urlsafe(48),
        "APP_ENV": "development",
        "RATE_LOOKUPS_PER_USER": "100000/minute",
        "RATE_LOOKUPS_PER_IP": "100000/minute",
        "RATE_FAILED_LOOKUPS_PER_USER": "100000/15 minutes",
        "RATE_FAILED_LOOKUPS_PER_IP": "100000/15 minutes",
    }
    servers = [_start(name, env, tmp_path, scale_smtp) for name in ("restart-a", "restart-b")]
    try:
        for server in servers:
            wait_until_healthy(server, SERVER_START_TIMEOUT)
        yield (servers[0], servers[1]), proxy
    finally:
        for server in servers:
            stop_process(server.process)
        proxy.cut()


def test_database_restart_under_load_loses_nothing_and_charges_once(
    restart_cluster: tuple[tuple[LiveServer, LiveServer], TcpProxy], scratch_database: str
) -> None:
    servers, proxy = restart_cluster
    tokens = {}
    for email in CUSTOMERS:
        body = httpx.post(
            servers[0].graphql_url,
            json={"query": LOGIN, "variables": {"email": email, "password": DEMO_PASSWORD}},
            timeout=30,
        ).json()
        tokens[email] = body["data"]["login"]["tokens"]["accessToken"]
    load = Load(servers, tokens, proxy)

    # given client threads sending orders, lookups and myOrders to both instances
    threads = [threading.Thread(target=load.worker, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(WARM_SECONDS)
        # when the database goes away for a few seconds and comes back
        proxy.cut()
        time.sleep(CUT_SECONDS)
        with load.lock:
            load.restored_at = time.monotonic()
        proxy.restore()
        time.sleep(AFTER_SECONDS)
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)

    # then every answer was a normal one or SERVICE_UNAVAILABLE: no 500, no INTERNAL
    assert load.violations == [], load.violations[:10]
    assert load.outcomes["cut", "SERVICE_UNAVAILABLE"] > 0, load.outcomes  # it did bite
    # and both instances answered normally again without a restart
    assert set(load.first_success_after_restore) == {s.base_url for s in servers}, load.outcomes
    assert all(server.process.poll() is None for server in servers)

    # when every key that failed is sent again, with the same key, after recovery
    failed = [a for a in load.attempts.values() if a.code is None]
    retried_after_failure = sum(1 for a in load.attempts.values() if a.failures)
    for index, attempt in enumerate(failed):
        deadline = time.monotonic() + RECOVERY_DEADLINE_SECONDS
        while attempt.code is None:
            assert time.monotonic() < deadline, f"{attempt.key} never placed"
            load.place(servers[index % 2], attempt)
    # and a key answered with an order is sent once more (to the other instance)
    for index, attempt in enumerate(list(load.attempts.values())[:10]):
        before = attempt.code
        load.place(servers[(index + 1) % 2], attempt)
        assert attempt.code == before
    assert load.violations == [], load.violations[:10]

    # then every key is exactly one order, paid by exactly one charge, never voided
    keys = {a.key: a for a in load.attempts.values()}
    with psycopg.connect(scratch_database, autocommit=True) as conn:
        orders = conn.execute(
            "SELECT o.idempotency_key, u.email, u.public_id, o.code, o.total_minor,"
            " o.payment_reference, o.id FROM orders o JOIN users u ON u.id = o.user_id"
            " WHERE o.idempotency_key LIKE 'load-%%'"
        ).fetchall()
        ledger = conn.execute(
            "SELECT idempotency_key, kind, reference, amount_minor"
            " FROM test_provider_transactions WHERE idempotency_key LIKE '%%:load-%%'"
        ).fetchall()
        sold = conn.execute(
            "SELECT coalesce(sum(l.quantity), 0) FROM order_lines l JOIN orders o"
            " ON o.id = l.order_id WHERE o.idempotency_key LIKE 'load-%%' AND l.sku = %s",
            (SKU,),
        ).fetchone()
        remaining = conn.execute("SELECT stock FROM products WHERE sku = %s", (SKU,)).fetchone()
        reservations = {
            row[0]: row[1:]
            for row in conn.execute(
                "SELECT idempotency_key, status, attempt, payment_key FROM order_reservations"
                " WHERE idempotency_key LIKE 'load-%%'"
            ).fetchall()
        }
    by_key = Counter(row[0] for row in orders)
    assert set(by_key) == set(keys)
    assert [key for key, n in by_key.items() if n != 1] == []
    # A payment attempt that provably charged nothing (the provider refused: it was cut
    # too) releases its reservation; the retry is a new attempt with a provider key of its
    # own (`…#2`). Per order key, exactly one of its attempts charged.
    charges = Counter(row[0].split("#")[0] for row in ledger if row[1] == "charge")
    voids = [row[0] for row in ledger if row[1] == "refund"]
    for key, email, public_id, code, total, reference, _ in orders:
        assert keys[key].email == email
        assert (keys[key].code or "").replace("-", "") == code.replace("-", "")
        assert charges[f"order:{public_id}:{key}"] == 1, (
            key,
            [r for r in ledger if r[0].split("#")[0] == f"order:{public_id}:{key}"],
            reservations.get(key),
        )
        charge = next(r for r in ledger if r[0].split("#")[0] == f"order:{public_id}:{key}")
        assert (charge[2], charge[3]) == (reference, total)
    assert sum(charges.values()) == len(orders)
    assert voids == []  # no order stands on a refunded charge
    # and the stock adds up: initial - sold == remaining
    assert sold is not None and remaining is not None
    assert sum(a.quantity for a in keys.values()) == sold[0]
    assert INITIAL_STOCK - sold[0] == remaining[0]

    latency = {
        phase: f"median {statistics.median(values) * 1000:.0f} ms, max {max(values) * 1000:.0f} ms"
        for phase, values in load.latencies.items()
        if values
    }
    recovery = {
        name: f"{load.first_success_after_restore[s.base_url]:.2f} s"
        for name, s in zip("AB", servers, strict=True)
    }
    print(
        f"\nPostgreSQL cut {CUT_SECONDS:.0f} s under load ({THREADS} threads, 2 instances): "
        f"{dict(load.outcomes)}; {len(keys)} keys, {retried_after_failure} failed at least "
        f"once and were retried with the same key, {len(failed)} still open after the load "
        f"and placed by the retry; {len(orders)} orders, {sum(charges.values())} charges, "
        f"stock {INITIAL_STOCK} - {sold[0]} = {remaining[0]}; first normal answer after the "
        f"restore: {recovery}; latency {latency}"
    )

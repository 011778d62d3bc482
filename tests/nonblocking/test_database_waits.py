"""A request that waits inside the database holds that request, not the instance; and the
request time cap ends such a wait: the statement is cancelled, the connection goes back
to the pool clean, nothing is half-written.

The wait is real: the test holds the order's row lock (PostgreSQL) or the database's write
lock (SQLite), so the server's cancelOrder waits in the database for as long as the test
keeps it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from app.security import codes
from tests.e2e.conftest import LiveServer
from tests.nonblocking.conftest import (
    CANCEL,
    ORDER,
    Client,
    Database,
    error_codes,
    log_in,
    order_code,
)

pytestmark = pytest.mark.e2e

HELD_SECONDS = 2.0
FAST = 0.1  # the bound for answers while another request waits


class Background:
    """A request sent from a thread, with its answer and how long it took."""

    def __init__(self, send: Callable[[], Any]) -> None:
        self.result: Any = None
        self.elapsed = 0.0

        def run() -> None:
            started = time.perf_counter()
            self.result = send()
            self.elapsed = time.perf_counter() - started

        self.thread = threading.Thread(target=run)
        self.thread.start()

    def join(self) -> None:
        self.thread.join(timeout=60)
        assert not self.thread.is_alive()


def test_a_request_waiting_in_the_database_does_not_hold_the_instance(
    database: Database, start_server: Callable[..., LiveServer]
) -> None:
    # given alice's and bob's open orders on one instance
    server = start_server()
    alice, bob = log_in(server, "alice@example.com"), log_in(server, "bob@example.com")
    alices, bobs = order_code(alice, "PLACED"), order_code(bob, "PLACED")
    bob.data(ORDER, code=bobs)  # warm: the connection and the document caches
    watcher = Client(server)
    # when alice's cancellation waits 2 s in the database for a lock
    with database.locked(alices):
        cancel = Background(lambda: alice.post(CANCEL, code=alices))
        time.sleep(0.2)
        assert cancel.thread.is_alive(), cancel.result.text
        # then the instance answers everyone else meanwhile, at once
        health = [watcher.healthz() for _ in range(5)]
        lookups = [bob.timed(ORDER, code=bobs) for _ in range(5)]
        time.sleep(max(0.0, HELD_SECONDS - 0.2 - sum(health) - sum(t for t, _ in lookups)))
    cancel.join()
    assert max(health) < FAST, health
    assert all(r.status_code == 200 and not r.json().get("errors") for _, r in lookups)
    assert max(t for t, _ in lookups) < FAST, [t for t, _ in lookups]
    # and the cancellation went through once the lock was free
    assert cancel.elapsed >= HELD_SECONDS - 0.3
    assert cancel.result.json()["data"]["cancelOrder"]["order"]["status"] == "CANCELLED"


def test_the_time_cap_ends_a_wait_in_the_database_and_the_connection_comes_back_clean(
    database: Database, start_server: Callable[..., LiveServer]
) -> None:
    # given an instance with a 1 s cap and a single pooled connection, serving requests
    # only (the background email sender would wait for SQLite's lock on that connection)
    server = start_server(
        background=False,
        REQUEST_TIMEOUT_SECONDS="1",
        PAYMENT_TIMEOUT_SECONDS="0.5",
        RECONCILE_AFTER_SECONDS="2",
        RESERVATION_TTL_SECONDS="2",
        DB_POOL_SIZE="1",
    )
    alice, bob = log_in(server, "alice@example.com"), log_in(server, "bob@example.com")
    alices, bobs = order_code(alice, "PLACED"), order_code(bob, "PLACED")
    stock = "SELECT sum(stock) FROM products"
    stock_before = database.scalar(stock)
    with database.locked(alices):
        # when alice's cancellation has to wait longer than the cap
        elapsed, answer = alice.timed(CANCEL, code=alices)
        # then it ends at the cap with SERVICE_UNAVAILABLE
        assert answer.status_code == 503, answer.text
        assert error_codes(answer) == ["SERVICE_UNAVAILABLE"]
        assert 0.9 <= elapsed < 2.5, elapsed
        if database.kind == "postgres":
            # the statement was cancelled on the server: nothing of ours waits for the lock
            # any more, and no connection of ours is left inside a transaction
            time.sleep(0.3)
            assert _our_backends(database, "wait_event_type = 'Lock'") == 0
            assert _our_backends(database, "state = 'idle in transaction'") == 0
        # and the instance's one connection is usable again at once (while the lock is held)
        lookup_time, lookup = bob.timed(ORDER, code=bobs)
        assert lookup.status_code == 200 and not lookup.json().get("errors"), lookup.text
        assert lookup_time < 0.5, lookup_time
    # then nothing of the interrupted cancellation was written
    status = "SELECT status FROM orders WHERE code = %s"
    assert database.scalar(status, codes.normalise(alices)) == "PLACED"
    assert database.scalar(stock) == stock_before
    # and once the lock is gone, the same request goes through, once
    assert alice.data(CANCEL, code=alices)["cancelOrder"]["order"]["status"] == "CANCELLED"
    assert database.scalar(status, codes.normalise(alices)) == "CANCELLED"


def _our_backends(database: Database, condition: str) -> int:
    return int(
        database.scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'orders-api' "
            f"AND datname = current_database() AND {condition}"
        )
    )

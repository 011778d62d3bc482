"""Slow clients against the real server in production mode, over real loopback TCP (issue 14,
finding 6): headers and bodies have read deadlines (app/serving.py), and a thousand slow
connections at once do not stop normal requests.

- With the documented defaults (`HTTP_HEADER_TIMEOUT_SECONDS=5`,
  `HTTP_BODY_TIMEOUT_SECONDS=10`): a request that declares `Content-Length: 100` and sends 2
  bytes (then a byte a second) is answered 408 and closed after ~10 s; headers sent a byte a
  second, and a connection that sends nothing, after ~5 s.
- 1,000 slow-body connections at once, then 1,000 slow-header ones (deadlines of 8 s on
  that server: opening a thousand connections takes this 2-core machine up to a few seconds
  under a full test run, and the normal requests need the time after that): while they are
  held, normal requests on fresh connections keep answering; every slow connection is cut
  at its deadline.
- A kept-alive connection idle for longer than the header deadline still serves its next
  request (a server of its own with 2 s deadlines, under uvicorn's 5 s keep-alive).

Figures: printed and written to test-output/slow_clients.txt.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from app.serving import raise_open_file_limit
from tests.security_stage.conftest import (
    Server,
    record,
    stage_server,
)

pytestmark = pytest.mark.e2e

SLOW = 1_000  # slow connections held at once
DEADLINE = 8.0  # the deadlines of the loaded server (seconds)
SHORT_DEADLINE = 2.0  # the kept-alive test's server: below uvicorn's 5 s keep-alive
SLACK = 3.0  # how much later than its deadline a slow connection may be cut
NORMAL = '{"query": "{ products(first: 5) { edges { node { sku name } } } }"}'
FIGURES: list[str] = []


@dataclass
class Cut:
    status: str  # the status line the server answered, or "" (closed without one)
    after: float  # seconds from the first byte sent to the connection's end
    closed: bool  # False: still open at the give-up time


def _host_port(server: Server) -> tuple[str, int]:
    url = httpx.URL(server.base_url)
    assert url.port is not None
    return url.host, url.port


async def _slow(
    server: Server,
    kind: str,
    give_up: float,
    opened: asyncio.Event,
    connected: list[float] | None = None,
) -> Cut:
    """One slow client: `body` sends its headers and 2 of 100 declared body bytes, `headers`
    half a header block, `idle` nothing; then a byte a second until the server closes."""
    host, port = _host_port(server)
    reader, writer = await asyncio.open_connection(host, port)
    started = time.monotonic()
    if kind == "body":
        writer.write(
            b"POST /graphql HTTP/1.1\r\nHost: stage\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"'
        )
    elif kind == "headers":
        writer.write(b"POST /graphql HTTP/1.1\r\nHost: stage\r\nX-Slow: ")
    await writer.drain()
    if connected is not None:
        connected.append(_since(started))

    async def trickle() -> None:
        await opened.wait()
        while kind != "idle":
            await asyncio.sleep(1.0)
            writer.write(b"a")

    dripping = asyncio.create_task(trickle())
    try:
        answer = await asyncio.wait_for(reader.read(), timeout=give_up)
        return Cut(answer.split(b"\r\n", 1)[0].decode(errors="replace"), _since(started), True)
    except TimeoutError:
        return Cut("", _since(started), False)
    except ConnectionError:
        return Cut("", _since(started), True)
    finally:
        dripping.cancel()
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()  # the descriptor is free before the next case starts


def _since(started: float) -> float:
    return time.monotonic() - started


def _normal_request(server: Server) -> tuple[float, int]:
    """One ordinary request on a fresh connection: (seconds, status; 0 for a failure)."""
    started = time.monotonic()
    try:
        response = httpx.post(
            server.graphql_url,
            content=NORMAL,
            headers={"content-type": "application/json"},
            timeout=30.0,
        )
        status = response.status_code if response.json().get("data") else -1
    except httpx.HTTPError:
        status = 0
    return time.monotonic() - started, status


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


# -- the documented defaults ------------------------------------------------------------------


def test_the_default_deadlines_cut_slow_bodies_headers_and_idle_connections(
    prod_server: Server,
) -> None:
    # prod_server runs with the defaults: headers 5 s, body 10 s
    async def run() -> dict[str, Cut]:
        opened = asyncio.Event()
        opened.set()
        kinds = ("body", "headers", "idle")
        cuts = await asyncio.gather(*(_slow(prod_server, kind, 20.0, opened) for kind in kinds))
        return dict(zip(kinds, cuts, strict=True))

    cuts = asyncio.run(run())
    assert cuts["body"].closed and cuts["body"].status.startswith("HTTP/1.1 408"), cuts
    assert 9.5 <= cuts["body"].after <= 10 + SLACK, cuts
    for kind in ("headers", "idle"):
        assert cuts[kind].closed and cuts[kind].status.startswith("HTTP/1.1 408"), cuts
        assert 4.5 <= cuts[kind].after <= 5 + SLACK, cuts
    FIGURES.append(
        "defaults: slow body cut after {:.1f} s (HTTP_BODY_TIMEOUT_SECONDS=10), slow headers "
        "after {:.1f} s, idle connection after {:.1f} s (HTTP_HEADER_TIMEOUT_SECONDS=5)".format(
            cuts["body"].after, cuts["headers"].after, cuts["idle"].after
        )
    )


# -- a thousand at once -----------------------------------------------------------------------


def _server_with_deadlines(
    tmp_path_factory: pytest.TempPathFactory, deadline: float
) -> Iterator[Server]:
    with stage_server(
        tmp_path_factory,
        "slow-clients",
        HTTP_HEADER_TIMEOUT_SECONDS=str(deadline),
        HTTP_BODY_TIMEOUT_SECONDS=str(deadline),
        LOG_LEVEL="WARNING",  # 2,000 access lines would measure the logger
    ) as server:
        yield server


@pytest.fixture(scope="module")
def loaded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # every connection is a descriptor: this process holds SLOW of them, plus the normal
    # requests' (the server raises its own limit: app/serving.py)
    limit = raise_open_file_limit()
    assert limit >= SLOW + 200, f"RLIMIT_NOFILE allows {limit} files; the test needs {SLOW + 200}"
    yield from _server_with_deadlines(tmp_path_factory, DEADLINE)


@pytest.fixture(scope="module")
def short_deadline_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _server_with_deadlines(tmp_path_factory, SHORT_DEADLINE)


@pytest.mark.parametrize("kind", ["body", "headers"])
def test_a_thousand_slow_connections_do_not_stop_normal_requests(
    loaded_server: Server, kind: str
) -> None:
    baseline = [_normal_request(loaded_server) for _ in range(30)]
    assert all(status == 200 for _, status in baseline), baseline

    async def run() -> tuple[list[Cut], list[tuple[float, int]], float]:
        opened = asyncio.Event()
        connected: list[float] = []
        give_up = DEADLINE + SLACK + 5.0
        started = time.monotonic()
        clients = [
            asyncio.create_task(_slow(loaded_server, kind, give_up, opened, connected))
            for _ in range(SLOW)
        ]
        while len(connected) < SLOW and time.monotonic() - started < DEADLINE / 2:
            await asyncio.sleep(0.01)
        if len(connected) < SLOW:
            failed = [repr(c.exception()) for c in clients if c.done() and c.exception()]
            for client in clients:
                client.cancel()
            await asyncio.gather(*clients, return_exceptions=True)
            raise AssertionError(
                f"only {len(connected)} of {SLOW} connected within {DEADLINE / 2:.1f} s; "
                f"{len(failed)} failed, first: {failed[:3]}"
            )
        all_in = time.monotonic() - started
        opened.set()
        normal: list[tuple[float, int]] = []
        # normal requests, one after another on fresh connections, while every slow one
        # is held (in a thread: this loop keeps the slow ones dripping)
        while time.monotonic() - started < DEADLINE - 1.0:
            normal.append(await asyncio.to_thread(_normal_request, loaded_server))
        cuts = await asyncio.gather(*clients)
        return cuts, normal, all_in

    # This process has the whole suite's heap by now: a full collection while a thousand
    # connections open took seconds there (a CI run saw none of them in within 1.5 s).
    gc.collect()
    gc.disable()
    try:
        cuts, normal, all_in = asyncio.run(run())
    finally:
        gc.enable()

    # every slow connection was cut at its deadline with a 408
    still_open = [cut for cut in cuts if not cut.closed]
    assert not still_open, f"{len(still_open)} of {SLOW} slow connections were never cut"
    not_408 = [cut for cut in cuts if not cut.status.startswith("HTTP/1.1 408")]
    assert not not_408, f"{len(not_408)} cut without a 408: {not_408[:5]}"
    afters = [cut.after for cut in cuts]
    assert min(afters) >= DEADLINE - 0.5, min(afters)
    assert max(afters) <= DEADLINE + SLACK, max(afters)

    # and normal requests kept answering meanwhile
    failed = [result for result in normal if result[1] != 200]
    assert not failed, failed
    assert len(normal) >= 5, normal
    held = [seconds for seconds, _ in normal]
    calm = [seconds for seconds, _ in baseline]
    assert statistics.median(held) < 1.0, held
    FIGURES.append(
        f"{SLOW} slow-{kind} connections at once (all connected within {all_in:.2f} s, "
        f"deadline {DEADLINE:.0f} s): all cut with 408 "
        f"after {min(afters):.1f}-{max(afters):.1f} s; meanwhile {len(normal)} normal requests "
        f"on fresh connections all answered 200, median {statistics.median(held) * 1000:.0f} ms, "
        f"max {max(held) * 1000:.0f} ms (without slow clients: median "
        f"{statistics.median(calm) * 1000:.0f} ms, p95 {_percentile(calm, 0.95) * 1000:.0f} ms)"
    )
    after_errors = loaded_server.stderr_tail(100_000)
    assert "Exception in ASGI application" not in after_errors, after_errors[-3000:]


def test_a_kept_alive_connection_idle_longer_than_the_deadline_still_serves(
    short_deadline_server: Server,
) -> None:
    # the header deadline runs from a request's first byte, not across the idle time of a
    # kept-alive connection (uvicorn's own keep-alive timeout, 5 s, closes that)
    async def run() -> list[bytes]:
        host, port = _host_port(short_deadline_server)
        reader, writer = await asyncio.open_connection(host, port)
        request = (
            "POST /graphql HTTP/1.1\r\nHost: stage\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(NORMAL)}\r\n\r\n{NORMAL}"
        ).encode()
        heads = []
        for pause in (0.0, SHORT_DEADLINE + 1.0):
            await asyncio.sleep(pause)
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            heads.append(head.split(b"\r\n", 1)[0])
        writer.close()
        return heads

    assert asyncio.run(run()) == [b"HTTP/1.1 200 OK", b"HTTP/1.1 200 OK"]


@pytest.mark.parametrize("kind", ["body", "headers"])
def test_a_timed_out_connection_lingers_so_bytes_crossing_the_408_cause_no_reset(
    short_deadline_server: Server, kind: str
) -> None:
    # A slow client's next byte can cross its 408 on the wire. A socket closed at once
    # answers such a byte with a reset (or sends one at close, when the byte arrived
    # unread), and a reset makes the client's kernel drop the 408 it has not read yet: a
    # CI run saw 401 of 1,000 slow clients get a bare reset. So the server half-closes
    # after the 408 and reads what still comes (app/serving.py `_linger`): here, bytes
    # sent after the 408 arrived are taken in quietly instead of being refused by a reset.
    async def run() -> tuple[bytes, list[str]]:
        host, port = _host_port(short_deadline_server)
        reader, writer = await asyncio.open_connection(host, port)
        if kind == "body":
            writer.write(
                b"POST /graphql HTTP/1.1\r\nHost: stage\r\nContent-Type: application/json\r\n"
                b'Content-Length: 100\r\n\r\n{"'
            )
        else:
            writer.write(b"POST /graphql HTTP/1.1\r\nHost: stage\r\nX-Slow: ")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), SHORT_DEADLINE + 5)  # the 408, then EOF
        refused: list[str] = []
        for _ in range(3):  # well within LINGER_SECONDS
            try:
                writer.write(b"late bytes")
                await writer.drain()
                await asyncio.sleep(0.2)
            except OSError as exc:  # ConnectionResetError, BrokenPipeError
                refused.append(type(exc).__name__)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return answer.split(b"\r\n", 1)[0], refused

    status, refused = asyncio.run(run())
    assert status == b"HTTP/1.1 408 Request Timeout"
    assert refused == []


def test_record_figures() -> None:
    record("slow_clients.txt", FIGURES or ["(no figures: the tests above did not run)"])

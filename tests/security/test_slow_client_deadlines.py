"""app/serving.py's deadlines kept lazily (one timer per connection, re-armed for what is
left): each phase still ends at its own deadline, over a real socket on loopback with
uvicorn's protocol in this process. The defaults and a thousand slow clients against the
real server are tests/security_stage/test_slow_clients.py."""

from __future__ import annotations

import asyncio
import time

from starlette.types import Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.server import ServerState

from app.serving import slow_client_protocol

REQUEST = (
    b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
)


async def _ok(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):  # the whole body first
        pass
    headers = [(b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


async def _serve(header: float, body: float) -> tuple[asyncio.Server, int]:
    config = Config(_ok, http=slow_client_protocol(header, body), lifespan="off", log_level="error")
    config.load()
    state = ServerState()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: config.http_protocol_class(  # type: ignore[call-arg]
            config=config, server_state=state, app_state={}, _loop=loop
        ),
        "127.0.0.1",
        0,
    )
    return server, server.sockets[0].getsockname()[1]


async def _cut_after_sending(
    server: asyncio.Server, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, slow: bytes
) -> tuple[bytes, float]:
    """Send the start of a request that never finishes: the status line answered, and the
    seconds until the connection ended."""
    started = time.monotonic()
    writer.write(slow)
    answer = await asyncio.wait_for(reader.read(), 15)  # the 408, then EOF
    writer.close()
    server.close()
    return answer.split(b"\r\n", 1)[0], time.monotonic() - started


def test_the_next_requests_header_deadline_is_its_own_after_a_longer_body_phase() -> None:
    # The first request's body comes 1.3 s after its headers: the timer armed for the
    # headers (1 s) fires in the body phase and re-arms for the body's deadline (4 s after
    # the headers). The next request's headers, sent at once and never finished, are cut
    # 1 s later, not when that re-armed timer is due (2.7 s later).
    async def run() -> tuple[bytes, float]:
        server, port = await _serve(header=1.0, body=4.0)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head, body = REQUEST.split(b"\r\n\r\n")
        writer.write(head + b"\r\n\r\n")
        await asyncio.sleep(1.3)
        writer.write(body)
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert answer.startswith(b"HTTP/1.1 200"), answer
        await reader.readexactly(2)
        slow = b"POST /x HTTP/1.1\r\nHost: t\r\nX-Slow: "  # and no more
        return await _cut_after_sending(server, reader, writer, slow)

    status, took = asyncio.run(run())
    assert status == b"HTTP/1.1 408 Request Timeout"
    assert 0.9 <= took < 2.2, took


def test_a_body_deadline_longer_than_the_headers_runs_in_full() -> None:
    # the timer armed for the headers (1 s) fires first and re-arms for the body's rest
    async def run() -> tuple[bytes, float]:
        server, port = await _serve(header=1.0, body=2.5)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        slow = b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n{"
        return await _cut_after_sending(server, reader, writer, slow)

    status, took = asyncio.run(run())
    assert status == b"HTTP/1.1 408 Request Timeout"
    assert 2.4 <= took < 5.0, took


def test_a_kept_alive_connection_waits_idle_past_the_deadlines_and_serves_again() -> None:
    async def run() -> list[bytes]:
        server, port = await _serve(header=0.5, body=0.5)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        heads = []
        for pause in (0.0, 1.5):  # idle three deadlines long (uvicorn's keep-alive is 5 s)
            await asyncio.sleep(pause)
            writer.write(REQUEST)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            await reader.readexactly(2)
            heads.append(head.split(b"\r\n", 1)[0])
        writer.close()
        server.close()
        return heads

    assert asyncio.run(run()) == [b"HTTP/1.1 200 OK", b"HTTP/1.1 200 OK"]

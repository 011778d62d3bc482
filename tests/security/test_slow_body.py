"""GuardMiddleware's own body deadline (app/http.py), for a deployment that serves the app
without app/serving.py's protocol: a /graphql body that does not arrive within
`body_timeout_seconds` is answered 408 (a GraphQL error document) and the app never runs.
The real server's deadlines are tests/security_stage/test_slow_clients.py."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from app.http import GuardMiddleware


async def _never_called(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("the app ran on a body that never arrived")


def _scope() -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "path": "/graphql",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"100")],
        "query_string": b"",
    }


def test_a_body_that_stops_arriving_is_answered_408_at_the_deadline() -> None:
    sent: list[Message] = []
    chunks = [{"type": "http.request", "body": b'{"', "more_body": True}]

    async def receive() -> Message:
        if chunks:
            return chunks.pop()
        await asyncio.sleep(3600)  # the other 98 bytes never come
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    guard = GuardMiddleware(_never_called, body_timeout_seconds=0.3)
    started = time.monotonic()
    asyncio.run(asyncio.wait_for(guard(_scope(), receive, send), 5.0))  # broken: TimeoutError
    took = time.monotonic() - started

    assert 0.3 <= took < 2.0, took
    assert sent[0]["status"] == 408
    assert (b"connection", b"close") in sent[0]["headers"]
    body = json.loads(sent[1]["body"])
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "in time" in body["errors"][0]["message"]


def test_a_body_that_arrives_in_time_reaches_the_app() -> None:
    ran: list[bool] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        ran.append(True)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    chunks = [
        {"type": "http.request", "body": b'__typename }"}', "more_body": False},
        {"type": "http.request", "body": b'{"query": "{ ', "more_body": True},
    ]

    async def receive() -> Message:
        await asyncio.sleep(0.05)
        return chunks.pop()

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(GuardMiddleware(app, body_timeout_seconds=2.0)(_scope(), receive, send))
    assert ran and sent[0]["status"] == 200


def _answer_after(seconds: float) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await asyncio.sleep(seconds)  # the operation's own time (the timer is under test)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


def _run_guard(guard: GuardMiddleware) -> tuple[list[Message], float]:
    chunks = [{"type": "http.request", "body": b'{"query": "{ __typename }"}', "more_body": False}]

    async def receive() -> Message:
        if chunks:
            return chunks.pop()
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    started = time.monotonic()
    asyncio.run(asyncio.wait_for(guard(_scope(), receive, send), 10.0))
    return sent, time.monotonic() - started


def test_once_the_body_is_in_the_time_cap_replaces_the_body_deadline() -> None:
    # one timer serves both deadlines: the body's (0.2 s) must not cut the operation
    guard = GuardMiddleware(_answer_after(0.5), body_timeout_seconds=0.2, timeout_seconds=3.0)
    sent, _ = _run_guard(guard)
    assert sent[0]["status"] == 200


def test_the_time_cap_ends_an_operation_that_runs_longer() -> None:
    guard = GuardMiddleware(_answer_after(30), body_timeout_seconds=5.0, timeout_seconds=0.3)
    sent, took = _run_guard(guard)
    assert sent[0]["status"] == 503
    assert json.loads(sent[1]["body"])["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
    assert 0.3 <= took < 3.0, took  # the cap, not the body deadline (5 s)

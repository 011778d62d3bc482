"""app/cors.py answers with exactly the headers starlette's CORSMiddleware gives, with and
without `Origin`, with and without a `Vary` of the app's own, allowed origin or not, and
for preflights; and it adds `Vary: Origin` to an answer to a request without `Origin`."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Message, Receive, Scope, Send

from app.cors import CorsMiddleware

ALLOWED = "https://shop.example"
OPTIONS: dict[str, Any] = {
    "allow_origins": [ALLOWED],
    "allow_methods": ["GET", "POST", "OPTIONS"],
    "allow_headers": ["Authorization", "Content-Type"],
    "expose_headers": ["Retry-After", "X-Request-Id"],
    "allow_credentials": False,
    "max_age": 600,
}


def _app(headers: list[tuple[bytes, bytes]]) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": list(headers)})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


def _answer(middleware: Any, request_headers: list[tuple[bytes, bytes]], method: str) -> list[Any]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": "/graphql", "headers": request_headers}
    asyncio.run(middleware(scope, receive, send))
    return [(message["type"], message.get("status"), message.get("headers")) for message in sent]


RESPONSES = {
    "plain": [(b"content-type", b"application/json"), (b"x-request-id", b"abc")],
    "with its own vary": [(b"content-type", b"application/json"), (b"vary", b"Accept")],
    "with a Vary spelled otherwise": [(b"Vary", b"Accept")],
}
REQUESTS = {
    "no origin": ([(b"content-type", b"application/json")], "POST"),
    "allowed origin": ([(b"origin", ALLOWED.encode())], "POST"),
    "other origin": ([(b"origin", b"https://evil.example")], "POST"),
    "preflight": (
        [(b"origin", ALLOWED.encode()), (b"access-control-request-method", b"POST")],
        "OPTIONS",
    ),
}


@pytest.mark.parametrize("response", RESPONSES)
@pytest.mark.parametrize("request_kind", REQUESTS)
def test_the_same_headers_as_starlettes_cors(response: str, request_kind: str) -> None:
    request_headers, method = REQUESTS[request_kind]
    ours = _answer(CorsMiddleware(_app(RESPONSES[response]), **OPTIONS), request_headers, method)
    theirs = _answer(CORSMiddleware(_app(RESPONSES[response]), **OPTIONS), request_headers, method)
    assert ours == theirs


def test_an_answer_to_a_request_without_origin_varies_on_origin() -> None:
    answer = _answer(CorsMiddleware(_app(RESPONSES["plain"]), **OPTIONS), [], "POST")
    start_headers = answer[0][2]
    assert (b"vary", b"Origin") in start_headers
    assert not any(name == b"access-control-allow-origin" for name, _ in start_headers)

"""HTTP-level guards in front of GraphQL, as plain ASGI middleware (cheap on the hot path):
a request id on every response, a body-size cap, and JSON-only POSTs to /graphql (no
queries over GET, no form or multipart posts: those are CSRF vectors) whose body is a JSON
object or array.

The media type of every /graphql answer is negotiated here, once, from `Accept` (GraphQL
over HTTP, the GraphQL Foundation's draft): `application/graphql-response+json` when the
client asks for it first, `application/json` for legacy clients, `*/*` or no `Accept`, and
406 when `Accept` names neither. Refusals made here (405, 406, 413, 415, a body that is not
JSON, the time cap's 503) are GraphQL responses in that media type, so that a client reads
their `extensions.code` whatever the status.

Everything a client sends is vetted here before either GraphQL path (compiled plans,
strawberry's executor) sees it (app/wire.py): bodies and WebSocket frames nested too deeply
are refused (a frame closes the socket with 4400 and a reason), and a request with text that
cannot be encoded (a lone surrogate, NUL) in any string answers one `BAD_USER_INPUT` naming
the variable or argument — over HTTP, and over WebSocket as the operation's `error`. A body
that does not arrive within `HTTP_BODY_TIMEOUT_SECONDS` is answered 408 (the server's
protocol, app/serving.py, also cuts slow headers and bodies before any app code runs)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import MutableMapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.metrics import request_refused
from app.request_ids import new_request_id
from app.wire import WireError, hostile_text
from app.wire import loads as wire_loads
from app.ws_guard import WebSocketGuard

MAX_BODY_BYTES = 64 * 1024
_PARSED_BODY = "graphql_body"
_MEDIA_TYPE = "graphql_media_type"

JSON = "application/json"
GRAPHQL_RESPONSE = "application/graphql-response+json"
_WILDCARDS = frozenset({"*/*", "application/*"})


def negotiate(accept: str | None) -> str | None:
    """The media type to answer a GraphQL request in, or None when `accept` names none that
    we speak (the spec's RECOMMENDED answer is then 406).

    The highest `q` wins; at equal `q` a type named outright beats a wildcard, then the one
    listed first. No `Accept`, `*/*` and `application/*` mean application/json, as the spec
    asks of servers for the legacy clients that do not know the newer type."""
    if accept is None or not accept.strip():
        return JSON
    refused: set[str] = set()
    offers: list[tuple[float, int, int, str]] = []
    for position, part in enumerate(accept.split(",")):
        media, *params = (field.strip().lower() for field in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
        if media in (JSON, GRAPHQL_RESPONSE):
            if q <= 0:
                refused.add(media)
            else:
                offers.append((q, 1, -position, media))
        elif media in _WILDCARDS and q > 0:
            offers.append((q, 0, -position, "*"))
    for *_, media in sorted(offers, reverse=True):
        if media != "*":
            return media
        for default in (JSON, GRAPHQL_RESPONSE):
            if default not in refused:
                return default
    return None


def media_type_of(scope: MutableMapping[str, Any]) -> str:
    """The media type GuardMiddleware negotiated for this /graphql request."""
    return str(scope.get("state", {}).get(_MEDIA_TYPE, JSON))


def error_document(code: str, message: str, **extensions: Any) -> dict[str, Any]:
    """A GraphQL response of one request error: `errors` only, never `data`."""
    return {"errors": [{"message": message, "extensions": {"code": code, **extensions}}]}


async def _reply(
    send: Send,
    status: int,
    code: str,
    message: str,
    request_id: str,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
    media_type: str = JSON,
) -> None:
    body = json.dumps(error_document(code, message)).encode()
    headers = [
        (b"content-type", media_type.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode()),
        *(extra_headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class GuardMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        graphql_path: str = "/graphql",
        ide_enabled: bool = True,
        timeout_seconds: float = 15.0,
        body_timeout_seconds: float = 10.0,
    ) -> None:
        self.app = app
        self.graphql_path = graphql_path
        self.ide_enabled = ide_enabled
        self.timeout_seconds = timeout_seconds
        self.body_timeout_seconds = body_timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await WebSocketGuard(send).run(self.app, scope, receive)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        media_type = JSON
        if scope["path"] == self.graphql_path:
            request_headers = _headers(scope)
            negotiated = negotiate(request_headers.get("accept"))
            media_type = negotiated or JSON
            scope["state"][_MEDIA_TYPE] = media_type
            refusal = self._refusal(scope, request_headers, acceptable=negotiated is not None)
            if refusal is not None:
                status, code, message, headers = refusal
                request_refused()
                await _reply(send, status, code, message, request_id, headers, media_type)
                return

        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message.setdefault("headers", [])
                if message.get("status") == 429:
                    message["headers"] = [*message["headers"], *_ratelimit_headers(message)]
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        received = 0

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > MAX_BODY_BYTES:
                    raise BodyTooLarge()
            return message

        try:
            if scope["path"] == self.graphql_path and scope["method"] == "POST":
                # Strawberry answers 500 (an unhandled AttributeError, UnicodeDecodeError or
                # RecursionError) to a body that is JSON `null`/`5`/`"x"`, not UTF-8, or
                # nested too deeply; found by tests/security_stage. So the body (at most
                # MAX_BODY_BYTES) is read and checked here, then replayed to the app. One
                # `asyncio.timeout` serves both deadlines, the body's and then (moved once
                # the body is in) the execution time cap: one timer a request, not two.
                running = False
                try:
                    async with asyncio.timeout(self.body_timeout_seconds) as deadline:
                        body = await _read_body(capped_receive)
                        if body is None:
                            return  # the client went away
                        document, problem = _json_body(body)
                        # JSON spells a surrogate or NUL only as a \u escape (raw ones are
                        # not UTF-8, or not JSON): a body without one has nothing to look for
                        hostile = None
                        if problem is None and b"\\u" in body:
                            hostile = _hostile(document)
                        if problem is None and hostile is None:
                            scope["state"][_PARSED_BODY] = document  # parsed once
                            # The time cap: an operation that has not answered by then gets
                            # a clean SERVICE_UNAVAILABLE (the database also has a statement
                            # timeout). asyncio.timeout rather than wait_for: no extra task.
                            running = True
                            deadline.reschedule(
                                asyncio.get_running_loop().time() + self.timeout_seconds
                            )
                            await self.app(scope, with_body(body, capped_receive), send_with_id)
                            return
                        deadline.reschedule(None)  # a refusal is not raced against it
                except TimeoutError:
                    if not running:
                        request_refused()
                        await _reply(
                            send,
                            408,
                            "BAD_USER_INPUT",
                            "The request body did not arrive in time.",
                            request_id,
                            [(b"connection", b"close")],
                            media_type,
                        )
                    elif not started:
                        await _reply(
                            send,
                            503,
                            "SERVICE_UNAVAILABLE",
                            "The request took too long and was stopped.",
                            request_id,
                            None,
                            media_type,
                        )
                    return
                if problem is not None:
                    request_refused()
                    await _reply(send, 400, "BAD_USER_INPUT", problem, request_id, None, media_type)
                    return
                assert hostile is not None
                request_refused("BAD_USER_INPUT")
                await _reply_errors(send, [hostile], request_id, media_type)
                return
            await self.app(scope, capped_receive, send_with_id)
        except BodyTooLarge:
            if scope["path"] == self.graphql_path:
                request_refused()
            await _reply(
                send, 413, "BAD_USER_INPUT", "Request body too large.", request_id, None, media_type
            )

    def _refusal(
        self, scope: Scope, headers: dict[str, str], *, acceptable: bool
    ) -> tuple[int, str, str, list[tuple[bytes, bytes]]] | None:
        method = scope["method"]
        if method == "GET":
            accepts_html = "text/html" in headers.get("accept", "")
            if self.ide_enabled and accepts_html and not scope.get("query_string"):
                return None  # the GraphiQL page itself
            return (
                405,
                "BAD_USER_INPUT",
                "Send GraphQL operations as POST application/json.",
                [(b"allow", b"POST")],
            )
        if method == "OPTIONS":
            return None
        if method != "POST":
            return (405, "BAD_USER_INPUT", "Method not allowed.", [(b"allow", b"POST")])
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return (415, "BAD_USER_INPUT", "Content-Type must be application/json.", [])
        if not acceptable:
            return (
                406,
                "BAD_USER_INPUT",
                f"Accept must allow {GRAPHQL_RESPONSE} or {JSON}.",
                [(b"vary", b"Accept")],
            )
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return (413, "BAD_USER_INPUT", "Request body too large.", [])
        return None


def _ratelimit_headers(message: Message) -> list[tuple[bytes, bytes]]:
    """IETF RateLimit fields on a 429: nothing left, and when it comes back."""
    retry = next((v for k, v in message["headers"] if k.lower() == b"retry-after"), b"1")
    return [(b"ratelimit", b"remaining=0, reset=" + retry)]


class BodyTooLarge(Exception):
    pass


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body (receive enforces the cap), or None if the client left."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def with_body(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the body already read, then waits for a disconnect."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _json_body(body: bytes) -> tuple[Any, str | None]:
    """The parsed body and None, or why `body` is not a GraphQL request document (a JSON
    object, or an array that the GraphQL layer refuses as a batch)."""
    try:
        document = wire_loads(body)
    except WireError as error:
        return None, str(error)
    if not isinstance(document, dict | list):
        return None, "The request body must be a JSON object."
    return document, None


def _hostile(document: Any) -> dict[str, Any] | None:
    """The BAD_USER_INPUT error of a request (or of a batch's first bad request) holding
    text that cannot be encoded, formatted; None when it holds none."""
    for request in document if isinstance(document, list) else [document]:
        error = hostile_text(request)
        if error is not None:
            return dict(error.formatted)
    return None


async def _reply_errors(
    send: Send, errors: list[dict[str, Any]], request_id: str, media_type: str
) -> None:
    """A request refused before execution, answered as graphql-core's own refusals are
    (app/graphql/over_http.py): 400 without `data` in graphql-response+json, 200 with
    `"data": null` in application/json."""
    document: dict[str, Any] = {"errors": errors}
    status = 400
    if media_type != GRAPHQL_RESPONSE:
        status, document = 200, {"data": None, **document}
    body = json.dumps(document).encode()
    headers = [
        (b"content-type", media_type.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def parsed_body_of(scope: Scope) -> Any:
    """The JSON body GuardMiddleware parsed (None if it did not)."""
    return scope.get("state", {}).get(_PARSED_BODY)


_GUARDED = frozenset({b"accept", b"content-type", b"content-length"})


def _headers(scope: Scope) -> dict[str, str]:
    """The request headers the guard reads (ASGI names are lower-case; the last of a name
    wins), decoded: only these, not every header a browser sends."""
    return {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in scope["headers"]
        if name in _GUARDED
    }


def request_id_of(scope: MutableMapping[str, Any]) -> str:
    return str(scope.get("state", {}).get("request_id", "-"))


class DatabaseScope:
    """Every HTTP request runs inside `Database.scope()`: one pooled connection, taken on
    its first statement and given back when the answer is sent (or the time cap ends it)."""

    def __init__(self, app: ASGIApp, db: Any) -> None:
        self.app = app
        self.db = db

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        opened = self.db.open_scope()
        try:
            await self.app(scope, receive, send)
        finally:
            await self.db.close_scope(opened)

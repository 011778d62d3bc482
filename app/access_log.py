"""One JSON access-log line per HTTP request and per GraphQL operation over WebSocket, as
plain ASGI middleware (it runs on every request: a closure and a clock read, no request or
response objects, nothing read that the guard has not parsed already).

HTTP: `{"logger": "app.access", "message": "http", "method": "POST", "path": "/graphql",
"status": 200, "duration_ms": 3.1, "operation": "Order", "request_id": "…", "user": "u-…"}`.
WebSocket (graphql-transport-ws): one `"message": "ws"` line per operation when it ends
(`status`: `complete`, `error` (with `error`: the first error code), `cancelled` by the
client, or `closed` with the socket), and one for the connection when it closes (`status`:
the close code).

`operation` is the GraphQL operation name when the request says it (`operationName`, or a
named first operation in the document); `user` is set by the GraphQL context once it has
authenticated the caller (`note_user`), and masked by the log formatter like every other
`user` field (app/logging_setup.py)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import MutableMapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.request_ids import new_request_id
from app.wire import WireError, loads

log = logging.getLogger("app.access")

_USER = "access_user"
_REQUEST_ID = "request_id"  # set by GuardMiddleware for HTTP, here for WebSockets
_PARSED_BODY = "graphql_body"  # the JSON body GuardMiddleware parsed (app/http.py)
_NAMED = re.compile(r"(?:\s|,|#[^\n]*\n?)*(?:query|mutation|subscription)\s*([_A-Za-z]\w{0,99})")
_NEXT = '"type": "next"'


def note_user(scope: MutableMapping[str, Any] | None, public_id: str) -> None:
    """Called by the GraphQL context once the caller is authenticated."""
    if scope is not None:
        scope.setdefault("state", {})[_USER] = public_id


def operation_name(body: Any) -> str | None:
    """The operation's name, if the request gives it: `operationName`, or the name of a
    document that starts with a named operation. Never more than 100 characters."""
    if not isinstance(body, dict):
        return None
    name = body.get("operationName")
    if isinstance(name, str) and name:
        return name[:100]
    query = body.get("query")
    if isinstance(query, str):
        match = _NAMED.match(query)
        if match:
            return match.group(1)
    return None


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and log.isEnabledFor(logging.INFO):
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket" and log.isEnabledFor(logging.INFO):
            await _WebSocketLog(scope).run(self.app, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status: int | None = None

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except BaseException:
            if status is None:
                status = 500  # what the server answers for an exception
            raise
        finally:
            state = scope.get("state") or {}
            log.info(
                "http",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "operation": operation_name(state.get(_PARSED_BODY)),
                    "request_id": state.get(_REQUEST_ID),
                    "user": state.get(_USER),
                },
            )


class _WebSocketLog:
    """Follows one graphql-transport-ws connection: operations start with the client's
    `subscribe` and end with the server's `complete` or `error`, the client's `complete`,
    or the socket closing."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.state = scope.setdefault("state", {})
        self.state.setdefault(_REQUEST_ID, new_request_id())
        self.started = time.perf_counter()
        self.operations: dict[str, tuple[float, str | None, str | None]] = {}
        self.close_code: int | None = None

    async def run(self, app: ASGIApp, receive: Receive, send: Send) -> None:
        async def watch_receive() -> Message:
            message = await receive()
            if message["type"] == "websocket.receive":
                self._client(message.get("text") or message.get("bytes"))
            elif message["type"] == "websocket.disconnect":
                self.close_code = message.get("code", 1005)
            return message

        async def watch_send(message: Message) -> None:
            if message["type"] == "websocket.send":
                self._server(message.get("text") or message.get("bytes"))
            elif message["type"] == "websocket.close":
                self.close_code = message.get("code", 1000)
            await send(message)

        try:
            await app(self.scope, watch_receive, watch_send)
        finally:
            for operation_id in list(self.operations):
                self._end(operation_id, "closed")
            self._line(None, self.close_code, self.started, None)

    def _client(self, frame: str | bytes | None) -> None:
        if not frame:
            return
        text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
        if '"subscribe"' not in text and '"complete"' not in text:
            return  # connection_init, ping, pong
        message = _json(text)
        operation_id = str(message.get("id", ""))[:64]
        if message.get("type") == "subscribe":
            name = operation_name(message.get("payload"))
            self.operations[operation_id] = (time.perf_counter(), name, None)
        elif message.get("type") == "complete" and operation_id in self.operations:
            self._end(operation_id, "cancelled")

    def _server(self, frame: str | bytes | None) -> None:
        if not frame:
            return
        text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
        if _NEXT in text[:200] and '"errors"' not in text:
            return  # the common case: data for an open operation, not parsed here
        message = _json(text)
        operation_id = str(message.get("id", ""))[:64]
        if operation_id not in self.operations:
            return
        kind = message.get("type")
        if kind == "next":
            errors = (message.get("payload") or {}).get("errors")
            self._error(operation_id, errors)
        elif kind == "error":
            self._error(operation_id, message.get("payload"))
            self._end(operation_id, "error")
        elif kind == "complete":
            self._end(operation_id, "complete")

    def _error(self, operation_id: str, errors: Any) -> None:
        started, name, error = self.operations[operation_id]
        if error is None and isinstance(errors, list) and errors:
            first = errors[0] if isinstance(errors[0], dict) else {}
            code = (first.get("extensions") or {}).get("code")
            self.operations[operation_id] = (started, name, str(code or "ERROR")[:40])

    def _end(self, operation_id: str, status: str) -> None:
        started, name, error = self.operations.pop(operation_id)
        self._line(name, status, started, error)

    def _line(self, name: str | None, status: object, started: float, error: str | None) -> None:
        extra: dict[str, object] = {
            "method": "WS",
            "path": self.scope["path"],
            "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            "operation": name,
            "request_id": self.state.get(_REQUEST_ID),
            "user": self.state.get(_USER),
        }
        if error is not None:
            extra["error"] = error
        log.info("ws", extra=extra)


def _json(frame: str | bytes) -> dict[str, Any]:
    try:
        message = loads(frame)  # bounded nesting: a frame of 20,000 `[` is refused at once
    except WireError:
        return {}
    return message if isinstance(message, dict) else {}

"""The WebSocket half of GuardMiddleware (app/http.py): every text frame vetted before the
GraphQL handler reads it (app/wire.py)."""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.wire import hostile_text, too_deep


class WebSocketGuard:
    """Vets each text frame before the GraphQL handler reads it: a frame nested deeper than
    app/wire.py allows closes the socket with 4400 and a reason; a subscribe (`start` in the
    legacy protocol) whose payload holds text that cannot be encoded is answered with that
    operation's `error` (BAD_USER_INPUT naming the variable or argument) and never reaches
    the handler. Anything after our close is dropped."""

    CLOSE_CODE = 4400

    def __init__(self, send: Send) -> None:
        self._send = send
        self.closed = False
        self.acknowledged = False

    async def send(self, message: Message) -> None:
        if self.closed:
            return  # we closed the socket: the handler's late sends go nowhere
        kind = message["type"]
        if kind == "websocket.close":
            self.closed = True
        elif kind == "websocket.send" and not self.acknowledged:
            self.acknowledged = '"connection_ack"' in (message.get("text") or "")
        await self._send(message)

    async def run(self, app: ASGIApp, scope: Scope, receive: Receive) -> None:
        async def vetted_receive() -> Message:
            while True:
                message = await receive()
                if message["type"] != "websocket.receive" or self.closed:
                    return message
                text = message.get("text")
                if text is None:
                    return message  # binary frames: the handler refuses them (4400)
                if too_deep(text):
                    await self.send(
                        {
                            "type": "websocket.close",
                            "code": self.CLOSE_CODE,
                            "reason": "Message nested too deeply.",
                        }
                    )
                    return {"type": "websocket.disconnect", "code": self.CLOSE_CODE}
                if not await self._answered(text):
                    return message

        await app(scope, vetted_receive, self.send)

    async def _answered(self, text: str) -> bool:
        """True when the frame was an operation with hostile text, answered here."""
        if '"subscribe"' not in text and '"start"' not in text:
            return False  # connection_init, ping, pong, complete: nothing to vet
        if "\\u" not in text and text.isascii():
            return False  # a surrogate or NUL comes only as a \u escape (see __call__)
        try:
            frame = json.loads(text)
        except ValueError:
            return False  # the handler closes the socket for it
        if not isinstance(frame, dict) or frame.get("type") not in ("subscribe", "start"):
            return False
        error = hostile_text(frame.get("payload"))
        if error is None:
            return False
        operation_id = frame.get("id")
        if not isinstance(operation_id, str):
            return False  # a malformed frame: the handler closes the socket for it
        legacy = frame["type"] == "start"
        if not legacy and not self.acknowledged:
            return False  # before connection_ack the handler closes with 4401
        payload: Any = dict(error.formatted) if legacy else [dict(error.formatted)]
        await self.send(
            {
                "type": "websocket.send",
                "text": json.dumps({"id": operation_id, "type": "error", "payload": payload}),
            }
        )
        return True

"""CORS: starlette's CORSMiddleware, with a shorter way for a request without `Origin`.

A request without `Origin` is not a cross-origin browser request (a mobile app, a server,
curl, a same-origin GET): its answer only gains `Vary: Origin`, so that a cache does not
serve it to a browser whose request carries one. starlette adds that header through its
own send, which looks up `Origin` again and builds a MutableHeaders for every response; on
the small order lookup that was a few per cent of the request. Here the header is appended
to the response's raw headers directly, when the response has no `Vary` of its own (the
same headers starlette gives: tests/unit/test_cors.py); a response that has one, and every
request with an `Origin`, take starlette's own path.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Message, Receive, Scope, Send

_VARY_ORIGIN = (b"vary", b"Origin")


class CorsMiddleware(CORSMiddleware):
    async def simple_response(
        self, scope: Scope, receive: Receive, send: Send, request_headers: Headers
    ) -> None:
        if "origin" in request_headers:
            await super().simple_response(scope, receive, send, request_headers)
            return

        async def vary_origin(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers") or []
                if any(name.lower() == b"vary" for name, _ in headers):
                    await self.send(message, send, request_headers)  # starlette merges them
                    return
                message["headers"] = [*headers, _VARY_ORIGIN]
            await send(message)

        await self.app(scope, receive, vary_origin)

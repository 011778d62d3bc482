"""Browser security headers for the pages this API serves itself: the staff console
(/console/) and GraphiQL (GET /graphql and its assets).

Both are clients of the API like any other: they load only their own files, talk only to
this origin, and may not be framed. The policy has no 'unsafe-inline' and no
'unsafe-eval', so an injected <script> or inline handler does not run (tested in
tests/browser/test_console_csp.py). `connect-src 'self'` also covers ws:/wss: to the same
host and port in CSP Level 3 (GraphiQL's subscriptions)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        # GraphiQL's stylesheet carries its icon font inline as a data: URL
        "font-src 'self' data:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    ]
)

SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


def wants_page_headers(scope: Scope, prefixes: tuple[str, ...], graphql_path: str) -> bool:
    path: str = scope["path"]
    if path == graphql_path:
        return bool(scope["method"] == "GET")  # the IDE page (or its 405 in production)
    return any(path == prefix or path.startswith(prefix + "/") for prefix in prefixes)


class PageHeadersMiddleware:
    """Adds SECURITY_HEADERS to every answer under `prefixes` and to GET `graphql_path`."""

    def __init__(
        self, app: ASGIApp, prefixes: tuple[str, ...], graphql_path: str = "/graphql"
    ) -> None:
        self.app = app
        self.prefixes = prefixes
        self.graphql_path = graphql_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not wants_page_headers(
            scope, self.prefixes, self.graphql_path
        ):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in names]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)

"""create_app(settings): routes, middleware, the GraphQL mount, background sender. No logic."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from cross_web import HTTPException
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.types import ExecutionResult
from strawberry.types.unset import UnsetType

from app.access_log import AccessLogMiddleware
from app.console.headers import PageHeadersMiddleware
from app.console.routes import CONSOLE_URL, console_routes
from app.container import Services, build_services
from app.cors import CorsMiddleware
from app.errors import DomainError, ErrorCode
from app.graphiql import ASSETS_DIR, ASSETS_URL, graphiql_html
from app.graphql.context import Context, client_ip_from
from app.graphql.endpoint import GraphQLEndpoint
from app.graphql.errors import with_default_codes
from app.graphql.metrics import REFUSED_BEFORE_EXECUTION
from app.graphql.over_http import refusal, shape
from app.graphql.persisted import PersistedQueries, allowlist_rule
from app.graphql.ws_sessions import SessionCheckedLegacyWS, SessionCheckedTransportWS
from app.heap import freeze_startup_heap, unfreeze_heap
from app.http import JSON, DatabaseScope, GuardMiddleware, media_type_of, request_id_of
from app.metrics import counted_webhook, metrics_endpoint, request_refused
from app.migrate import is_at_head
from app.notifications.sender import OutboxSender
from app.notifications.templates import Shop
from app.notifications.transports import transport_from_settings
from app.notifications.unsubscribe import unsubscribe_endpoint
from app.schema import build_schema
from app.settings import Settings
from app.shipments.webhook import carrier_webhook

log = logging.getLogger("app")


class OrdersGraphQL(GraphQL[Context, None]):
    # every operation over a WebSocket checks that the connection's session is still live
    graphql_transport_ws_handler_class = SessionCheckedTransportWS
    graphql_ws_handler_class = SessionCheckedLegacyWS

    def __init__(self, services: Services, persisted: PersistedQueries, **kwargs: Any) -> None:
        allowlist = allowlist_rule(persisted.allowlist) if persisted.allowlist_only else None
        schema = build_schema(production=services.settings.is_production, allowlist=allowlist)
        super().__init__(schema, **kwargs)
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Strawberry answers a request it cannot take (no query, wrong parameter types, a
        batch, an unknown operation name, a subscription) in text/plain; here it is a
        GraphQL response in the negotiated media type, like every other refusal."""
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        try:
            response = await self.run(Request(scope=scope, receive=receive))
        except HTTPException as error:
            if not isinstance(error.__cause__, REFUSED_BEFORE_EXECUTION):
                request_refused()  # the others were counted by MetricsExtension
            message = error.reason
            if "subscriptions are not allowed" in message:
                message = "Subscriptions are served over WebSocket (graphql-transport-ws)."
            response = refusal(
                media_type_of(scope),
                ErrorCode.BAD_USER_INPUT,
                message,
                status=error.status_code,
                headers={"allow": "POST"} if error.status_code == 405 else None,
            )
        await response(scope, receive, send)

    @property
    def graphql_ide_html(self) -> str:
        """GraphiQL from vendored assets, opening on the customer journey (app/graphiql.py)."""
        return graphiql_html()

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:
        settings = self.services.settings
        peer = request.client.host if request.client else None
        return Context(
            services=self.services,
            client_ip=client_ip_from(
                peer, request.headers.get("x-forwarded-for"), settings.trusted_proxies
            ),
            request_id=request_id_of(request.scope),
            authorization=request.headers.get("authorization"),
            request=request,
            response=response,
        )

    async def process_result(self, request: Request, result: ExecutionResult) -> Any:
        return with_default_codes(dict(await super().process_result(request, result)))

    async def get_sub_response(self, request: Request | WebSocket) -> Response:
        """What resolvers may add to the answer (headers, a status, a background task):
        strawberry's empty one — no status, no headers — made without building a response
        and deleting its content-length through a MutableHeaders (two per request), in the
        negotiated media type (the guard's)."""
        sub_response = Response.__new__(Response)
        sub_response.status_code = None  # type: ignore[assignment]  # (as strawberry's)
        sub_response.media_type = media_type_of(request.scope)
        sub_response.background = None
        sub_response.body = b""
        sub_response.raw_headers = []
        return sub_response

    def create_response(self, response_data: Any, sub_response: Response) -> Response:
        """The answer in the negotiated media type, with its status (app/graphql/over_http.py).
        A request refused as a whole by the limiter (no data, only RATE_LIMITED errors)
        answers HTTP 429 with Retry-After, so plain HTTP clients and proxies back off too."""
        media_type = sub_response.media_type or JSON
        status, body, retry = shape(response_data, media_type)
        response = Response(self.encode_json(body), status_code=status, media_type=media_type)
        if sub_response.raw_headers:  # (the list behind `headers`, without building one)
            response.raw_headers.extend(sub_response.raw_headers)
        if sub_response.background:
            response.background = sub_response.background
        if sub_response.status_code and status == 200:
            response.status_code = sub_response.status_code
        if retry is not None:
            response.headers["Retry-After"] = str(retry)
        return response

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """Authenticate in connection_init: a bad or ended session closes with 4403; a
        connection without credentials is accepted (every operation then asks for them)."""
        try:
            await context.viewer()
        except DomainError as error:
            raise ConnectionRejectionError({"code": error.code.value}) from error
        return None  # plain connection_ack


def create_app(
    settings: Settings,
    *,
    run_sender: bool = True,
    services: Services | None = None,
    freeze_heap: bool = False,
) -> Starlette:
    """The app. `freeze_heap` (the server, `orders-api serve`): its start-up heap is frozen
    while it serves (app/heap.py); the tests build hundreds of apps and skip the full
    collection it starts with."""
    services = services or build_services(settings)
    ide = None if settings.is_production else "graphiql"
    persisted = PersistedQueries.from_file(allowlist_only=settings.persisted_queries == "allowlist")
    graphql_app = OrdersGraphQL(
        services,
        persisted,
        graphql_ide=ide,
        allow_queries_via_get=False,
        # A browser WebSocket from another origin must be on the CORS allow-list (clients
        # without an Origin header, i.e. not browsers, and same-origin pages are let in).
        allowed_origins=settings.cors_origins,
    )
    # GraphiQL's JS/CSS, served locally (no CDN needed); only when the IDE is on.
    ide_assets: list[BaseRoute] = (
        [Mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="graphiql-assets")]
        if ide is not None
        else []
    )

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        checks = {"database": await services.db.ping()}
        if checks["database"]:
            try:
                async with asyncio.timeout(2.0):
                    checks["migrations"] = await is_at_head(services.db.health_engine)
            except Exception:
                checks["migrations"] = False
        if settings.redis_url:
            checks["redis"] = await services.limiter.ping()
        ok = all(checks.values())
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        stop = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        if run_sender:  # the background work of an instance: emails and payments
            sender = OutboxSender(
                services.db,
                transport_from_settings(settings),
                settings.mail_from,
                max_attempts=settings.outbox_max_attempts,
                shop=Shop.from_settings(settings),
                unsubscribe=services.preferences.links,
            )
            tasks.append(
                asyncio.create_task(sender.run_forever(settings.outbox_poll_seconds, stop))
            )
            tasks.append(
                asyncio.create_task(
                    services.reconciler.run_forever(settings.reconcile_interval_seconds, stop)
                )
            )
        if freeze_heap:  # after the schema, the mappers and uvicorn's own: app/heap.py
            freeze_startup_heap()
        try:
            yield
        finally:
            if freeze_heap:
                unfreeze_heap()
            stop.set()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    await asyncio.wait_for(task, timeout=10)
            await services.aclose()

    app = Starlette(
        routes=[
            # First: the router tries routes in order (a regex match each), and nearly
            # every request is a /graphql POST.
            Route(
                "/graphql",
                GraphQLEndpoint(graphql_app, persisted, plans=settings.compiled_plans),
                methods=["GET", "POST", "OPTIONS"],
            ),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            WebSocketRoute("/graphql", graphql_app),
            Route(
                "/webhooks/carrier",
                counted_webhook(
                    carrier_webhook(services.shipments, settings.carrier_webhook_secret)
                ),
                methods=["POST"],
            ),
            Route(
                "/unsubscribe",
                unsubscribe_endpoint(services.preferences),
                methods=["GET", "POST"],
            ),
            Route(
                "/metrics",
                metrics_endpoint(
                    OutboxSender(services.db, transport_from_settings(settings), "").queue_depth,
                    production=settings.is_production,
                    token=settings.metrics_token,
                ),
            ),
            *ide_assets,
            *console_routes(settings.staff_console),
        ],
        lifespan=lifespan,
        middleware=[
            # Outermost: one access-log line per request and WebSocket operation, whoever
            # answers it (CORS preflights and the guard's refusals included).
            Middleware(AccessLogMiddleware),
            # CSP, no framing, nosniff, no referrer: on the pages this API serves itself
            Middleware(PageHeadersMiddleware, prefixes=(CONSOLE_URL, ASSETS_URL)),
            # Outside the guard, so preflights are answered here and refusals by the guard (415,
            # 429…) still carry the CORS headers a browser needs to read them.
            Middleware(
                CorsMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=["Authorization", "Content-Type"],
                expose_headers=["Retry-After", "X-Request-Id"],
                # Bearer tokens, never cookies: no ambient credentials cross origins.
                allow_credentials=False,
                max_age=600,
            ),
            Middleware(
                GuardMiddleware,
                ide_enabled=ide is not None,
                timeout_seconds=settings.request_timeout_seconds,
                body_timeout_seconds=settings.http_body_timeout_seconds,
            ),
            # Innermost: one database connection per HTTP request, inside the time cap.
            Middleware(DatabaseScope, db=services.db),
        ],
    )
    app.state.services = services
    return app

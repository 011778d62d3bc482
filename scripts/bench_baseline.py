"""The bare baseline for scripts/bench: what a careful hand-written async service does for
each benchmarked document, with no GraphQL and no ORM.

One Starlette POST route per document, each taking the same request body as /graphql
(the document's text is ignored, the variables are read):

- /bench/small    `order(code) { code status total }`
- /bench/page     the order page: order, lines, totals, payment, address, shipments with
                  their lines and tracking events, returns with their lines, timeline
- /bench/history  `myOrders(first:)`: a page of orders with their lines and shipments

Every route does the app's work and nothing more: the bearer JWT verified with pyjwt, with
the app's cache of verified claims (an lru_cache keyed on the token, 4096 entries, only
successes cached, expiry checked again on every request); the live-session query (the
app's `_LIVE_SESSION`, app/accounts/service.py); the document's SQL on one pooled
connection per request, as few statements as the answer needs (page: order, lines,
shipments, shipment lines, tracking events, returns, return lines - the shipment and
return children only when there are shipments or returns; history: the page of orders,
then the lines and the shipments of the whole page); then the same JSON as the GraphQL
answer (money as {amount, currency}, codes through `codes.display`, times as ISO-8601
UTC, opaque cursors from the app's CursorCodec).

PostgreSQL: asyncpg, `create_pool(min_size=10, max_size=10)`, the app's statement timeout,
and no reset query when a connection goes back to the pool (these routes leave no session
state behind; the app's pool sends nothing on check-in either). SQLite: aiosqlite, a pool
of 10 connections with the app's pragmas (app/db.py).

Served by scripts/bench.py as `uvicorn bench_baseline:from_env --factory --app-dir
scripts`, with the same uvicorn settings as `orders-api serve`, and configured by the
app's environment variables: DATABASE_URL (sqlite:///PATH or postgresql://...),
JWT_SECRET, JWT_ISSUER, JWT_AUDIENCE. `Baseline.statements` counts the statements sent
(scripts/bench reads it in-process).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

import aiosqlite
import asyncpg
import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.errors import InvalidOrderCode
from app.notifications.templates import format_money
from app.pagination import CursorCodec
from app.security import codes

POOL_SIZE = 10
MAX_PAGE_SIZE = 50  # the app's MAX_PAGE_SIZE default
DEFAULT_PAGE_SIZE = 20
STATEMENT_TIMEOUT_MS = 10_000  # app/db.py
TOKEN_CACHE = 4096  # app/security/tokens.py

# Statements in asyncpg's dialect ($n, `= ANY($n)` for a list); SQLite gets `?` and an
# expanded IN (...) (see `_sqlite_sql`). `{ids}` marks the one list parameter.
SQL = {
    # the app's _LIVE_SESSION
    "session": (
        "SELECT users.id, users.public_id, users.role, users.email, auth_sessions.id "
        "FROM users JOIN auth_sessions ON auth_sessions.user_id = users.id "
        "WHERE auth_sessions.public_id = $1 AND auth_sessions.revoked_at IS NULL "
        "AND users.public_id = $2"
    ),
    "small_order": (
        "SELECT code, status, total_minor, currency FROM orders WHERE code = $1 AND user_id = $2"
    ),
    "page_order": (
        "SELECT id, code, status, placed_at, estimated_delivery, currency, subtotal_minor, "
        "shipping_minor, tax_minor, total_minor, refunded_minor, ship_name, ship_line1, "
        "ship_line2, ship_city, ship_postal_code, ship_country, payment_brand, payment_last4, "
        "payment_reference, cancelled_at FROM orders WHERE code = $1 AND user_id = $2"
    ),
    "page_lines": (
        "SELECT sku, name, quantity, unit_price_minor FROM order_lines "
        "WHERE order_id = $1 ORDER BY id"
    ),
    "page_shipments": (
        "SELECT id, carrier, tracking_number, status, estimated_delivery, shipped_at, "
        "delivered_at FROM shipments WHERE order_id = $1 ORDER BY shipped_at, id"
    ),
    "shipment_lines": (
        "SELECT shipment_lines.shipment_id, order_lines.sku, order_lines.name, "
        "shipment_lines.quantity FROM shipment_lines "
        "JOIN order_lines ON order_lines.id = shipment_lines.order_line_id "
        "WHERE shipment_lines.shipment_id {ids} ORDER BY shipment_lines.id"
    ),
    "tracking_events": (
        "SELECT shipment_id, status, location, description, occurred_at FROM tracking_events "
        "WHERE shipment_id {ids} ORDER BY occurred_at DESC, id DESC"
    ),
    "page_returns": (
        "SELECT id, rma_code, status, reason, refund_minor, requested_at, approved_at, "
        "rejected_at, received_at, refunded_at FROM return_requests "
        "WHERE order_id = $1 ORDER BY requested_at, id"
    ),
    # per return, one entry per order line (its parcels summed), in order-line order
    "return_lines": (
        "SELECT return_lines.return_id, order_lines.sku, order_lines.name, "
        "order_lines.unit_price_minor, SUM(return_lines.quantity), "
        "SUM(return_lines.received_quantity) FROM return_lines "
        "JOIN order_lines ON order_lines.id = return_lines.order_line_id "
        "WHERE return_lines.return_id {ids} "
        "GROUP BY return_lines.return_id, order_lines.id, order_lines.sku, order_lines.name, "
        "order_lines.unit_price_minor ORDER BY order_lines.id"
    ),
    "history_orders": (
        "SELECT id, code, status, placed_at, total_minor, currency FROM orders "
        "WHERE user_id = $1 ORDER BY placed_at DESC, code DESC LIMIT $2"
    ),
    "history_lines": (
        "SELECT order_id, sku, name, quantity FROM order_lines WHERE order_id {ids} ORDER BY id"
    ),
    "history_shipments": (
        "SELECT order_id, carrier, status, estimated_delivery FROM shipments "
        "WHERE order_id {ids} ORDER BY shipped_at, id"
    ),
}
_PLACEHOLDER = re.compile(r"\$\d+")


def _postgres_sql(name: str) -> str:
    return SQL[name].replace("{ids}", "= ANY($1)")


def _sqlite_sql(name: str, n_ids: int) -> str:
    text = _PLACEHOLDER.sub("?", SQL[name])
    return text.replace("{ids}", "IN (" + ", ".join("?" * n_ids) + ")")


Row = Sequence[Any]
Fetch = Callable[..., Awaitable[list[Row]]]


# -- connections ----------------------------------------------------------------------------


class _Postgres:
    def __init__(self, url: str) -> None:
        self.url = url
        self.pool: asyncpg.Pool | None = None
        self.sql = {name: _postgres_sql(name) for name in SQL}

    async def start(self) -> None:
        async def keep(_: asyncpg.Connection) -> None:
            """No reset query on release: these routes leave no state on a connection."""

        self.pool = await asyncpg.create_pool(
            self.url,
            min_size=POOL_SIZE,
            max_size=POOL_SIZE,
            reset=keep,
            server_settings={"statement_timeout": str(STATEMENT_TIMEOUT_MS)},
        )

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    @contextlib.asynccontextmanager
    async def connection(self, count: Callable[[], None]) -> AsyncIterator[Fetch]:
        assert self.pool is not None
        async with self.pool.acquire() as conn:
            sql = self.sql

            async def fetch(name: str, *args: Any) -> list[Row]:
                count()
                return await conn.fetch(sql[name], *args)  # type: ignore[no-any-return]

            yield fetch

    @staticmethod
    def when(value: datetime) -> datetime:
        return value  # timestamptz: asyncpg answers aware UTC datetimes

    @staticmethod
    def day(value: date) -> str:
        return value.isoformat()


class _Sqlite:
    def __init__(self, path: str) -> None:
        self.path = path
        self.idle: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self.all: list[aiosqlite.Connection] = []
        self.sql: dict[tuple[str, int], str] = {}

    async def start(self) -> None:
        for _ in range(POOL_SIZE):
            conn = await aiosqlite.connect(self.path, isolation_level=None)
            for pragma in (
                "journal_mode=WAL",
                "foreign_keys=ON",
                "busy_timeout=0",
                "synchronous=NORMAL",
            ):
                await conn.execute(f"PRAGMA {pragma}")
            self.all.append(conn)
            self.idle.put_nowait(conn)

    async def close(self) -> None:
        for conn in self.all:
            await conn.close()

    @contextlib.asynccontextmanager
    async def connection(self, count: Callable[[], None]) -> AsyncIterator[Fetch]:
        conn = await self.idle.get()
        try:
            cache = self.sql

            async def fetch(name: str, *args: Any) -> list[Row]:
                count()
                n_ids = 0
                if args and isinstance(args[-1], list):
                    ids = args[-1]
                    n_ids = len(ids)
                    args = (*args[:-1], *ids)
                text = cache.get((name, n_ids))
                if text is None:
                    text = cache[(name, n_ids)] = _sqlite_sql(name, n_ids)
                return list(await conn.execute_fetchall(text, args))

            yield fetch
        finally:
            self.idle.put_nowait(conn)

    @staticmethod
    def when(value: str) -> datetime:
        # stored as UTC without an offset ("2026-01-01 12:00:00.000000")
        return datetime.fromisoformat(value).replace(tzinfo=UTC)

    @staticmethod
    def day(value: str) -> str:
        return value  # already ISO (YYYY-MM-DD)


# -- the routes ------------------------------------------------------------------------------


class Unauthenticated(Exception):
    pass


def _error(field: str, message: str, code: str) -> JSONResponse:
    return JSONResponse(
        {
            "data": None,
            "errors": [{"message": message, "path": [field], "extensions": {"code": code}}],
        }
    )


def _money(amount: int, currency: str) -> dict[str, Any]:
    return {"amount": amount, "currency": currency}


_LABELS = {
    "PLACED": "Order placed",
    "PAID": "Payment received",
    "SHIPPED": "Shipped",
    "DELIVERED": "Delivered",
    "CANCELLED": "Order cancelled",
    "RETURN_REQUESTED": "Return requested",
    "RETURN_APPROVED": "Return approved",
    "RETURN_REJECTED": "Return rejected",
    "RETURN_RECEIVED": "Return received",
    "REFUNDED": "Refund issued",
}
_RANK = {kind: rank for rank, kind in enumerate(_LABELS)}


class Baseline:
    def __init__(self, database_url: str, secret: str, issuer: str, audience: str) -> None:
        self.db: _Postgres | _Sqlite
        if database_url.startswith("sqlite:///"):
            self.db = _Sqlite(database_url.removeprefix("sqlite:///"))
        elif database_url.startswith(("postgresql://", "postgres://")):
            self.db = _Postgres(database_url)
        else:
            raise SystemExit("bench_baseline: DATABASE_URL must be sqlite:/// or postgresql://")
        self.cursors = CursorCodec(secret)
        self.statements = 0

        def verify(token: str) -> tuple[str, str, float]:
            """(user public id, session public id, exp) of a valid access token."""
            claims = jwt.decode(
                token,
                secret,
                algorithms=["HS256"],
                audience=audience,
                issuer=issuer,
                options={"require": ["exp", "iat", "iss", "aud", "sub", "sid", "typ"]},
            )
            if claims.get("typ") != "access":
                raise jwt.InvalidTokenError("wrong typ")
            if not all(isinstance(claims.get(k), str) for k in ("sub", "sid", "role")):
                raise jwt.InvalidTokenError("malformed claims")
            exp = claims["exp"]
            if not isinstance(exp, int | float) or isinstance(exp, bool):
                raise jwt.InvalidTokenError("malformed exp")
            return claims["sub"], claims["sid"], float(exp)

        self.verified = lru_cache(maxsize=TOKEN_CACHE)(verify)

    def count(self) -> None:
        self.statements += 1

    async def viewer(self, request: Request, fetch: Fetch) -> int:
        """The caller's user id: a valid token of a live session, or Unauthenticated."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated()
        try:
            user, session, exp = self.verified(token.strip())
        except jwt.PyJWTError as exc:
            raise Unauthenticated() from exc
        if exp <= time.time():
            raise Unauthenticated()
        rows = await fetch("session", session, user)
        if not rows:
            raise Unauthenticated()
        user_id: int = rows[0][0]
        return user_id

    # -- order(code) { code status total } ------------------------------------------------
    async def small(self, request: Request) -> JSONResponse:
        variables = (await request.json()).get("variables") or {}
        async with self.db.connection(self.count) as fetch:
            try:
                user_id = await self.viewer(request, fetch)
            except Unauthenticated:
                return _error("order", "The access token is invalid or expired.", "UNAUTHENTICATED")
            try:
                raw = variables.get("code")  # anything but text is no code
                code = codes.normalise(raw if isinstance(raw, str) else "")
            except InvalidOrderCode:
                return _error("order", InvalidOrderCode.default_message, "INVALID_ORDER_CODE")
            rows = await fetch("small_order", code, user_id)
        if not rows:
            return _error("order", "No order with this code was found.", "ORDER_NOT_FOUND")
        found, status, total, currency = rows[0]
        return JSONResponse(
            {
                "data": {
                    "order": {
                        "code": codes.display(found),
                        "status": status,
                        "total": _money(total, currency),
                    }
                }
            }
        )

    # -- the order page -------------------------------------------------------------------
    async def page(self, request: Request) -> JSONResponse:
        variables = (await request.json()).get("variables") or {}
        db = self.db
        when, day = db.when, db.day
        async with db.connection(self.count) as fetch:
            try:
                user_id = await self.viewer(request, fetch)
            except Unauthenticated:
                return _error("order", "The access token is invalid or expired.", "UNAUTHENTICATED")
            try:
                raw = variables.get("code")  # anything but text is no code
                code = codes.normalise(raw if isinstance(raw, str) else "")
            except InvalidOrderCode:
                return _error("order", InvalidOrderCode.default_message, "INVALID_ORDER_CODE")
            rows = await fetch("page_order", code, user_id)
            if not rows:
                return _error("order", "No order with this code was found.", "ORDER_NOT_FOUND")
            o = rows[0]
            order_id = o[0]
            lines = await fetch("page_lines", order_id)
            shipments = await fetch("page_shipments", order_id)
            shipment_lines: list[Row] = []
            events: list[Row] = []
            if shipments:
                shipment_ids = [s[0] for s in shipments]
                shipment_lines = await fetch("shipment_lines", shipment_ids)
                events = await fetch("tracking_events", shipment_ids)
            returns = await fetch("page_returns", order_id)
            return_lines: list[Row] = []
            if returns:
                return_lines = await fetch("return_lines", [r[0] for r in returns])
        currency = o[5]
        placed = when(o[3])
        cancelled = when(o[20]) if o[20] is not None else None

        lines_of: dict[int, list[dict[str, Any]]] = {s[0]: [] for s in shipments}
        for shipment_id, sku, name, quantity in shipment_lines:
            lines_of[shipment_id].append({"sku": sku, "name": name, "quantity": quantity})
        events_of: dict[int, list[dict[str, Any]]] = {s[0]: [] for s in shipments}
        for shipment_id, status, location, description, occurred in events:
            events_of[shipment_id].append(
                {
                    "status": status,
                    "location": location,
                    "description": description,
                    "occurredAt": when(occurred).isoformat(),
                }
            )
        returned_of: dict[int, list[dict[str, Any]]] = {r[0]: [] for r in returns}
        for return_id, sku, name, price, quantity, received in return_lines:
            returned_of[return_id].append(
                {
                    "sku": sku,
                    "name": name,
                    "quantity": quantity,
                    "receivedQuantity": received,
                    "unitPrice": _money(price, currency),
                }
            )

        # The timeline: (sort key, rank, entry), oldest first, as app/returns/timeline.py.
        steps: list[tuple[datetime, int, dict[str, Any]]] = []

        def step(
            kind: str,
            at: datetime,
            amount: int | None = None,
            rma: str | None = None,
            carrier: str | None = None,
            number: str | None = None,
            not_before: datetime | None = None,
        ) -> None:
            text = _LABELS[kind]
            if carrier:
                text += f" with {carrier} ({number})"
            if amount is not None:
                text += f": {format_money(amount, currency)}"
            shown = codes.display(rma) if rma else None
            if shown:
                text += f" (return {shown})"
            entry = {
                "kind": kind,
                "at": at.isoformat(),
                "description": text,
                "amount": _money(amount, currency) if amount is not None else None,
                "rma": shown,
                "carrier": carrier,
                "trackingNumber": number,
            }
            key = at if not_before is None else max(at, not_before)
            steps.append((key, _RANK[kind], entry))

        step("PLACED", placed)
        if o[19]:  # payment_reference
            step("PAID", placed, o[9])
        shipments_json = []
        for shipment_id, carrier, number, status, eta, shipped_raw, delivered_raw in shipments:
            shipped = when(shipped_raw)
            delivered = when(delivered_raw) if delivered_raw is not None else None
            step("SHIPPED", shipped, carrier=carrier, number=number)
            if delivered is not None:
                step("DELIVERED", delivered, carrier=carrier, number=number, not_before=shipped)
            shipments_json.append(
                {
                    "carrier": carrier,
                    "trackingNumber": number,
                    "status": status,
                    "estimatedDelivery": day(eta) if eta is not None else None,
                    "shippedAt": shipped.isoformat(),
                    "deliveredAt": delivered.isoformat() if delivered is not None else None,
                    "events": events_of[shipment_id],
                    "lines": lines_of[shipment_id],
                }
            )
        return_refunds = 0
        returns_json = []
        for return_id, rma, status, reason, refund, *times in returns:
            requested, approved, rejected, received, refunded = (
                when(t) if t is not None else None for t in times
            )
            for kind, at in (
                ("RETURN_REQUESTED", requested),
                ("RETURN_APPROVED", approved),
                ("RETURN_REJECTED", rejected),
                ("RETURN_RECEIVED", received),
            ):
                if at is not None:
                    step(kind, at, rma=rma)
            if status == "REFUNDED" and refunded is not None:
                return_refunds += refund or 0
                step("REFUNDED", refunded, refund or 0, rma=rma)
            assert requested is not None
            returns_json.append(
                {
                    "rma": codes.display(rma),
                    "status": status,
                    "reason": reason,
                    "requestedAt": requested.isoformat(),
                    "lines": returned_of[return_id],
                    "refund": (
                        _money(refund, currency)
                        if status == "REFUNDED" and refund is not None
                        else None
                    ),
                }
            )
        if cancelled is not None:
            step("CANCELLED", cancelled)
            cancel_refund = o[10] - return_refunds
            if cancel_refund > 0:
                step("REFUNDED", cancelled, cancel_refund)
        steps.sort(key=lambda s: (s[0], s[1]))

        return JSONResponse(
            {
                "data": {
                    "order": {
                        "code": codes.display(o[1]),
                        "status": o[2],
                        "placedAt": placed.isoformat(),
                        "estimatedDelivery": day(o[4]),
                        "lines": [
                            {
                                "sku": sku,
                                "name": name,
                                "quantity": quantity,
                                "unitPrice": _money(price, currency),
                                "lineTotal": _money(price * quantity, currency),
                            }
                            for sku, name, quantity, price in lines
                        ],
                        "subtotal": _money(o[6], currency),
                        "shipping": _money(o[7], currency),
                        "tax": _money(o[8], currency),
                        "total": _money(o[9], currency),
                        "payment": {"brand": o[17], "last4": o[18]},
                        "shippingAddress": {
                            "name": o[11],
                            "line1": o[12],
                            "line2": o[13],
                            "city": o[14],
                            "postalCode": o[15],
                            "country": o[16],
                        },
                        "shipments": shipments_json,
                        "returns": returns_json,
                        "timeline": [entry for _, _, entry in steps],
                    }
                }
            }
        )

    # -- myOrders(first:) -------------------------------------------------------------------
    async def history(self, request: Request) -> JSONResponse:
        variables = (await request.json()).get("variables") or {}
        first = variables.get("first")
        size = DEFAULT_PAGE_SIZE if first is None else first
        if not isinstance(size, int) or not 1 <= size <= MAX_PAGE_SIZE:
            return _error(
                "myOrders", f"`first` must be between 1 and {MAX_PAGE_SIZE}.", "BAD_USER_INPUT"
            )
        db = self.db
        when, day = db.when, db.day
        async with db.connection(self.count) as fetch:
            try:
                user_id = await self.viewer(request, fetch)
            except Unauthenticated:
                return _error(
                    "myOrders", "The access token is invalid or expired.", "UNAUTHENTICATED"
                )
            rows = await fetch("history_orders", user_id, size + 1)
            page = rows[:size]
            lines: list[Row] = []
            shipments: list[Row] = []
            if page:
                order_ids = [row[0] for row in page]
                lines = await fetch("history_lines", order_ids)
                shipments = await fetch("history_shipments", order_ids)
        lines_of: dict[int, list[dict[str, Any]]] = {row[0]: [] for row in page}
        for order_id, sku, name, quantity in lines:
            lines_of[order_id].append({"sku": sku, "name": name, "quantity": quantity})
        shipments_of: dict[int, list[dict[str, Any]]] = {row[0]: [] for row in page}
        for order_id, carrier, status, eta in shipments:
            shipments_of[order_id].append(
                {
                    "carrier": carrier,
                    "status": status,
                    "estimatedDelivery": day(eta) if eta is not None else None,
                }
            )
        edges = []
        encode = self.cursors.encode
        for order_id, code, status, placed_raw, total, currency in page:
            placed = when(placed_raw).isoformat()
            edges.append(
                {
                    "cursor": encode("order", [placed, code]),
                    "node": {
                        "code": codes.display(code),
                        "status": status,
                        "placedAt": placed,
                        "total": _money(total, currency),
                        "lines": lines_of[order_id],
                        "shipments": shipments_of[order_id],
                    },
                }
            )
        return JSONResponse(
            {
                "data": {
                    "myOrders": {
                        "edges": edges,
                        "pageInfo": {
                            "hasNextPage": len(rows) > size,
                            "endCursor": edges[-1]["cursor"] if edges else None,
                        },
                    }
                }
            }
        )


def create_app(database_url: str, secret: str, issuer: str, audience: str) -> Starlette:
    baseline = Baseline(database_url, secret, issuer, audience)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await baseline.db.start()
        try:
            yield
        finally:
            await baseline.db.close()

    app = Starlette(
        routes=[
            Route("/bench/small", baseline.small, methods=["POST"]),
            Route("/bench/page", baseline.page, methods=["POST"]),
            Route("/bench/history", baseline.history, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
    app.state.baseline = baseline
    return app


def from_env() -> Starlette:
    """The app from the app's environment variables (`uvicorn --factory`)."""
    return create_app(
        os.environ["DATABASE_URL"],
        os.environ["JWT_SECRET"],
        os.environ.get("JWT_ISSUER") or "orders-api",
        os.environ.get("JWT_AUDIENCE") or "orders-api-clients",
    )

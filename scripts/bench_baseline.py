"""The bare baseline for scripts/bench: one Starlette POST route doing the same work as
`order(code)` — JWT check, live-session join, lookup by code and owner — with pyjwt and the
standard sqlite3 module, no GraphQL and no ORM.

Served by scripts/bench.py as `uvicorn bench_baseline:app --app-dir scripts`, with the
same uvicorn settings as `orders-api serve`. Configured by the same environment variables
as the app: DATABASE_URL (sqlite:///PATH only), JWT_SECRET, JWT_ISSUER, JWT_AUDIENCE.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any

import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.errors import InvalidOrderCode
from app.security import codes

DATABASE_URL = os.environ["DATABASE_URL"]
if not DATABASE_URL.startswith("sqlite:///"):
    raise SystemExit("bench_baseline: DATABASE_URL must be sqlite:///PATH")
DB_PATH = DATABASE_URL.removeprefix("sqlite:///")
SECRET = os.environ["JWT_SECRET"]
ISSUER = os.environ.get("JWT_ISSUER") or "orders-api"
AUDIENCE = os.environ.get("JWT_AUDIENCE") or "orders-api-clients"

# The same statements the ORM emits for `authenticate()` and `_owned()`.
SESSION_SQL = (
    "SELECT users.id, users.public_id, users.role, users.email, auth_sessions.id "
    "FROM users JOIN auth_sessions ON auth_sessions.user_id = users.id "
    "WHERE auth_sessions.public_id = ? AND auth_sessions.revoked_at IS NULL "
    "AND users.public_id = ?"
)
ORDER_SQL = "SELECT code, status, total_minor, currency FROM orders WHERE code = ? AND user_id = ?"

# One connection for the process: the handler runs on the event loop thread, as the app's
# synchronous resolvers do. Same pragmas as app.db for SQLite.
_conn = sqlite3.connect(DB_PATH, check_same_thread=False, isolation_level=None, timeout=30)
for pragma in ("journal_mode=WAL", "foreign_keys=ON", "busy_timeout=30000", "synchronous=NORMAL"):
    _conn.execute(f"PRAGMA {pragma}")


def _error(message: str, code: str, status: int = 200) -> JSONResponse:
    return JSONResponse(
        {"data": {"order": None}, "errors": [{"message": message, "extensions": {"code": code}}]},
        status_code=status,
    )


async def order(request: Request) -> JSONResponse:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return _error("Unauthenticated.", "UNAUTHENTICATED")
    try:
        claims: dict[str, Any] = jwt.decode(
            token.strip(),
            SECRET,
            algorithms=["HS256"],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "iat", "iss", "aud", "sub", "sid", "typ"]},
        )
    except jwt.PyJWTError:
        return _error("The access token is invalid or expired.", "UNAUTHENTICATED")
    if claims.get("typ") != "access":
        return _error("The access token is invalid or expired.", "UNAUTHENTICATED")
    viewer = _conn.execute(SESSION_SQL, (claims["sid"], claims["sub"])).fetchone()
    if viewer is None:
        return _error("The session has ended. Log in again.", "UNAUTHENTICATED")
    body = await request.json()
    try:
        code = codes.normalise(body["variables"]["code"])
    except (InvalidOrderCode, KeyError, TypeError):
        return _error("Invalid order code.", "INVALID_ORDER_CODE")
    row = _conn.execute(ORDER_SQL, (code, viewer[0])).fetchone()
    if row is None:
        return _error("Order not found.", "ORDER_NOT_FOUND")
    found_code, status, total_minor, currency = row
    return JSONResponse(
        {
            "data": {
                "order": {
                    "code": codes.display(found_code),
                    "status": status,
                    "total": {"amount": total_minor, "currency": currency},
                }
            }
        }
    )


app = Starlette(routes=[Route("/graphql", order, methods=["POST"])])

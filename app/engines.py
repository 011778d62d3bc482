"""Engines: database URLs, the synchronous engine (migrations, tools) and the server's async
engine with its pool and connection set-up (SQLite pragmas, PostgreSQL statement timeout,
the pool's reset on return). app/db.py runs requests on them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.util import await_
from sqlmodel import create_engine

STATEMENT_TIMEOUT_MS = 10_000  # PostgreSQL cancels a statement that runs longer
APPLICATION_NAME = "orders-api"
POOL_TIMEOUT_SECONDS = 5.0  # waiting for a free connection longer is SERVICE_UNAVAILABLE


def normalise_url(url: str) -> str:
    """The URL for synchronous tools (Alembic, scripts, tests): psycopg or pysqlite."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def async_url(url: str) -> str:
    """The URL for the server: asyncpg or aiosqlite."""
    if url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url.removeprefix("sqlite://")
    return url


def make_engine(url: str, *, pool_size: int = 5, null_pool: bool = False) -> Engine:
    """A synchronous engine, for migrations, scripts and tests — never for the server.
    `null_pool`: a connection per use, closed after it (nothing left open between uses)."""
    url = normalise_url(url)
    pooling: dict[str, Any] = {"poolclass": NullPool} if null_pool else {}
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30, "isolation_level": None},
            **pooling,
        )
        _configure_sqlite(engine, busy_timeout_ms=30_000)

        # pysqlite's own transaction handling is off, so BEGIN is ours to send
        # (execution option `sqlite_begin="IMMEDIATE"` for a writer that must not wait
        # to upgrade its lock).
        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine
    if null_pool or "pool=null" in url:
        return create_engine(url.replace("?pool=null", ""), poolclass=NullPool)
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


def _configure_sqlite(engine: Engine, *, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


def make_async_engine(
    url: str, *, pool_size: int, sqlite_busy_ms: int = 0, name: str = APPLICATION_NAME
) -> AsyncEngine:
    """The server's engine. On SQLite, `sqlite_busy_ms` 0 (the default) makes a locked
    database answer at once, so that `Database` waits for the lock on the loop."""
    url = async_url(url)
    if url.startswith("sqlite"):
        # An in-memory database lives in one connection (SQLAlchemy's StaticPool).
        pooling: dict[str, Any] = (
            {}
            if ":memory:" in url
            else {"pool_size": pool_size, "max_overflow": 0, "pool_timeout": POOL_TIMEOUT_SECONDS}
        )
        engine = create_async_engine(
            url,
            connect_args={"check_same_thread": False, "isolation_level": None},
            pool_reset_on_return=None,  # _rollback_if_in_transaction
            **pooling,
        )
        _configure_sqlite(engine.sync_engine, busy_timeout_ms=sqlite_busy_ms)
        event.listen(engine.sync_engine, "reset", _rollback_if_in_transaction)
        return engine
    if "pool=null" in url:
        return create_async_engine(url.replace("?pool=null", ""), poolclass=NullPool)
    engine = create_async_engine(
        url,
        pool_reset_on_return=None,  # _rollback_if_in_transaction
        pool_size=pool_size,
        # A fixed pool: connections opened on overflow and closed on their return cost a
        # connect (and prepared statements) per burst; requests queue for one instead.
        max_overflow=0,
        pool_timeout=POOL_TIMEOUT_SECONDS,
        # No pre-ping (a round trip per checkout): a connection the server dropped fails
        # its first read, which is retried once on a fresh connection (`_read_retrying`).
        pool_pre_ping=False,
        connect_args={
            "timeout": 5,
            "server_settings": {
                "statement_timeout": str(STATEMENT_TIMEOUT_MS),
                "application_name": name,  # who is who in pg_stat_activity
            },
        },
    )
    event.listen(engine.sync_engine, "reset", _rollback_if_in_transaction)
    return engine


def _rollback_if_in_transaction(dbapi_connection: Any, _record: Any, state: Any) -> None:
    """The pool's reset on return, asked of the driver first: most connections come back
    from reads in autocommit, and SQLAlchemy's unconditional ROLLBACK is a thread hop
    through aiosqlite (12 % of a small lookup's loop time on SQLite, scripts/bench). A
    connection still in a transaction (an error, a cancellation) is rolled back as before."""
    if not state.asyncio_safe or state.transaction_was_reset:
        return  # being thrown away, or its transaction already ended
    driver = dbapi_connection.driver_connection
    if driver_in_transaction(driver):
        dbapi_connection.rollback()
        if driver_in_transaction(driver):  # begun on the driver, unknown to the adapter
            await_(driver.execute("ROLLBACK"))


def driver_in_transaction(driver: Any) -> bool:
    check = getattr(driver, "is_in_transaction", None)  # asyncpg
    return bool(check() if check is not None else driver.in_transaction)  # aiosqlite

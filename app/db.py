"""The database: the request's connection, reads and transactions, on the engines of
app/engines.py (URLs, pools, connection set-up); the two are the only modules that know about
drivers.

Nothing here blocks the event loop. PostgreSQL is reached through asyncpg and SQLite through
aiosqlite (its own thread per connection), both under SQLAlchemy's async engine, so a slow
statement costs the request that waits for it and nothing else. docs/architecture.md says
why (measured against a thread boundary in front of sync code) and how.

One connection per request: `scope()` (entered once per HTTP request by the app) binds a
pooled connection, taken on first use and given back at the end, to the request's context.
Every read and write of that request runs on it, one at a time (an asyncio lock: graphql
resolvers run concurrently), so a page costs its statements and nothing else — no pre-ping,
no BEGIN/ROLLBACK around reads (they run in autocommit), one pool checkout. Code running
outside a request (the email sender, the reconciler, the CLI) gets a scope per call.

Cancellation is the request time cap: when the awaiting task is cancelled, asyncpg cancels
the statement on the server, and a running SQLite statement is interrupted; the connection
goes back to the pool in a clean state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, event, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.sql.compiler import SQLCompiler
from sqlmodel import SQLModel

from app.db_errors import connection_lost, is_unavailable, statement_cancelled
from app.db_gate import PoolGate
from app.engines import (
    POOL_TIMEOUT_SECONDS,
    async_url,
    driver_in_transaction,
    make_async_engine,
    normalise_url,
)
from app.errors import ServiceUnavailable

log = logging.getLogger("app.db")

# The drivers and the ORM log every statement with its parameters (addresses, emails,
# codes) at INFO/DEBUG: they stay at WARNING whatever the root logger's level is.
for _driver_logger in ("aiosqlite", "asyncpg", "sqlalchemy", "psycopg"):
    logging.getLogger(_driver_logger).setLevel(logging.WARNING)

# Stable constraint names, so that Alembic migrations are the same on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
SQLModel.metadata.naming_convention = NAMING_CONVENTION

# SQLite: a writer waits for the write lock on the event loop (asyncio.sleep between tries),
# never inside the driver's busy handler, which no cancellation can interrupt.
SQLITE_LOCK_WAIT_SECONDS = 30.0


def utcnow() -> datetime:
    """Aware UTC. SQLModel's UTCDateTime columns refuse naive values and return UTC."""
    return datetime.now(UTC)


# -- the request's connection ---------------------------------------------------------------


class _Lease:
    """One pooled connection, used by one request (or one background call) at a time.

    `lock` serialises its users: GraphQL resolves sibling fields concurrently, and a
    connection runs one statement at a time. `holder` is the task inside `lock`, so that
    a nested read by the same task (a helper called inside a transaction) joins instead of
    waiting for itself.
    """

    __slots__ = ("autocommit", "conn", "driver", "holder", "in_transaction", "lock")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.conn: AsyncConnection | None = None
        self.driver: Any = None
        self.holder: asyncio.Task[Any] | None = None
        self.in_transaction = False
        self.autocommit = False  # the connection's ORM reads run without BEGIN/ROLLBACK


_lease: ContextVar[_Lease | None] = ContextVar("db_lease", default=None)
_Opened = tuple[_Lease, Token[_Lease | None]]

# A prebuilt statement's SQL for given list lengths, and per positional argument: the
# parameter's name, the index in its list (expanding IN) and its bind processor.
_Recipe = tuple[str, list[tuple[str, int | None, Callable[[Any], Any] | None]]]


def _bound(value: Any, process: Callable[[Any], Any] | None) -> Any:
    return value if process is None else process(value)


class Database:
    """Async engine, the request's connection, ORM reads and the write transaction."""

    def __init__(self, url: str, *, pool_size: int | None = None) -> None:
        self.url = normalise_url(url)
        if pool_size is None:  # SQLite: a thread per connection, and one writer anyway
            pool_size = 5 if self.url.startswith("sqlite") else 20
        self.engine = make_async_engine(url, pool_size=pool_size)
        # Health checks and migration checks connect on their own, outside the pool.
        self.health_engine = create_async_engine(async_url(url), poolclass=NullPool)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        # Keyed by the statement itself (identity), not its id(): an id can be reused by a
        # statement built after another was freed. Statements are module constants, built
        # once; one built per call would be kept here for good (correct, but growing).
        self._recipes: dict[tuple[Select[Any], tuple[int, ...]], _Recipe] = {}
        self._expanding: dict[Select[Any], tuple[str, ...]] = {}
        self._fixed_values: dict[Select[Any], dict[str, Any]] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._counted: list[str] | None = None
        # Connections between requests stay checked out of SQLAlchemy's pool, on a stack of
        # our own: a checkout and a return through it cost three greenlet switches (a scope
        # with one read: 105 → 48 µs on SQLite, 194 → 129 µs on PostgreSQL, in-process);
        # a pop and a push cost nothing. `_gate` keeps
        # the pool's limits (pool_size leases at once, POOL_TIMEOUT_SECONDS of waiting),
        # so SQLAlchemy's own checkout never waits. Off with NullPool (nothing kept open).
        self._warm: list[tuple[AsyncConnection, Any, bool]] | None = (
            None if isinstance(self.engine.pool, NullPool) else []
        )
        self._gate = PoolGate(pool_size, POOL_TIMEOUT_SECONDS)

    def count_statements(self) -> list[str]:
        """Record every statement sent from now on into the returned list (for tools and
        tests that count the statements of a request: scripts/bench)."""
        if self._counted is None:
            self._counted = []

            @event.listens_for(self.engine.sync_engine, "before_cursor_execute")
            def _count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
                if self._counted is not None:
                    self._counted.append(statement)

        return self._counted

    # -- scopes -------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def scope(self) -> AsyncIterator[None]:
        """Bind one connection (taken on first use) to everything awaited inside."""
        opened = self.open_scope()
        try:
            yield
        finally:
            await self.close_scope(opened)

    def open_scope(self) -> _Opened | None:
        """`scope()` in two calls, for the request's middleware (an async context manager
        per request costs more than both): bind a lease to what runs from here in this
        context, or None when one is bound already. Always followed by `close_scope`."""
        if _lease.get() is not None:
            return None
        lease = _Lease()
        return lease, _lease.set(lease)

    async def close_scope(self, opened: _Opened | None) -> None:
        """Unbind what `open_scope` bound, and give its connection back."""
        if opened is None:
            return
        lease, token = opened
        _lease.reset(token)
        await self._release(lease)

    @contextlib.asynccontextmanager
    async def _using(self) -> AsyncIterator[_Lease]:
        """The current scope's lease, held by this task for the block (a scope of its own
        when there is none)."""
        lease = _lease.get()
        if lease is None:
            async with self.scope(), self._using() as own:
                yield own
            return
        task = asyncio.current_task()
        if lease.holder is task:  # nested use by the same task: already ours
            yield lease
            return
        async with lease.lock:
            lease.holder = task
            try:
                if lease.conn is None:
                    await self._connect(lease)
                yield lease
            finally:
                lease.holder = None

    async def _connect(self, lease: _Lease) -> None:
        if self._warm is None:
            await self._checkout(lease)
            return
        try:  # every lease out: wait for one, at most the pool timeout
            await self._gate.acquire()
        except TimeoutError as exc:
            raise ServiceUnavailable() from exc
        if self._warm:
            lease.conn, lease.driver, lease.autocommit = self._warm.pop()
            return
        try:
            await self._checkout(lease)
        except BaseException:
            self._gate.release()
            raise

    async def _checkout(self, lease: _Lease) -> None:
        try:
            conn = await self.engine.connect()
        except (PoolTimeout, OSError) as exc:
            raise ServiceUnavailable() from exc
        except DBAPIError as exc:
            raise ServiceUnavailable() from exc
        try:
            raw = await conn.get_raw_connection()
        except BaseException:
            await _close_quietly(conn)
            raise
        lease.conn, lease.driver, lease.autocommit = conn, raw.driver_connection, False

    async def release_connection(self) -> None:
        """Give the request's connection back to the pool now, before a call to another
        system (a payment provider): a request waiting seconds on a card must not hold a
        connection the others need. Its next statement takes one again."""
        lease = _lease.get()
        if lease is None or lease.conn is None:
            return
        if lease.holder is asyncio.current_task():
            raise RuntimeError("release_connection() inside a transaction or a read block")
        async with lease.lock:
            if lease.in_transaction:
                raise RuntimeError("release_connection() while a transaction is open")
            await self._release(lease)

    async def _release(self, lease: _Lease) -> None:
        conn, driver, lease.conn, lease.driver = lease.conn, lease.driver, None, None
        if conn is None:
            return
        task = asyncio.current_task()
        cancelled = task is not None and task.cancelling() > 0
        if self._warm is not None and not cancelled and _is_idle(conn, driver):
            self._warm.append((conn, driver, lease.autocommit))
            self._gate.release()
            return
        if cancelled:
            # Cancelled (the request time cap): give the connection back from a task of its
            # own, so that the answer does not wait for the cleanup (the pool's reset on
            # return rolls back whatever the cancellation left open).
            closing = asyncio.get_running_loop().create_task(self._close_and_free(conn))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
            return
        await self._close_and_free(conn)

    async def _close_and_free(self, conn: AsyncConnection) -> None:
        """Back to SQLAlchemy's pool (which resets it), then the lease's place is free."""
        try:
            await _close_quietly(conn)
        finally:
            if self._warm is not None:
                self._gate.release()

    # -- the hot path: prebuilt SELECTs straight through the driver ------------------------
    async def fetch_one(
        self, statement: Select[Any], params: dict[str, Any]
    ) -> tuple[Any, ...] | None:
        """The first row of a prebuilt SELECT (built once, at import), or None."""
        rows = await self.fetch_all(statement, params)
        return rows[0] if rows else None

    async def fetch_all(
        self, statement: Select[Any], params: dict[str, Any]
    ) -> list[tuple[Any, ...]]:
        """Rows of a prebuilt SELECT, run by the driver itself on the request's connection.

        SQLAlchemy's execution context and ORM cost more than these reads (scripts/bench),
        so the SQL is compiled once per statement — and per list length for expanding
        `IN` parameters (`bindparam(..., expanding=True)`, a page is at most 50) — and the
        driver runs it (asyncpg keeps it prepared). Values come back as the driver gives
        them: SQLite dates and times as ISO strings (see `row_values`).
        """
        lengths = tuple(len(params[name]) for name in self._expanding_of(statement))
        key = (statement, lengths)
        recipe = self._recipes.get(key)
        if recipe is None:
            recipe = self._recipes[key] = self._recipe(statement, params)
        sql, order = recipe
        given = {**self._fixed_values[statement], **params}
        args = tuple(
            _bound(given[name] if index is None else given[name][index], process)
            for name, index, process in order
        )
        return await self._read_retrying(sql, args)

    def _expanding_of(self, statement: Select[Any]) -> tuple[str, ...]:
        names = self._expanding.get(statement)
        if names is None:
            compiled = statement.compile(dialect=self.engine.dialect)
            assert isinstance(compiled, SQLCompiler)
            # (compiled.binds is keyed by the names the SQL uses, as positiontup is)
            names = self._expanding[statement] = tuple(
                name for name, bind in compiled.binds.items() if bind.expanding
            )
            # Values the statement carries itself (SQLite's `LIMIT ? OFFSET ?` adds one).
            self._fixed_values[statement] = {
                name: bind.effective_value
                for name, bind in compiled.binds.items()
                if bind.effective_value is not None and not bind.expanding
            }
        return names

    def _recipe(self, statement: Select[Any], params: dict[str, Any]) -> _Recipe:
        """The SQL for these list lengths, and for each positional argument: which
        parameter (and item of a list) it is, and the column type's bind processing (what
        SQLAlchemy would do to it: a datetime as SQLite stores it, in UTC)."""
        dialect = self.engine.dialect
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        processors = {
            name: bind.type.dialect_impl(dialect).bind_processor(dialect)
            for name, bind in compiled.binds.items()
        }
        if not self._expanding_of(statement):
            names = compiled.positiontup or ()
            return compiled.string, [(name, None, processors.get(name)) for name in names]
        state = compiled.construct_expanded_state(params)
        source: dict[str, tuple[str, int | None]] = {}
        for name, expanded in state.parameter_expansion.items():
            for index, expanded_name in enumerate(expanded):
                source[expanded_name] = (name, index)
        order: list[tuple[str, int | None, Callable[[Any], Any] | None]] = []
        for positional in state.positiontup or ():
            name, at = source.get(positional, (positional, None))
            order.append((name, at, processors.get(name)))
        return state.statement, order

    async def _read_retrying(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        for attempt in (1, 2):
            lease = _lease.get()
            if lease is not None and lease.holder is None and not lease.lock.locked():
                # The request's lease, held by no one (the common case): taken for this
                # one statement without `_using`, whose async context manager and task
                # lookup were a tenth of a small lookup. Nothing but the statement runs
                # inside, so no nested use needs `holder`.
                await lease.lock.acquire()
                try:
                    if lease.conn is None:
                        await self._connect(lease)
                    rows = await self._read_on(lease, sql, args, attempt)
                finally:
                    lease.lock.release()
            else:
                async with self._using() as held:
                    rows = await self._read_on(held, sql, args, attempt)
            if rows is not None:
                return rows
        raise AssertionError("unreachable")

    async def _read_on(
        self, lease: _Lease, sql: str, args: tuple[Any, ...], attempt: int
    ) -> list[tuple[Any, ...]] | None:
        """One statement on a lease the caller holds: its rows, or None to read once more
        on a fresh connection."""
        try:
            return await self._driver_fetch(lease, sql, args)
        except asyncio.CancelledError:
            await self._interrupt(lease)
            raise
        except Exception as exc:
            if not connection_lost(exc):
                if statement_cancelled(exc):
                    raise ServiceUnavailable() from exc
                raise
            # The server dropped this connection (a restart): forget it and every other
            # pooled connection of that server, and read once more.
            await self._discard(lease)
            if attempt == 2 or lease.in_transaction:
                raise ServiceUnavailable() from exc
            return None

    async def _driver_fetch(
        self, lease: _Lease, sql: str, args: tuple[Any, ...]
    ) -> list[tuple[Any, ...]]:
        if self._counted is not None:
            self._counted.append(sql)
        if self.is_sqlite:
            return [tuple(row) for row in await lease.driver.execute_fetchall(sql, args)]
        return [tuple(record) for record in await lease.driver.fetch(sql, *args)]

    # -- ORM sessions -----------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """An ORM session for reads, on the request's connection, in autocommit."""
        async with self._using() as lease:
            assert lease.conn is not None
            if not self.is_sqlite and not lease.autocommit and not lease.in_transaction:
                # No BEGIN/ROLLBACK around reads (the driver's own reads never have one).
                await lease.conn.execution_options(isolation_level="AUTOCOMMIT")
                lease.autocommit = True
            session = AsyncSession(bind=lease.conn, expire_on_commit=False)
            try:
                yield session
            except asyncio.CancelledError:
                await self._interrupt(lease)
                raise
            except (OperationalError, DBAPIError) as exc:
                if is_unavailable(exc):
                    await self._discard(lease)
                    raise ServiceUnavailable() from exc
                raise
            finally:
                await _close_session(session)

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """One transaction on the request's connection. The caller commits; leaving the
        block any other way rolls it back. Never nested, and never open across a call to
        another system (payment provider, SMTP, Redis): commit first, then call out."""
        async with self._using() as lease:
            assert lease.conn is not None
            if lease.in_transaction:
                raise RuntimeError("Database.write() inside a transaction of the same request")
            lease.in_transaction = True
            session: AsyncSession | None = None
            try:
                if self.is_sqlite:
                    await self._begin_immediate(lease)
                elif lease.autocommit:
                    await lease.conn.execution_options(isolation_level="READ COMMITTED")
                    lease.autocommit = False
                session = AsyncSession(bind=lease.conn, expire_on_commit=False)
                yield session
            except asyncio.CancelledError:
                await self._interrupt(lease)
                raise
            except (OperationalError, DBAPIError) as exc:
                if is_unavailable(exc):
                    if session is not None:
                        await _close_session(session)
                        session = None
                    await self._discard(lease)
                    raise ServiceUnavailable() from exc
                raise
            finally:
                lease.in_transaction = False
                if session is not None:
                    await _close_session(session)  # rolls back what was not committed
                if self.is_sqlite and lease.driver is not None and lease.driver.in_transaction:
                    await lease.driver.rollback()

    async def _begin_immediate(self, lease: _Lease) -> None:
        """Take SQLite's write lock, waiting for it here (cancellable) rather than in the
        driver's busy handler (which would hold the connection's thread and outlive the
        request time cap)."""
        deadline = asyncio.get_running_loop().time() + SQLITE_LOCK_WAIT_SECONDS
        delay = 0.001
        while True:
            try:
                if self._counted is not None:
                    self._counted.append("BEGIN IMMEDIATE")
                await lease.driver.execute("BEGIN IMMEDIATE")
                return
            except Exception as exc:
                if "locked" not in str(exc).lower() and "busy" not in str(exc).lower():
                    raise
                if asyncio.get_running_loop().time() >= deadline:
                    raise ServiceUnavailable() from exc
            await asyncio.sleep(delay * (1 + random.random()))  # noqa: S311 (jitter)
            delay = min(delay * 2, 0.02)

    async def _interrupt(self, lease: _Lease) -> None:
        """The awaiting task was cancelled: stop what the connection is doing. asyncpg
        cancels the statement on the server by itself; SQLite needs an interrupt."""
        if self.is_sqlite and lease.driver is not None:
            with contextlib.suppress(Exception):
                await lease.driver.interrupt()

    async def _discard(self, lease: _Lease) -> None:
        """The connection is broken: invalidate it, and start a fresh pool (the others
        went to the same server)."""
        conn, lease.conn, lease.driver = lease.conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.invalidate()
            await self._close_and_free(conn)
        await self._drop_warm(invalidate=True)
        with contextlib.suppress(Exception):
            await self.engine.dispose(close=False)

    async def _drop_warm(self, *, invalidate: bool) -> None:
        """Give every warm connection back to SQLAlchemy (invalidated: its server went)."""
        warm, self._warm = self._warm, ([] if self._warm is not None else None)
        for conn, _driver, _autocommit in warm or ():
            if invalidate:
                with contextlib.suppress(Exception):
                    await conn.invalidate()
            await _close_quietly(conn)

    # -- health -----------------------------------------------------------------------------
    async def ping(self, timeout: float = 2.0) -> bool:
        """The database answers (/readyz), on a connection of its own: a busy pool (every
        connection serving a request) is not an unready database."""
        try:
            async with asyncio.timeout(timeout):
                async with self.health_engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    async def dispose(self) -> None:
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        await self._drop_warm(invalidate=False)
        await self.engine.dispose()
        await self.health_engine.dispose()


def _is_idle(conn: AsyncConnection, driver: Any) -> bool:
    """Out of any transaction, as SQLAlchemy's and the driver's state both say: such a
    connection can serve the next request as it is."""
    if driver is None or conn.closed or conn.invalidated or conn.in_transaction():
        return False
    return not driver_in_transaction(driver)


async def _close_session(session: AsyncSession) -> None:
    with contextlib.suppress(Exception):
        await session.close()


async def _close_quietly(conn: AsyncConnection) -> None:
    try:
        await conn.close()
    except Exception as exc:  # a connection already broken: the pool drops it
        log.debug("closing a database connection failed: %s", type(exc).__name__)

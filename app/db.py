"""Engine, sessions and the unit of work. The only module that knows about connection setup."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Date, DateTime, Select, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import NullPool
from sqlalchemy.sql.compiler import SQLCompiler
from sqlmodel import Session, SQLModel, create_engine

from app.errors import ServiceUnavailable

# Stable constraint names, so that Alembic migrations are the same on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
SQLModel.metadata.naming_convention = NAMING_CONVENTION


def utcnow() -> datetime:
    """Aware UTC. SQLModel's UTCDateTime columns refuse naive values and return UTC."""
    return datetime.now(UTC)


def normalise_url(url: str) -> str:
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30, "isolation_level": None},
        )
        _configure_sqlite(engine)
        return engine
    if "pool=null" in url:
        return create_engine(url.replace("?pool=null", ""), poolclass=NullPool)
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,  # a restarted PostgreSQL costs one failed ping, not a 500
        pool_timeout=5,
        # A statement that runs past this is cancelled by the server (execution time cap).
        connect_args={"connect_timeout": 5, "options": "-c statement_timeout=10000"},
    )


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    # pysqlite's own transaction handling is off (isolation_level=None), so we emit BEGIN
    # ourselves: writers take the write lock up front (BEGIN IMMEDIATE) instead of failing
    # with "database is locked" when upgrading a read lock under concurrency.
    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


class Database:
    """Hands out sessions; `write()` is the unit of work that commits or rolls back."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = normalise_url(url)
        self.engine = make_engine(url, pool_size=pool_size)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._compiled: dict[int, SQLCompiler] = {}
        self._write_engine = (
            self.engine.execution_options(sqlite_begin="IMMEDIATE")
            if self.is_sqlite
            else self.engine
        )

    @contextmanager
    def read(self) -> Iterator[Session]:
        try:
            with Session(self.engine, expire_on_commit=False) as session:
                yield session
        except (OperationalError, DBAPIError) as exc:
            if _is_unavailable(exc):
                raise ServiceUnavailable() from exc
            raise

    def fetch_one(self, statement: Select[Any], params: dict[str, Any]) -> tuple[Any, ...] | None:
        """One row of a prebuilt SELECT straight through the driver: the hot path.

        Every request checks its session and order(code) reads one row; SQLAlchemy's
        execution context costs more than the query itself there (scripts/bench). The SQL
        is compiled once per statement for this dialect; values come back as the driver
        gives them (SQLite: dates as ISO strings, see `row_values`).
        """
        compiled = self._compiled.get(id(statement))
        if compiled is None:
            compiled = statement.compile(dialect=self.engine.dialect)
            assert isinstance(compiled, SQLCompiler)
            self._compiled[id(statement)] = compiled
        names = compiled.positiontup
        args: Any = tuple(params[name] for name in names) if names else params
        try:
            raw = self.engine.raw_connection()
        except Exception as exc:  # the pool hands back the driver's own error here
            if isinstance(exc, DBAPIError) or _driver_connection_lost(exc):
                raise ServiceUnavailable() from exc
            raise
        try:
            cursor = raw.cursor()
            try:
                cursor.execute(compiled.string, args)
                row = cursor.fetchone()
            finally:
                cursor.close()
        except Exception as exc:
            if _driver_connection_lost(exc):
                raw.invalidate()
                raise ServiceUnavailable() from exc
            raise
        finally:
            raw.close()  # back to the pool (rolled back there)
        return tuple(row) if row is not None else None

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One transaction. The caller commits; an exception rolls everything back."""
        try:
            with Session(self._write_engine, expire_on_commit=False) as session:
                yield session
        except (OperationalError, DBAPIError) as exc:
            if _is_unavailable(exc):
                raise ServiceUnavailable() from exc
            raise

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    def dispose(self) -> None:
        self.engine.dispose()


def row_values(statement: Select[Any], row: tuple[Any, ...]) -> dict[str, Any]:
    """Name the values of a `fetch_one` row and give dates and times their Python types
    (SQLite hands them back as ISO strings; PostgreSQL already as datetime/date)."""
    columns = _row_shapes.get(id(statement))
    if columns is None:
        columns = _row_shapes[id(statement)] = [
            (str(column.key), _temporal_kind(column.type)) for column in statement.selected_columns
        ]
    values: dict[str, Any] = {}
    for (key, kind), value in zip(columns, row, strict=True):
        if kind is not None and isinstance(value, str):
            if kind is datetime:
                parsed = datetime.fromisoformat(value)
                value = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
            else:
                value = date.fromisoformat(value)
        values[key] = value
    return values


# Column keys and temporal kinds of each hot-path statement (module-level constants, so
# their ids are stable), worked out once instead of per row.
_row_shapes: dict[int, list[tuple[str, type | None]]] = {}


def _temporal_kind(column_type: Any) -> type | None:
    """datetime or date for DateTime/Date columns (TypeDecorators by their impl)."""
    impl = getattr(column_type, "impl", column_type)
    if isinstance(impl, DateTime):
        return datetime
    if isinstance(impl, Date):
        return date
    return None


def _driver_connection_lost(exc: BaseException) -> bool:
    """A raw driver error that means the server or connection is gone. For PostgreSQL
    (psycopg) every OperationalError/InterfaceError is about the connection or the
    server; for SQLite only those whose message says so (others are statement bugs)."""
    if type(exc).__name__ not in {"OperationalError", "InterfaceError"}:
        return False
    if type(exc).__module__.startswith("psycopg"):
        return True
    text = str(exc).lower()
    return any(
        marker in text
        for marker in (
            "connection",
            "server closed",
            "terminating",
            "could not connect",
            "database is locked",
        )
    )


def _is_unavailable(exc: DBAPIError) -> bool:
    """Connection-level failures (server down, restarted) rather than bugs in a statement."""
    if exc.connection_invalidated:
        return True
    if exc.orig is not None and _driver_connection_lost(exc.orig):
        return True
    message = str(exc.orig).lower() if exc.orig is not None else ""
    markers = (
        "connection",
        "server closed",
        "could not connect",
        "terminating",
        "timeout",
        "database is locked",
        "the database system is",
        "ssl syscall",
    )
    return isinstance(exc, OperationalError) and any(m in message for m in markers)

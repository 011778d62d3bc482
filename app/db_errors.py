"""What a driver's exception means for the request: the connection is lost (the server
restarted: read once more on a new one), the statement was cancelled (the time cap, or
PostgreSQL's statement timeout), or the database is unavailable."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, OperationalError

_LOST_MARKERS = (
    "connection",
    "server closed",
    "terminating",
    "could not connect",
    "the database system is",
    "ssl syscall",
    "connection reset",
    "broken pipe",
)


def connection_lost(exc: BaseException) -> bool:
    """A raw driver error that means the server or the connection is gone."""
    if isinstance(exc, ConnectionError | OSError):
        return True
    name = type(exc).__name__
    module = type(exc).__module__
    if module.startswith("asyncpg"):
        return (
            name
            in {
                "ConnectionDoesNotExistError",
                "ConnectionFailureError",
                "InterfaceError",
                "AdminShutdownError",
                "CannotConnectNowError",
                "CrashShutdownError",
                "PostgresConnectionError",
                "ConnectionRejectionError",
            }
            or "connection" in str(exc).lower()
        )
    if name in {"OperationalError", "InterfaceError"}:
        text = str(exc).lower()
        return any(marker in text for marker in _LOST_MARKERS)
    return False


def statement_cancelled(exc: BaseException) -> bool:
    """PostgreSQL's statement timeout (or an operator) cancelled the statement; SQLite
    interrupted; or the lock wait ran out."""
    name = type(exc).__name__
    text = str(exc).lower()
    return name == "QueryCanceledError" or "interrupted" in text or "database is locked" in text


def is_unavailable(exc: DBAPIError) -> bool:
    """Connection-level failures (server down, restarted) and cancelled statements, rather
    than bugs in a statement."""
    if exc.connection_invalidated:
        return True
    original = exc.orig
    if original is not None:
        # SQLAlchemy's async adapters wrap the driver's error once more
        inner = getattr(original, "__cause__", None) or original
        if connection_lost(inner) or statement_cancelled(inner):
            return True
    message = str(original).lower() if original is not None else ""
    markers = (*_LOST_MARKERS, "timeout", "database is locked", "canceling statement")
    return isinstance(exc, OperationalError) and any(m in message for m in markers)

"""The database of scripts/bench: a scratch database (SQLite file or PostgreSQL database)
and a count of the connections opened to it. The seed itself, and the shape of its data,
is app/seeding/bench.py (one seeding module for the bench, the load test and the tests).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.pool import NullPool

from app.engines import normalise_url


def fail(message: str) -> SystemExit:
    return SystemExit(f"bench: FAILED: {message}")


# -- the scratch database ---------------------------------------------------------------


@dataclass
class ScratchDatabase:
    """Where the bench writes: a fresh SQLite file, or a fresh PostgreSQL database created
    through the admin URL (and dropped WITH (FORCE) by `drop`)."""

    url: str  # for the app: sqlite:///PATH or postgresql://...
    kind: str  # "sqlite" or "postgresql"
    admin_url: str | None = None
    name: str | None = None

    @classmethod
    def sqlite(cls, path: str) -> ScratchDatabase:
        return cls(url=f"sqlite:///{path}", kind="sqlite")

    @classmethod
    def postgresql(cls, admin_url: str) -> ScratchDatabase:
        name = f"orders_bench_{secrets.token_hex(4)}"
        parsed = make_url(admin_url)
        url = parsed.set(database=name).render_as_string(hide_password=False)
        admin = create_engine(normalise_url(admin_url), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        except Exception as exc:
            raise fail(
                f"cannot create a scratch database through {parsed.render_as_string()} "
                f"(BENCH_POSTGRES_URL): {type(exc).__name__}: {str(exc).strip()[:300]}"
            ) from exc
        finally:
            admin.dispose()
        return cls(url=url, kind="postgresql", admin_url=admin_url, name=name)

    @property
    def shown(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    def sessions(self) -> SessionCount:
        """Counts the connections opened to this database (PostgreSQL only)."""
        return SessionCount(self.url if self.kind == "postgresql" else None)

    def drop(self) -> None:
        if self.kind != "postgresql" or self.admin_url is None:
            return
        admin = create_engine(normalise_url(self.admin_url), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        finally:
            admin.dispose()


class SessionCount:
    """PostgreSQL's count of connections (sessions) opened to the database so far, read
    on one connection kept open for the purpose; None on SQLite or if it cannot be read.
    Backends report it within about a second."""

    def __init__(self, url: str | None) -> None:
        self.conn: Connection | None = None
        self.engine: Engine | None = None
        if url is None:
            return
        try:
            self.engine = create_engine(
                normalise_url(url), poolclass=NullPool, isolation_level="AUTOCOMMIT"
            )
            self.conn = self.engine.connect()
        except Exception:
            self.conn = None

    def read(self) -> int | None:
        if self.conn is None:
            return None
        try:
            value = self.conn.execute(
                text("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
            ).scalar()
        except Exception:
            return None
        return int(value) if value is not None else None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if self.engine is not None:
            self.engine.dispose()

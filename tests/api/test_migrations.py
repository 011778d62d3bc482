"""The Alembic migrations build exactly the tables the models describe, on SQLite and on
PostgreSQL, and the app knows when the database is at head."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

import app.models  # noqa: F401
from app.container import Services
from app.migrate import include_object, is_at_head


def test_migrations_match_the_models(services: Services) -> None:
    with services.db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": include_object})
        diff = compare_metadata(context, SQLModel.metadata)
    assert diff == []


def test_database_is_at_head(services: Services) -> None:
    assert is_at_head(services.db.engine)

"""The Alembic migrations build exactly the tables the models describe, on SQLite and on
PostgreSQL, and the app knows when the database is at head."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

import app.models  # noqa: F401
from app.container import Services
from app.db import make_engine
from app.migrate import include_object, is_at_head
from tests.conftest import Run


def test_migrations_match_the_models(services: Services) -> None:
    # Alembic compares through a synchronous connection (as it migrates) to the same database.
    engine = make_engine(services.db.url, null_pool=True)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"include_object": include_object})
            diff = compare_metadata(context, SQLModel.metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_database_is_at_head(services: Services, run: Run[Any]) -> None:
    assert run(is_at_head(services.db.engine))

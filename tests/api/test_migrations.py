"""The Alembic migrations build exactly the tables the models describe, on SQLite and on
PostgreSQL, and the app knows when the database is at head."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel

import app.models  # noqa: F401
from app.container import Services
from app.engines import make_engine
from app.migrate import alembic_config, include_object, is_at_head, upgrade
from tests.conftest import Run
from tests.support.rows import insert_row


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


def test_the_latest_migrations_go_up_and_down_with_a_shop_in_a_sqlite_database(
    tmp_path: Path,
) -> None:
    # given a SQLite database at 0009 holding a customer, an order and its parcel (foreign
    # keys on, as the app runs it): SQLite alters a table in batch mode by copying it and
    # dropping the old one, which those keys refuse — 0012 once did so and failed here
    path = tmp_path / "shop.db"
    url = f"sqlite:///{path}"
    upgrade(url, "0009")
    with sqlite3.connect(path) as conn:
        user = insert_row(conn, "users", {})
        order = insert_row(conn, "orders", {"user_id": user, "status": "SHIPPED"})
        insert_row(conn, "shipments", {"order_id": order, "status": "IN_TRANSIT"})
    # when it is migrated to head, back to 0009 and to head again
    upgrade(url)
    command.downgrade(alembic_config(url), "0009")
    upgrade(url)
    # then every row is still there, and the database is at head
    with sqlite3.connect(path) as conn:
        counts = [
            conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("users", "orders", "shipments")
        ]
        (version,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    assert counts == [1, 1, 1]
    assert version == ScriptDirectory.from_config(alembic_config(url)).get_current_head()

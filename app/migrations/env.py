"""Alembic environment: the URL comes from the caller (app.migrate) or DATABASE_URL."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import pool
from sqlmodel import SQLModel

import app.models  # noqa: F401  (registers every table)
from app.engines import make_engine, normalise_url
from app.migrate import include_object

config = context.config
target_metadata = SQLModel.metadata


def _url() -> str:
    url = config.attributes.get("database_url") or os.environ.get(
        "DATABASE_URL", "sqlite:///var/orders.db"
    )
    return normalise_url(url)


def run_migrations_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        include_object=include_object,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(_url())
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            # Batch mode alters a SQLite table by copying it and dropping the old one, which
            # enforced foreign keys refuse as soon as rows point at it (any shop's users and
            # orders). SQLite's own recipe: keys off for the migration (a PRAGMA that only
            # works outside a transaction, hence on the driver's connection before BEGIN),
            # then `foreign_key_check` before committing.
            conn.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")
        context.configure(
            connection=conn,
            target_metadata=target_metadata,
            render_as_batch=True,
            include_object=include_object,
        )
        with context.begin_transaction():
            context.run_migrations()
            if sqlite:
                broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"migration left rows with broken foreign keys: {broken}")
    engine.dispose()
    _ = pool


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

"""Apply Alembic migrations programmatically (CLI, test setup, serve)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from app.payments.models import provider_metadata

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def include_object(obj: object, name: str | None, type_: str, reflected: bool, _: object) -> bool:
    """The test payment provider's ledger is not ours: it is created by the provider (on
    PostgreSQL it may share the database), so autogenerate must never drop it."""
    return not (type_ == "table" and name in provider_metadata.tables)


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    if database_url.startswith("sqlite:///"):
        path = Path(database_url.removeprefix("sqlite:///"))
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(database_url), revision)


def _heads_of(conn: Connection) -> set[str]:
    return set(MigrationContext.configure(conn).get_current_heads())


async def is_at_head(engine: AsyncEngine) -> bool:
    """Whether the database's schema is at the newest revision (for /readyz)."""
    script = ScriptDirectory.from_config(alembic_config(str(engine.url)))
    async with engine.connect() as conn:
        current = await conn.run_sync(_heads_of)
    return current == set(script.get_heads())

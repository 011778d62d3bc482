"""`Database.fetch_all` compiles each prebuilt SELECT once and keeps its SQL, bind order
and fixed values (app/db.py). Keyed by the statement object itself: keyed by `id()`, as it
once was, a statement built per call could get the SQL and values of an earlier one whose
address it reused (this test failed so)."""

from __future__ import annotations

import asyncio

from sqlalchemy import literal, select

from app.db import Database


def test_a_statement_built_per_call_gets_its_own_sql_and_values(database_url: str) -> None:
    """`fetch_all` caches each statement's SQL and fixed values; a statement built per call
    (freed after it, so that the next one may reuse its address) must not get another's."""

    async def scenario() -> list[int]:
        db = Database(database_url, pool_size=1)
        try:
            found: list[int] = []
            for n in range(30):
                statement = select(literal(n).label("n"))
                rows = await db.fetch_all(statement, {})
                found.append(rows[0][0])
                del statement, rows
            return found
        finally:
            await db.dispose()

    assert asyncio.run(scenario()) == list(range(30))

"""A connection goes back to the pool out of any transaction: the pool asks the driver
whether one is open and rolls it back (app/engines.py `_rollback_if_in_transaction`), instead
of SQLAlchemy's unconditional ROLLBACK on every return."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from app.container import Services
from app.engines import driver_in_transaction as _in_transaction
from tests.conftest import Run


def test_a_transaction_left_open_on_the_driver_is_rolled_back_when_the_connection_returns(
    services: Services, run: Run[Any]
) -> None:
    engine = services.db.engine

    async def abandon() -> tuple[bool, bool, int]:
        async with engine.begin() as setup:
            await setup.execute(text("CREATE TABLE pool_reset_probe (n INTEGER)"))
        conn = await engine.connect()
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        # opened on the driver, behind SQLAlchemy's back (as an interrupted write leaves it)
        await driver.execute("BEGIN")
        await driver.execute("INSERT INTO pool_reset_probe (n) VALUES (1)")
        opened = _in_transaction(driver)
        await conn.close()
        returned_open = _in_transaction(driver)
        async with engine.connect() as again:
            counted = await again.execute(text("SELECT count(*) FROM pool_reset_probe"))
            count = counted.scalar_one()
        return opened, returned_open, count

    async def clean_up() -> None:  # the session's database is shared by later tests
        async with engine.begin() as conn:
            await conn.execute(text("DROP TABLE IF EXISTS pool_reset_probe"))

    try:
        opened, returned_open, count = run(abandon())
    finally:
        run(clean_up())
    assert opened and not returned_open
    assert count == 0

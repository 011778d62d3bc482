"""The one status change: compare-and-set on a row's status, used by orders, shipments'
orders and returns alike.

`UPDATE … SET status = :new WHERE id = :id AND status = :expected`: if another transaction
moved the row since it was read, nothing is updated and the change is refused (CONFLICT),
never lost. The new status comes from the domain's transition rules (pure functions:
`app/shipments/transitions.py`, `app/returns/rules.py`, `app/orders/models.CANCELLABLE`),
which the caller applies to the status it read; this module does the writing.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from app.db import utcnow
from app.errors import Conflict
from app.tables import rows_changed


class HasStatus(Protocol):
    id: int | None
    status: str


async def change_status(
    session: AsyncSession,
    row: HasStatus,
    new: StrEnum,
    *,
    noun: str,
    field: str,
    **values: object,
) -> None:
    """Move `row` (as read in this transaction) to `new`, with `values` set alongside.
    CONFLICT ("The <noun> changed meanwhile") on `field` when the status moved meanwhile.
    The loaded row mirrors the change without becoming dirty (no second UPDATE)."""
    model = type(row)
    now = utcnow()
    columns: dict[str, object] = {"status": new.value, "updated_at": now, **values}
    table: Any = model
    changed = await session.execute(
        update(table).where(table.id == row.id, table.status == row.status).values(**columns)
    )
    if rows_changed(changed) != 1:
        raise Conflict(f"The {noun} changed meanwhile; try again.", field=field)
    for key, value in columns.items():
        set_committed_value(row, key, value)

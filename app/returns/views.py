"""What return use cases answer, and the reads that build it (batch reads behind the API's
loaders, prebuilt; Database.fetch_all runs them, or a transaction to see its own changes)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import Database
from app.db_rows import as_models
from app.orders.models import Order, OrderLine
from app.returns.models import ReturnLine, ReturnRequest
from app.returns.rules import LineEligibility
from app.tables import table

_RETURN = table(ReturnRequest)
_RETURNS_OF_ORDERS = (
    select(*_RETURN.columns)
    .where(_RETURN.c.order_id.in_(bindparam("ids", expanding=True)))
    .order_by(_RETURN.c.requested_at, _RETURN.c.id)
)
_LINES_OF_RETURNS = (
    select(
        table(ReturnLine).c.return_id,
        table(ReturnLine).c.quantity,
        table(ReturnLine).c.received_quantity,
        table(OrderLine).c.id,
        table(OrderLine).c.sku,
        table(OrderLine).c.name,
        table(OrderLine).c.unit_price_minor,
    )
    .join(table(OrderLine), table(OrderLine).c.id == table(ReturnLine).c.order_line_id)
    .where(table(ReturnLine).c.return_id.in_(bindparam("ids", expanding=True)))
    .order_by(table(OrderLine).c.id, table(ReturnLine).c.id)
)


@dataclass(frozen=True)
class ReturnedLine:
    """One order line of a return (units summed over the parcels they came from)."""

    sku: str
    name: str
    unit_price_minor: int
    quantity: int
    received_quantity: int | None


@dataclass(frozen=True)
class ReturnView:
    request: ReturnRequest
    order_code: str
    lines: list[ReturnedLine]


@dataclass(frozen=True)
class EligibleLine:
    sku: str
    name: str
    unit_price_minor: int
    eligibility: LineEligibility


@dataclass(frozen=True)
class EligibilityView:
    order: Order
    window_days: int
    lines: list[EligibleLine]


class ReturnReads:
    """The batch reads behind the API's loaders (one statement for any number of keys)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def returns_for_orders(self, order_ids: list[int]) -> dict[int, list[ReturnRequest]]:
        result: dict[int, list[ReturnRequest]] = {order_id: [] for order_id in order_ids}
        rows = await self._db.fetch_all(_RETURNS_OF_ORDERS, {"ids": order_ids})
        for row in as_models(ReturnRequest, _RETURNS_OF_ORDERS, rows):
            result[row.order_id].append(row)
        return result

    async def lines_for_returns(self, return_ids: list[int]) -> dict[int, list[ReturnedLine]]:
        rows = await self._db.fetch_all(_LINES_OF_RETURNS, {"ids": return_ids})
        return returned_lines(return_ids, rows)


async def lines_in(session: AsyncSession, return_ids: list[int]) -> dict[int, list[ReturnedLine]]:
    """The same inside a transaction (its own changes included)."""
    rows = (await session.execute(_LINES_OF_RETURNS, {"ids": return_ids})).all()
    return returned_lines(return_ids, rows)


async def view_of(session: AsyncSession, ret: ReturnRequest, order_code: str) -> ReturnView:
    lines = await lines_in(session, [ret.id or 0])
    return ReturnView(ret, order_code, lines[ret.id or 0])


def returned_lines(
    return_ids: list[int], rows: Sequence[Sequence[Any]]
) -> dict[int, list[ReturnedLine]]:
    """Per return, one entry per order line (parcels summed), in order-line order."""
    asked: dict[tuple[int, int], int] = defaultdict(int)
    received: dict[tuple[int, int], int | None] = {}
    info: dict[int, tuple[str, str, int]] = {}
    for return_id, quantity, got, line_id, sku, name, price in rows:
        key = (return_id, line_id)
        info[line_id] = (sku, name, price)
        asked[key] += quantity
        before = received.get(key)
        received[key] = got if before is None else before + (got or 0)
    result: dict[int, list[ReturnedLine]] = {rid: [] for rid in return_ids}
    for (return_id, line_id), quantity in asked.items():  # insertion order: by line
        sku, name, price = info[line_id]
        result[return_id].append(
            ReturnedLine(sku, name, price, quantity, received[(return_id, line_id)])
        )
    return result

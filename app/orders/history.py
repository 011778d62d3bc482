"""Reading orders: `order(code)` (the owner's), `myOrders` (the history, keyset-paginated),
a live subscriber's re-read, and the batch read of lines behind the API's loader.

Every read takes the owner into the query: "no such order" and "not yours" are the same
path, the same error and the same time (the door counts the miss, app/security/doors.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, bindparam, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db import Database
from app.db_rows import as_model, as_models, as_partial_models
from app.errors import BadUserInput
from app.orders.models import Order, OrderLine
from app.orders.views import OrderFilter, OrderPage, OrderView
from app.pagination import CursorCodec, clamp_page_size
from app.security.doors import Doors, Subject, Who, declare
from app.security.policy import Viewer, require_viewer
from app.tables import table

ORDER = declare("order", Who.OWNER, Subject.ORDER)

# The one statement behind order(code): by code AND owner, so "not yours" and "not found"
# are the same query. Built once (the hot path), executed on a Core connection.
_OWNED_ORDER = select(*table(Order).columns).where(
    table(Order).c.code == bindparam("code"),
    table(Order).c.user_id == bindparam("owner"),
)
# The history page (myOrders without filters), newest first, keyset on (placed_at, code).
_ORDER = table(Order)
# What a history list shows of each order (app/orders/types.py ORDER_SUMMARY_FIELDS are the
# fields answered from these alone): a page that asks for nothing else reads 7 of the 27
# columns. On SQLite, building the page's models from full rows was a fifth of its time.
SUMMARY_COLUMNS = ("id", "code", "user_id", "status", "currency", "total_minor", "placed_at")


def _page_statements(columns: Any) -> tuple[Select[Any], Select[Any]]:
    """(first page, page after a cursor) selecting `columns`."""
    newest_first = (_ORDER.c.placed_at.desc(), _ORDER.c.code.desc())
    first = (
        select(*columns)
        .where(_ORDER.c.user_id == bindparam("owner"))
        .order_by(*newest_first)
        .limit(bindparam("limit"))
    )
    after = (
        select(*columns)
        .where(
            _ORDER.c.user_id == bindparam("owner"),
            or_(
                _ORDER.c.placed_at < bindparam("placed"),
                and_(
                    _ORDER.c.placed_at == bindparam("placed"),
                    _ORDER.c.code < bindparam("code"),
                ),
            ),
        )
        .order_by(*newest_first)
        .limit(bindparam("limit"))
    )
    return first, after


_FIRST_PAGE, _PAGE_AFTER = _page_statements(_ORDER.columns)
_FIRST_SUMMARIES, _SUMMARIES_AFTER = _page_statements([_ORDER.c[n] for n in SUMMARY_COLUMNS])
_LINES_OF_ORDERS = (
    select(*table(OrderLine).columns)
    .where(table(OrderLine).c.order_id.in_(bindparam("ids", expanding=True)))
    .order_by(table(OrderLine).c.id)
)
# A live subscriber's re-read: by id *and* owner.
_OWNED_BY_ID = select(*table(Order).columns).where(
    table(Order).c.id == bindparam("id"),
    table(Order).c.user_id == bindparam("owner"),
)


async def owned_order(session: AsyncSession, code: str, owner_id: int) -> Order | None:
    """By code *and* owner in one query."""
    found: Order | None = (
        await session.execute(
            select(Order).where(col(Order.code) == code, col(Order.user_id) == owner_id)
        )
    ).scalar_one_or_none()
    return found


async def order_lines(session: AsyncSession, order: Order) -> list[OrderLine]:
    return list(
        (
            await session.execute(
                select(OrderLine)
                .where(col(OrderLine.order_id) == order.id)
                .order_by(col(OrderLine.id))
            )
        ).scalars()
    )


class OrderHistory:
    def __init__(
        self, db: Database, doors: Doors, cursors: CursorCodec, max_page_size: int
    ) -> None:
        self._db = db
        self._doors = doors
        self._cursors = cursors
        self._max_page_size = max_page_size

    async def get_order(self, viewer: Viewer | None, raw_code: str, client_ip: str) -> Order:
        """`order(code)`: the owner's order (lines are loaded by the API on demand)."""
        entry = await self._doors.enter(ORDER, viewer, raw_code, client_ip)
        row = await self._db.fetch_one(
            _OWNED_ORDER, {"code": entry.code, "owner": entry.who.user_id}
        )
        if row is None:
            await entry.miss()
        return as_model(Order, _OWNED_ORDER, row)

    async def reload_owned(self, viewer: Viewer, order_id: int) -> Order | None:
        """A subscriber's fresh view: by id *and* owner, like every other read."""
        row = await self._db.fetch_one(_OWNED_BY_ID, {"id": order_id, "owner": viewer.user_id})
        if row is None:
            return None
        return as_model(Order, _OWNED_BY_ID, row)

    async def lines_for_orders(self, order_ids: list[int]) -> dict[int, list[OrderLine]]:
        """Batch loader: lines of many orders in one statement."""
        result: dict[int, list[OrderLine]] = {order_id: [] for order_id in order_ids}
        rows = await self._db.fetch_all(_LINES_OF_ORDERS, {"ids": order_ids})
        for line in as_models(OrderLine, _LINES_OF_ORDERS, rows):
            result[line.order_id].append(line)
        return result

    async def list_orders(
        self,
        viewer: Viewer | None,
        first: int | None,
        after: str | None,
        filt: OrderFilter,
        summaries: bool = False,
    ) -> OrderPage:
        """`myOrders`: newest first, keyset-paginated on (placed_at, code). With
        `summaries`, an unfiltered page's orders hold only SUMMARY_COLUMNS (reading another
        field of them raises)."""
        who = require_viewer(viewer)
        size = clamp_page_size(first, self._max_page_size)
        if filt == OrderFilter():  # the history as customers page through it: prebuilt
            rows = await self._plain_page(who, size, after, summaries)
        else:
            rows = await self._filtered_page(who, size, after, filt)
        page = rows[:size]
        # The lines of the page are left to the API's loader (only fetched if selected).
        return OrderPage(
            orders=[OrderView(o, None) for o in page],
            cursors=[
                self._cursors.encode("order", [o.placed_at.isoformat(), o.code]) for o in page
            ],
            has_next_page=len(rows) > size,
        )

    async def _plain_page(
        self, who: Viewer, size: int, after: str | None, summaries: bool
    ) -> list[Order]:
        params: dict[str, Any] = {"owner": who.user_id, "limit": size + 1}
        if after:
            params["placed"], params["code"] = self._order_cursor(after)
            statement = _SUMMARIES_AFTER if summaries else _PAGE_AFTER
        else:
            statement = _FIRST_SUMMARIES if summaries else _FIRST_PAGE
        rows = await self._db.fetch_all(statement, params)
        if summaries:
            return as_partial_models(Order, statement, rows)
        return as_models(Order, statement, rows)

    def _order_cursor(self, after: str) -> tuple[datetime, str]:
        placed_iso, last_code = self._cursors.decode("order", after)
        return datetime.fromisoformat(str(placed_iso)), str(last_code)

    async def _filtered_page(
        self, who: Viewer, size: int, after: str | None, filt: OrderFilter
    ) -> list[Order]:
        query = select(Order).where(col(Order.user_id) == who.user_id)
        if filt.statuses:
            query = query.where(col(Order.status).in_(filt.statuses))
        if filt.placed_from is not None:
            query = query.where(col(Order.placed_at) >= filt.placed_from)
        if filt.placed_to is not None:
            query = query.where(col(Order.placed_at) < filt.placed_to)
        if filt.text:
            text = filt.text.strip()
            if len(text) > 100:
                raise BadUserInput("Search text must have at most 100 characters.", field="text")
            pattern = (
                "%"
                + text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                + "%"
            )
            query = query.where(
                exists().where(
                    col(OrderLine.order_id) == col(Order.id),
                    or_(
                        func.lower(col(OrderLine.name)).like(pattern, escape="\\"),
                        func.lower(col(OrderLine.sku)).like(pattern, escape="\\"),
                    ),
                )
            )
        if after:
            placed, last_code = self._order_cursor(after)
            query = query.where(
                or_(
                    col(Order.placed_at) < placed,
                    and_(col(Order.placed_at) == placed, col(Order.code) < last_code),
                )
            )
        query = query.order_by(col(Order.placed_at).desc(), col(Order.code).desc()).limit(size + 1)
        async with self._db.read() as session:
            return list((await session.execute(query)).scalars())

    # -- changes by the owner -----------------------------------------------------------

"""The customer's side of returns: `returnEligibility`, `requestReturn`, and reading a return
by its RMA (`returnRequest`, the owner's, or any for staff).

Customer doors filter by code *and* owner in one query, so another customer's code or RMA
answers exactly like an unknown one (ORDER_NOT_FOUND), and ownership is settled before
anything about the order's state (delivered? window? already returned?) is said.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.db import utcnow
from app.errors import BadUserInput
from app.orders.models import Order, OrderLine
from app.returns.common import (
    REQUEST_RETURN,
    RETURN_ELIGIBILITY,
    RETURN_REQUEST,
    ReturnsDeps,
    eligibility,
    order_state,
    owned_order,
    queue_email,
)
from app.returns.inputs import ReturnLineRequest, clean_comment, clean_lines, clean_reason
from app.returns.models import ReturnLine, ReturnRequest, ReturnStatus
from app.returns.rules import Ineligibility, LineEligibility, allocate
from app.returns.views import EligibilityView, EligibleLine, ReturnView, lines_in, view_of
from app.security import codes
from app.security.policy import Viewer
from app.unit_of_work import UnitOfWork

log = logging.getLogger("app.returns")


class CustomerReturns:
    def __init__(self, deps: ReturnsDeps) -> None:
        self._deps = deps

    async def eligibility(
        self, viewer: Viewer | None, raw_code: str, client_ip: str
    ) -> EligibilityView:
        """`returnEligibility(code)`: per line, how many units may be returned, or why not."""
        deps = self._deps
        entry = await deps.doors.enter(RETURN_ELIGIBILITY, viewer, raw_code, client_ip)
        async with entry.misses(), deps.db.read() as session:
            order = await owned_order(session, entry.code, entry.who, lock=False)
            state = await order_state(session, order)
        window = deps.settings.return_window_days
        found = eligibility(state, utcnow(), window)
        return EligibilityView(
            order=order,
            window_days=window,
            lines=[
                EligibleLine(line.sku, line.name, line.unit_price_minor, found[line.id or 0])
                for line in state.lines
            ],
        )

    async def request_return(
        self,
        viewer: Viewer | None,
        raw_code: str,
        client_ip: str,
        lines: list[ReturnLineRequest],
        reason: str,
        comment: str | None = None,
    ) -> ReturnView:
        """The owner asks to return delivered units, within the window, no more than are
        free. Creates the return (REQUESTED, its own RMA code) and queues the instructions."""
        deps = self._deps
        entry = await deps.doors.enter(REQUEST_RETURN, viewer, raw_code, client_ip)
        async with entry.misses(), deps.units.begin() as uow:
            # Ownership first: nothing below is said to anyone but the owner.
            order = await owned_order(uow.session, entry.code, entry.who, lock=True)
            view = await self.create_return(uow, order, entry.who.email, lines, reason, comment)
            uow.publish(order, "RETURN_UPDATED")
            await uow.commit()
        log.info("return requested", extra={"code": codes.mask(order.code)})
        return view

    async def create_return(
        self,
        uow: UnitOfWork,
        order: Order,
        recipient: str,
        lines: list[ReturnLineRequest],
        reason: str,
        comment: str | None,
    ) -> ReturnView:
        """The return of `order` (locked in `uow`), its lines allocated to the parcels they
        came in, and the instructions emailed to `recipient`."""
        session = uow.session
        requests = clean_lines(lines)
        why = clean_reason(reason)
        note = clean_comment(comment)
        state = await order_state(session, order)
        now = utcnow()
        window = self._deps.settings.return_window_days
        found = eligibility(state, now, window)
        by_sku = state.line_by_sku()
        plan: list[tuple[OrderLine, dict[int, int]]] = []
        for index, request in enumerate(requests):
            line = by_sku.get(request.sku)
            if line is None:
                raise BadUserInput(
                    "This order has no line with this SKU.", field=f"lines[{index}].sku"
                )
            check = found[line.id or 0]
            if request.quantity > check.returnable:
                raise _not_returnable(line, check, window, index)
            plan.append(
                (line, allocate(line.id or 0, request.quantity, state.parcels, now, window))
            )
        ret = ReturnRequest(
            rma_code=await _fresh_rma(session),
            order_id=order.id or 0,
            status=ReturnStatus.REQUESTED.value,
            reason=why.value,
            comment=note,
            currency=order.currency,
            requested_at=now,
            updated_at=now,
        )
        session.add(ret)
        await session.flush()
        for line, parcels in plan:
            for shipment_id, units in parcels.items():
                session.add(
                    ReturnLine(
                        return_id=ret.id or 0,
                        order_line_id=line.id or 0,
                        shipment_id=shipment_id,
                        quantity=units,
                    )
                )
        await session.flush()
        view = await view_of(session, ret, order.code)
        queue_email(uow, "return_requested", view, order, recipient, window)
        return view

    async def get_return(self, viewer: Viewer | None, raw_rma: str, client_ip: str) -> ReturnView:
        """`returnRequest(rma)`: the owner's return, or any return for staff."""
        deps = self._deps
        entry = await deps.doors.enter(RETURN_REQUEST, viewer, raw_rma, client_ip)
        who, rma = entry.who, entry.code
        query = (
            select(ReturnRequest, col(Order.code), col(Order.user_id))
            .join(Order, col(Order.id) == col(ReturnRequest.order_id))
            .where(col(ReturnRequest.rma_code) == rma)
        )
        if not entry.staff:
            query = query.where(col(Order.user_id) == who.user_id)
        async with deps.db.read() as session:
            row = (await session.execute(query)).one_or_none()
            return_id = 0 if row is None else row[0].id or 0
            lines = [] if row is None else (await lines_in(session, [return_id]))[return_id]
        if row is None:
            await entry.miss()
        ret, order_code, owner_id = row
        if entry.staff and owner_id != who.user_id:
            await deps.audit.record(
                actor=who,
                action="return_lookup",
                outcome="found",
                order_id=ret.order_id,
                code=order_code,
                reason=f"RMA {codes.mask(rma)}",
                client_ip=client_ip,
            )
        return ReturnView(ret, order_code, lines)


async def _fresh_rma(session: AsyncSession) -> str:
    while True:  # 75 random bits: a collision is astronomically rare, but handled
        rma = codes.generate()
        taken = (
            await session.execute(
                select(col(ReturnRequest.id)).where(col(ReturnRequest.rma_code) == rma)
            )
        ).first()
        if taken is None:
            return rma


def _not_returnable(
    line: OrderLine, check: LineEligibility, window_days: int, index: int
) -> BadUserInput:
    """Only the owner reaches this: the order's state may be told."""
    field = f"lines[{index}].quantity"
    details: dict[str, object] = {"sku": line.sku, "returnable": check.returnable}
    if check.returnable > 0:
        message = f"Only {check.returnable} of {line.sku} can be returned."
    elif check.reason is Ineligibility.NOT_DELIVERED:
        message = f"{line.sku} has not been delivered yet; it can be returned once it arrives."
    elif check.reason is Ineligibility.WINDOW_CLOSED:
        message = f"The return window for {line.sku} has closed ({window_days} days from delivery)."
    else:
        message = f"Every delivered unit of {line.sku} is already returned or being returned."
    if check.reason is not None:
        details["reason"] = check.reason.value
    return BadUserInput(message, field=field, details=details)

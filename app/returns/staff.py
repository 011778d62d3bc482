"""The staff steps of a return before its refund: approve and reject (SUPPORT, ADMIN),
receive (WAREHOUSE, ADMIN). Each declares its door (app/returns/common.py): the role is
checked right after the gate, before any database access, so a caller without it gets
FORBIDDEN whatever the RMA."""

from __future__ import annotations

import logging
from collections import defaultdict

from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.errors import BadUserInput, DomainError
from app.orders.models import OrderLine, OrderStatus
from app.returns.common import (
    APPROVE_RETURN,
    RECEIVE_RETURN,
    REJECT_RETURN,
    ReturnsDeps,
    locked,
    move_order,
    move_return,
    ordered_units,
    owner_email,
    queue_email,
    return_rows,
)
from app.returns.inputs import ReturnLineRequest, clean_lines, clean_rejection_reason
from app.returns.models import ReturnLine, ReturnStatus
from app.returns.queries import returned_units
from app.returns.refund import ReturnRefunds
from app.returns.rules import ReturnAction, order_status_with_returns, status_after
from app.returns.views import ReturnView, view_of
from app.security import codes
from app.security.doors import Door, Entry
from app.security.policy import Viewer

log = logging.getLogger("app.returns")


class StaffReturns:
    def __init__(self, deps: ReturnsDeps, refunds: ReturnRefunds) -> None:
        self._deps = deps
        self._refunds = refunds

    async def approve(self, viewer: Viewer | None, raw_rma: str, client_ip: str) -> ReturnView:
        entry = await self._deps.doors.enter(APPROVE_RETURN, viewer, raw_rma, client_ip)
        return await self._decide(entry, ReturnAction.APPROVE, None)

    async def reject(
        self, viewer: Viewer | None, raw_rma: str, client_ip: str, reason: str
    ) -> ReturnView:
        entry = await self._deps.doors.enter(REJECT_RETURN, viewer, raw_rma, client_ip)
        return await self._decide(entry, ReturnAction.REJECT, clean_rejection_reason(reason))

    async def _decide(
        self, entry: Entry, action: ReturnAction, rejection: str | None
    ) -> ReturnView:
        deps = self._deps
        who, rma = entry.who, entry.code
        door = _audit_action(entry.door)
        async with locked(deps, entry) as (uow, ret, order):
            session = uow.session
            new = status_after(ReturnStatus(ret.status), action)
            now = utcnow()
            if action is ReturnAction.APPROVE:
                await move_return(session, ret, new, approved_at=now, approved_by=who.user_id)
            else:
                await move_return(
                    session,
                    ret,
                    new,
                    rejected_at=now,
                    rejected_by=who.user_id,
                    rejection_reason=rejection,
                )
            view = await view_of(session, ret, order.code)
            kind = "return_approved" if action is ReturnAction.APPROVE else "return_rejected"
            recipient = await owner_email(session, order)
            queue_email(uow, kind, view, order, recipient, deps.settings.return_window_days)
            await deps.audit.record(
                actor=who,
                action=door,
                outcome=new.value.lower(),
                order_id=order.id,
                code=order.code,
                reason=f"RMA {codes.mask(rma)}" + (f": {rejection}" if rejection else ""),
                client_ip=entry.client_ip,
                session=session,
            )
            uow.publish(order, "RETURN_UPDATED")
            await uow.commit()
        log.info("return decided", extra={"status": new.value, "user": who.public_id})
        return view

    async def receive(
        self,
        viewer: Viewer | None,
        raw_rma: str,
        client_ip: str,
        lines: list[ReturnLineRequest],
    ) -> ReturnView:
        """The warehouse counts what came back. The order moves to PARTIALLY_RETURNED or
        RETURNED once delivered; with AUTO_REFUND_ON_RECEIPT the refund follows once the
        receipt is committed."""
        deps = self._deps
        entry = await deps.doors.enter(RECEIVE_RETURN, viewer, raw_rma, client_ip)
        who, rma = entry.who, entry.code
        counted = clean_lines(lines, allow_zero=True)
        async with locked(deps, entry) as (uow, ret, order):
            session = uow.session
            new = status_after(ReturnStatus(ret.status), ReturnAction.RECEIVE)
            rows = await return_rows(session, ret)
            await _apply_receipt(session, rows, counted)
            now = utcnow()
            await move_return(session, ret, new, received_at=now, received_by=who.user_id)
            current = OrderStatus(order.status)
            status = order_status_with_returns(
                current,
                await ordered_units(session, order),
                await returned_units(session, order.id or 0),
            )
            if status is not current:
                await move_order(session, order, status)
            view = await view_of(session, ret, order.code)
            recipient = await owner_email(session, order)
            queue_email(
                uow, "return_received", view, order, recipient, deps.settings.return_window_days
            )
            await deps.audit.record(
                actor=who,
                action="receive_return",
                outcome="received",
                order_id=order.id,
                code=order.code,
                reason=f"RMA {codes.mask(rma)}: "
                + ", ".join(f"{line.received_quantity} x {line.sku}" for line in view.lines),
                client_ip=client_ip,
                session=session,
            )
            uow.publish(order, "RETURN_UPDATED")
            await uow.commit()
        log.info("return received", extra={"user": who.public_id, "status": order.status})
        if not deps.settings.auto_refund_on_receipt:
            return view
        try:
            return await self._refunds.refund_entered(entry, automatic=True)
        except DomainError as error:
            # The receipt stands; the return stays RECEIVED and an ADMIN retries the refund.
            log.warning("automatic refund failed", extra={"error": error.code.value})
            return view


def _audit_action(door: Door) -> str:
    assert door.audit is not None
    return door.audit


async def _apply_receipt(
    session: AsyncSession,
    rows: list[tuple[ReturnLine, OrderLine]],
    counted: list[ReturnLineRequest],
) -> None:
    """Spread the units counted per SKU over the return's lines (no more than asked for);
    a line not counted came back empty."""
    asked: dict[str, int] = defaultdict(int)
    for row, line in rows:
        asked[line.sku.upper()] += row.quantity
    received: dict[str, int] = {}
    for index, count in enumerate(counted):
        if count.sku not in asked:
            raise BadUserInput(
                "This return has no line with this SKU.", field=f"lines[{index}].sku"
            )
        if count.quantity > asked[count.sku]:
            raise BadUserInput(
                f"Only {asked[count.sku]} of {count.sku} were to be returned.",
                field=f"lines[{index}].quantity",
                details={"sku": count.sku, "requested": asked[count.sku]},
            )
        received[count.sku] = count.quantity
    if sum(received.values()) < 1:
        raise BadUserInput(
            "Count at least one unit received; if nothing came back, reject the return.",
            field="lines",
        )
    for row, line in rows:
        left = received.get(line.sku.upper(), 0)
        units = min(left, row.quantity)
        received[line.sku.upper()] = left - units
        row.received_quantity = units
        session.add(row)
    await session.flush()

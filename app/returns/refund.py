"""A return's refund (ADMIN, or the receipt when AUTO_REFUND_ON_RECEIPT is on), through
`app/payments/refunds.py` and never calling the provider inside a transaction:

1. a unit of work decides the refund (PENDING, idempotency key derived from the RMA) and
   commits;
2. the provider is called, no transaction open;
3. `Refunds` completes it in a transaction of its own and runs `refund_done` (the return
   becomes REFUNDED, its email and audit entry are written).

If the provider fails, the return stays RECEIVED with its refund PENDING, and a retry
(refundReturn, or the reconciler) sends the same refund again with the same key: money
moves once.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.accounts.models import User
from app.db import utcnow
from app.errors import ServiceUnavailable
from app.orders.models import Order
from app.payments.models import PaymentRefund
from app.payments.provider import Refund
from app.payments.refunds import Refunds
from app.returns.common import (
    REFUND_REASON,
    REFUND_RETURN,
    ReturnsDeps,
    locked,
    move_return,
    ordered_units,
    owner_email,
    queue_email,
    return_rows,
    units_refunded,
)
from app.returns.models import ReturnRequest, ReturnStatus
from app.returns.rules import ReturnAction, refund_quote, status_after
from app.returns.views import ReturnView, view_of
from app.security import codes
from app.security.doors import Entry
from app.security.policy import Viewer
from app.unit_of_work import UnitOfWork

log = logging.getLogger("app.returns")


class ReturnRefunds:
    def __init__(self, deps: ReturnsDeps) -> None:
        self._deps = deps
        deps.refunds.on_done(REFUND_REASON, self.refund_done)

    async def refund(self, viewer: Viewer | None, raw_rma: str, client_ip: str) -> ReturnView:
        """Refund a received return once. Repeating it answers with the refund made."""
        entry = await self._deps.doors.enter(REFUND_RETURN, viewer, raw_rma, client_ip)
        return await self.refund_entered(entry, automatic=False)

    async def refund_entered(self, entry: Entry, *, automatic: bool) -> ReturnView:
        """Decide (or find the refund decided before) and commit; then send it to the
        provider, no transaction open. `Refunds` completes it and runs `refund_done`, which
        makes the return REFUNDED; the answer is the return as it now is."""
        deps = self._deps
        who = entry.who
        async with locked(deps, entry) as (uow, ret, order):
            session = uow.session
            if ret.status == ReturnStatus.REFUNDED.value:  # the same request again: done once
                return await view_of(session, ret, order.code)
            refund = await self._refund_to_send(session, ret, order, who, automatic=automatic)
            if refund is None:
                # Nothing left to pay back: refunded here and now, no provider involved.
                view = await self._mark_refunded(
                    uow, ret, order, by=who.user_id, refund_minor=0, reference=None
                )
                await deps.audit.record(
                    actor=who,
                    action="refund_return",
                    outcome="refunded",
                    order_id=order.id,
                    code=order.code,
                    reason=_refund_note(ret, 0, automatic=automatic),
                    client_ip=entry.client_ip,
                    session=session,
                )
                uow.publish(order, "RETURN_UPDATED")  # `Refunds` publishes what it completes
            await uow.commit()
        if refund is not None:
            await self._send(refund, who, ret, order, entry.client_ip)
            view = await self._reread(ret, order.code)
        log.info("return refunded", extra={"user": who.public_id})
        return view

    async def _send(
        self, refund: PaymentRefund, who: Viewer, ret: ReturnRequest, order: Order, client_ip: str
    ) -> None:
        """The provider call, no transaction open. When it fails the refund stays PENDING
        and the return RECEIVED: a retry sends the same refund, with the same key."""
        try:
            await self._deps.refunds.send(refund)
        except ServiceUnavailable:
            await self._deps.audit.record(
                actor=who,
                action="refund_return",
                outcome="provider_unavailable",
                order_id=order.id,
                code=order.code,
                reason=f"RMA {codes.mask(ret.rma_code)}",
                client_ip=client_ip,
            )
            raise

    async def _reread(self, ret: ReturnRequest, order_code: str) -> ReturnView:
        """The return as the completing transaction left it."""
        async with self._deps.db.read() as session:
            now = await session.get(ReturnRequest, ret.id)
            assert now is not None
            return await view_of(session, now, order_code)

    @staticmethod
    async def _refund_to_send(
        session: AsyncSession,
        ret: ReturnRequest,
        order: Order,
        who: Viewer,
        *,
        automatic: bool,
    ) -> PaymentRefund | None:
        """The return's refund, written PENDING in `session` (the caller commits), or the
        one written by an earlier attempt whose provider call failed; None when nothing is
        left to pay back. CONFLICT unless the return is RECEIVED."""
        key = f"return-refund:{ret.rma_code}"
        earlier = await Refunds.by_key(session, key)
        if earlier is not None:
            # Sent before and not confirmed: the same amount and key (the provider may
            # have moved the money already). Whoever sends it now is who asked for it:
            # an admin retrying a failed automatic refund is audited as that admin.
            earlier.requested_by, earlier.automatic = who.user_id, automatic
            return earlier
        status_after(ReturnStatus(ret.status), ReturnAction.REFUND)
        rows = await return_rows(session, ret)
        quote = refund_quote(
            [(line.unit_price_minor, row.received_quantity or 0) for row, line in rows],
            ordered_units=await ordered_units(session, order),
            units_refunded_before=await units_refunded(session, order),
            order_shipping_minor=order.shipping_minor,
            paid_minor=order.total_minor,
            # What the order records as refunded, plus what is on its way: a refund in
            # flight counts against what may still be refunded.
            refunded_before_minor=await Refunds.committed_minor(session, order),
        )
        if quote.amount_minor == 0:
            return None
        return Refunds.add(
            session,
            order=order,
            reason=REFUND_REASON,
            key=key,
            amount_minor=quote.amount_minor,
            return_id=ret.id,
            requested_by=who.user_id,
            automatic=automatic,
        )

    async def refund_done(
        self, session: AsyncSession, refund: PaymentRefund, made: Refund
    ) -> str | None:
        """The second half of a return's refund, in the transaction that completes it
        (`Refunds` has marked it DONE and added it to the order's refunded amount, and
        commits and publishes): the return becomes REFUNDED, the customer is emailed, and
        the step is audited in the name of whoever asked for the refund."""
        assert refund.return_id is not None
        ret = await session.get(ReturnRequest, refund.return_id)
        order = await session.get(Order, refund.order_id)
        assert ret is not None and order is not None
        # `Refunds` owns this transaction: a unit of work over it only to queue the email.
        await self._mark_refunded(
            UnitOfWork(session),
            ret,
            order,
            by=refund.requested_by,
            refund_minor=refund.amount_minor,
            reference=made.reference,
        )
        role = None
        if refund.requested_by is not None:
            role = (
                await session.execute(
                    select(col(User.role)).where(col(User.id) == refund.requested_by)
                )
            ).scalar_one_or_none()
        await self._deps.audit.record(
            actor=None,
            actor_user_id=refund.requested_by,
            actor_role=role,
            action="refund_return",
            outcome="refunded",
            order_id=order.id,
            code=order.code,
            reason=_refund_note(ret, refund.amount_minor, automatic=refund.automatic),
            session=session,
        )
        return "RETURN_UPDATED"

    async def _mark_refunded(
        self,
        uow: UnitOfWork,
        ret: ReturnRequest,
        order: Order,
        *,
        by: int | None,
        refund_minor: int,
        reference: str | None,
    ) -> ReturnView:
        """RECEIVED → REFUNDED (compare-and-set), and the customer's email."""
        session = uow.session
        new = status_after(ReturnStatus(ret.status), ReturnAction.REFUND)
        await move_return(
            session,
            ret,
            new,
            refunded_at=utcnow(),
            refunded_by=by,
            refund_minor=refund_minor,
            refund_reference=reference,
        )
        view = await view_of(session, ret, order.code)
        recipient = await owner_email(session, order)
        queue_email(
            uow, "return_refunded", view, order, recipient, self._deps.settings.return_window_days
        )
        return view


def _refund_note(ret: ReturnRequest, amount_minor: int, *, automatic: bool) -> str:
    """The audit reason of a refund step."""
    note = f"RMA {codes.mask(ret.rma_code)}: {amount_minor} {ret.currency}"
    return note + (" (automatic on receipt)" if automatic else "")

"""Return use cases: eligibility, the customer's request, the staff steps (approve, reject,
receive, refund) and the batch reads behind the API. The only place that commits returns.

Doors (DESIGN §3): every call that takes an order code or an RMA code goes through
`CodeLookups.begin` first (authenticated, charged to the limiter once, code normalised).
* Customer doors (`returnEligibility`, `requestReturn`, `returnRequest`): one query filters
  by code *and* owner, so another customer's code or RMA answers exactly like an unknown
  one (ORDER_NOT_FOUND), and ownership is settled before anything about the order's state
  (delivered? window? already returned?) is said. Staff read any return by its RMA.
* Staff doors: the role is checked right after the gate, before any database access, so a
  caller without it gets FORBIDDEN whatever the RMA. SUPPORT and ADMIN decide (approve,
  reject), WAREHOUSE and ADMIN receive, ADMIN refunds (or the receipt does, when
  AUTO_REFUND_ON_RECEIPT is on).

Every change locks the order row (SELECT ... FOR UPDATE on PostgreSQL; SQLite writers are
serialised by BEGIN IMMEDIATE) and reads what is free to return *inside* that transaction,
so concurrent requests can never together return more than was delivered. A miss (no
such order, no such RMA) is counted against the caller and audited after the transaction
has ended: the limiter is Redis and the audit entry commits on its own.

Refunds go through `app/payments/refunds.py`, never calling the provider inside a
transaction: the deciding transaction writes the refund (PENDING, idempotency key derived
from the RMA) and commits; the provider is called after it; the completing transaction
marks the refund DONE and runs `_refund_done` (the return becomes REFUNDED, its email and
audit entry are written). If the provider fails, the return stays RECEIVED with its refund
PENDING, and a retry (refundReturn, or the reconciler) sends the same refund again with
the same key: money moves once.
"""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col

from app.accounts.models import User
from app.audit.service import AuditLog
from app.db import Database, as_models, utcnow
from app.errors import (
    BadUserInput,
    Conflict,
    DomainError,
    Forbidden,
    OrderNotFound,
    ServiceUnavailable,
)
from app.events.broker import Broker, order_topic
from app.notifications import templates
from app.notifications.outbox import enqueue_email
from app.orders.models import Order, OrderLine, OrderStatus
from app.payments.models import PaymentRefund, RefundStatus
from app.payments.provider import Refund
from app.payments.refunds import Refunds
from app.returns.inputs import (
    ReturnLineRequest,
    clean_comment,
    clean_lines,
    clean_reason,
    clean_rejection_reason,
)
from app.returns.models import ReturnLine, ReturnRequest, ReturnStatus
from app.returns.rules import (
    Ineligibility,
    LineEligibility,
    Parcel,
    ReturnAction,
    allocate,
    committed_units,
    line_eligibility,
    order_status_with_returns,
    refund_quote,
    status_after,
)
from app.security import codes
from app.security.lookups import CodeLookups
from app.security.policy import Viewer
from app.security.roles import Role
from app.settings import Settings
from app.shipments.models import Shipment, ShipmentLine, ShipmentStatus

log = logging.getLogger("app.returns")

# The batch reads behind the API's loaders, prebuilt (Database.fetch_all runs them).
_RETURN = ReturnRequest.__table__
_RETURNS_OF_ORDERS = (
    select(*_RETURN.columns)
    .where(_RETURN.c.order_id.in_(bindparam("ids", expanding=True)))
    .order_by(_RETURN.c.requested_at, _RETURN.c.id)
)
_LINES_OF_RETURNS = (
    select(
        ReturnLine.__table__.c.return_id,
        ReturnLine.__table__.c.quantity,
        ReturnLine.__table__.c.received_quantity,
        OrderLine.__table__.c.id,
        OrderLine.__table__.c.sku,
        OrderLine.__table__.c.name,
        OrderLine.__table__.c.unit_price_minor,
    )
    .join(OrderLine.__table__, OrderLine.__table__.c.id == ReturnLine.__table__.c.order_line_id)
    .where(ReturnLine.__table__.c.return_id.in_(bindparam("ids", expanding=True)))
    .order_by(OrderLine.__table__.c.id, ReturnLine.__table__.c.id)
)

# DESIGN §3 "returns admin".
RETURN_READERS = (Role.SUPPORT, Role.WAREHOUSE, Role.ADMIN)
RETURN_DECIDERS = (Role.SUPPORT, Role.ADMIN)
RETURN_RECEIVERS = (Role.WAREHOUSE, Role.ADMIN)
RETURN_REFUNDERS = (Role.ADMIN,)
# Where customers send their parcels (printed in the return emails).
RETURN_ADDRESS = ["Orders Returns", "Dock 3, 1 Warehouse Road", "10115 Berlin", "DE"]
_COUNTED = (ReturnStatus.RECEIVED.value, ReturnStatus.REFUNDED.value)
# `PaymentRefund.reason` of a return's refund: `Refunds` runs `_refund_done` for it.
REFUND_REASON = "return"


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


@dataclass(frozen=True)
class _OrderState:
    lines: list[OrderLine]
    parcels: list[Parcel]

    def line_by_sku(self) -> dict[str, OrderLine]:
        return {line.sku.upper(): line for line in self.lines}


class _NoMatch(Exception):
    """The code or RMA matches nothing the caller may see. Raised inside a transaction and
    handled after it has ended: the failure is counted (Redis) and audited (a transaction
    of its own) outside it."""


async def returned_units(session: AsyncSession, order_id: int) -> int:
    """Units of an order that came back (received returns)."""
    total = (
        await session.execute(
            select(func.coalesce(func.sum(ReturnLine.received_quantity), 0))
            .join(ReturnRequest, col(ReturnRequest.id) == ReturnLine.return_id)
            .where(col(ReturnRequest.order_id) == order_id, col(ReturnRequest.status).in_(_COUNTED))
        )
    ).scalar_one()
    return int(total)


class ReturnService:
    def __init__(
        self,
        db: Database,
        refunds: Refunds,
        lookups: CodeLookups,
        audit: AuditLog,
        events: Broker,
        settings: Settings,
    ) -> None:
        self._db = db
        self._refunds = refunds
        self._lookups = lookups
        self._audit = audit
        self._events = events
        self._settings = settings
        refunds.on_done(REFUND_REASON, self._refund_done)

    # -- doors -----------------------------------------------------------------------------
    @staticmethod
    async def _owned_order(session: AsyncSession, code: str, who: Viewer, *, lock: bool) -> Order:
        """By code *and* owner in one query: not found and not yours are one answer
        (`_NoMatch`)."""
        query = select(Order).where(col(Order.code) == code, col(Order.user_id) == who.user_id)
        if lock:
            query = query.with_for_update()
        order: Order | None = (await session.execute(query)).scalar_one_or_none()
        if order is None:
            raise _NoMatch()
        return order

    async def _staff_door(
        self, viewer: Viewer | None, raw_rma: str, client_ip: str, roles: tuple[Role, ...]
    ) -> tuple[Viewer, str]:
        """The gate (charged once), then the role: FORBIDDEN before any database access,
        the same answer for a real and an unknown RMA."""
        who, rma = await self._lookups.begin(viewer, raw_rma, client_ip, staff_roles=roles)
        if who.role not in roles:
            raise Forbidden()
        return who, rma

    @contextlib.asynccontextmanager
    async def _locked(
        self, who: Viewer, rma: str, client_ip: str, door: str
    ) -> AsyncIterator[tuple[AsyncSession, ReturnRequest, Order]]:
        """A staff step's transaction, holding the return and its locked order (the caller
        commits). An RMA that matches nothing is a failed lookup, counted and audited once
        the transaction has ended."""
        try:
            async with self._db.write() as session:
                ret, order = await self._locked_return(session, rma)
                yield session, ret, order
        except _NoMatch:
            await self._lookups.failed(who, client_ip, staff=True)
            await self._not_found(who, rma, client_ip, door)
            raise OrderNotFound() from None

    @staticmethod
    async def _locked_return(session: AsyncSession, rma: str) -> tuple[ReturnRequest, Order]:
        """The return and its order, with the order row locked (the return read after)."""
        found = (
            await session.execute(
                select(ReturnRequest.id, ReturnRequest.order_id).where(
                    col(ReturnRequest.rma_code) == rma
                )
            )
        ).one_or_none()
        if found is None:
            raise _NoMatch()
        return_id, order_id = found
        order = (
            await session.execute(select(Order).where(col(Order.id) == order_id).with_for_update())
        ).scalar_one()
        ret = (
            await session.execute(
                select(ReturnRequest)
                .where(col(ReturnRequest.id) == return_id)
                .execution_options(populate_existing=True)
            )
        ).scalar_one()
        return ret, order

    # -- state -----------------------------------------------------------------------------
    @staticmethod
    async def _state(session: AsyncSession, order: Order) -> _OrderState:
        assert order.id is not None
        lines = list(
            (
                await session.execute(
                    select(OrderLine)
                    .where(col(OrderLine.order_id) == order.id)
                    .order_by(col(OrderLine.id))
                )
            ).scalars()
        )
        shipped: dict[tuple[int, int], int] = defaultdict(int)
        delivered_at: dict[int, datetime | None] = {}
        for line_id, shipment_id, quantity, status, when in (
            await session.execute(
                select(
                    ShipmentLine.order_line_id,
                    Shipment.id,
                    ShipmentLine.quantity,
                    Shipment.status,
                    Shipment.delivered_at,
                )
                .join(Shipment, col(Shipment.id) == ShipmentLine.shipment_id)
                .where(col(Shipment.order_id) == order.id)
            )
        ).all():
            shipped[(line_id, shipment_id)] += quantity
            delivered_at[shipment_id] = when if status == ShipmentStatus.DELIVERED.value else None
        committed: dict[tuple[int, int], int] = defaultdict(int)
        for line_id, shipment_id, quantity, received, status in (
            await session.execute(
                select(
                    ReturnLine.order_line_id,
                    ReturnLine.shipment_id,
                    ReturnLine.quantity,
                    ReturnLine.received_quantity,
                    ReturnRequest.status,
                )
                .join(ReturnRequest, col(ReturnRequest.id) == ReturnLine.return_id)
                .where(col(ReturnRequest.order_id) == order.id)
            )
        ).all():
            committed[(line_id, shipment_id)] += committed_units(
                ReturnStatus(status), quantity, received
            )
        parcels = [
            Parcel(
                order_line_id=line_id,
                shipment_id=shipment_id,
                quantity=quantity,
                delivered_at=delivered_at[shipment_id],
                committed=committed.get((line_id, shipment_id), 0),
            )
            for (line_id, shipment_id), quantity in sorted(shipped.items())
        ]
        return _OrderState(lines, parcels)

    def _eligibility(self, state: _OrderState, now: datetime) -> dict[int, LineEligibility]:
        window = self._settings.return_window_days
        return {
            line.id or 0: line_eligibility(line.id or 0, line.quantity, state.parcels, now, window)
            for line in state.lines
        }

    # -- the customer --------------------------------------------------------------------
    async def eligibility(
        self, viewer: Viewer | None, raw_code: str, client_ip: str
    ) -> EligibilityView:
        """`returnEligibility(code)`: per line, how many units may be returned, or why not."""
        who, code = await self._lookups.begin(viewer, raw_code, client_ip)
        try:
            async with self._db.read() as session:
                order = await self._owned_order(session, code, who, lock=False)
                state = await self._state(session, order)
        except _NoMatch:
            await self._lookups.failed(who, client_ip)
            raise OrderNotFound() from None
        found = self._eligibility(state, utcnow())
        return EligibilityView(
            order=order,
            window_days=self._settings.return_window_days,
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
        who, code = await self._lookups.begin(viewer, raw_code, client_ip)
        try:
            async with self._db.write() as session:
                # Ownership first: nothing below is said to anyone but the owner.
                order = await self._owned_order(session, code, who, lock=True)
                view = await self._create_return(session, order, who, lines, reason, comment)
                await session.commit()
        except _NoMatch:
            await self._lookups.failed(who, client_ip)
            raise OrderNotFound() from None
        log.info("return requested", extra={"code": codes.mask(order.code)})
        self._publish(order)
        return view

    async def _create_return(
        self,
        session: AsyncSession,
        order: Order,
        who: Viewer,
        lines: list[ReturnLineRequest],
        reason: str,
        comment: str | None,
    ) -> ReturnView:
        requests = clean_lines(lines)
        why = clean_reason(reason)
        note = clean_comment(comment)
        state = await self._state(session, order)
        now = utcnow()
        window = self._settings.return_window_days
        found = self._eligibility(state, now)
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
            rma_code=await self._fresh_rma(session),
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
        view = await self._view(session, ret, order.code)
        self._email(session, "return_requested", view, order, who.email)
        return view

    async def get_return(self, viewer: Viewer | None, raw_rma: str, client_ip: str) -> ReturnView:
        """`returnRequest(rma)`: the owner's return, or any return for staff."""
        who, rma = await self._lookups.begin(viewer, raw_rma, client_ip, staff_roles=RETURN_READERS)
        staff = who.role in RETURN_READERS
        query = (
            select(ReturnRequest, Order.code, Order.user_id)
            .join(Order, col(Order.id) == ReturnRequest.order_id)
            .where(col(ReturnRequest.rma_code) == rma)
        )
        if not staff:
            query = query.where(col(Order.user_id) == who.user_id)
        async with self._db.read() as session:
            row = (await session.execute(query)).one_or_none()
            lines = [] if row is None else (await self._lines(session, [row[0].id]))[row[0].id]
        if row is None:
            await self._lookups.failed(who, client_ip, staff=staff)
            if staff:
                await self._not_found(who, rma, client_ip, "return_lookup")
            raise OrderNotFound()
        ret, order_code, owner_id = row
        if staff and owner_id != who.user_id:
            await self._audit.record(
                actor=who,
                action="return_lookup",
                outcome="found",
                order_id=ret.order_id,
                code=order_code,
                reason=f"RMA {codes.mask(rma)}",
                client_ip=client_ip,
            )
        return ReturnView(ret, order_code, lines)

    # -- staff -----------------------------------------------------------------------------
    async def approve(self, viewer: Viewer | None, raw_rma: str, client_ip: str) -> ReturnView:
        who, rma = await self._staff_door(viewer, raw_rma, client_ip, RETURN_DECIDERS)
        return await self._decide(who, rma, client_ip, ReturnAction.APPROVE, None)

    async def reject(
        self, viewer: Viewer | None, raw_rma: str, client_ip: str, reason: str
    ) -> ReturnView:
        who, rma = await self._staff_door(viewer, raw_rma, client_ip, RETURN_DECIDERS)
        return await self._decide(
            who, rma, client_ip, ReturnAction.REJECT, clean_rejection_reason(reason)
        )

    async def _decide(
        self,
        who: Viewer,
        rma: str,
        client_ip: str,
        action: ReturnAction,
        rejection: str | None,
    ) -> ReturnView:
        door = f"{action.value.lower()}_return"
        async with self._locked(who, rma, client_ip, door) as (session, ret, order):
            new = status_after(ReturnStatus(ret.status), action)
            now = utcnow()
            if action is ReturnAction.APPROVE:
                await self._move(session, ret, new, approved_at=now, approved_by=who.user_id)
            else:
                await self._move(
                    session,
                    ret,
                    new,
                    rejected_at=now,
                    rejected_by=who.user_id,
                    rejection_reason=rejection,
                )
            view = await self._view(session, ret, order.code)
            kind = "return_approved" if action is ReturnAction.APPROVE else "return_rejected"
            self._email(session, kind, view, order, await self._owner_email(session, order))
            await self._audit.record(
                actor=who,
                action=door,
                outcome=new.value.lower(),
                order_id=order.id,
                code=order.code,
                reason=f"RMA {codes.mask(rma)}" + (f": {rejection}" if rejection else ""),
                client_ip=client_ip,
                session=session,
            )
            await session.commit()
        log.info("return decided", extra={"status": new.value, "user": who.public_id})
        self._publish(order)
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
        who, rma = await self._staff_door(viewer, raw_rma, client_ip, RETURN_RECEIVERS)
        counted = clean_lines(lines, allow_zero=True)
        async with self._locked(who, rma, client_ip, "receive_return") as (session, ret, order):
            new = status_after(ReturnStatus(ret.status), ReturnAction.RECEIVE)
            rows = await self._return_rows(session, ret)
            await self._apply_receipt(session, rows, counted)
            now = utcnow()
            await self._move(session, ret, new, received_at=now, received_by=who.user_id)
            current = OrderStatus(order.status)
            status = order_status_with_returns(
                current,
                await self._ordered_units(session, order),
                await returned_units(session, order.id or 0),
            )
            if status is not current:
                await self._move_order(session, order, status)
            view = await self._view(session, ret, order.code)
            self._email(
                session, "return_received", view, order, await self._owner_email(session, order)
            )
            await self._audit.record(
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
            await session.commit()
        log.info("return received", extra={"user": who.public_id, "status": order.status})
        self._publish(order)
        if not self._settings.auto_refund_on_receipt:
            return view
        try:
            return await self._refund(who, rma, client_ip, automatic=True)
        except DomainError as error:
            # The receipt stands; the return stays RECEIVED and an ADMIN retries the refund.
            log.warning("automatic refund failed", extra={"error": error.code.value})
            return view

    async def refund(self, viewer: Viewer | None, raw_rma: str, client_ip: str) -> ReturnView:
        """Refund a received return once. Repeating it answers with the refund made."""
        who, rma = await self._staff_door(viewer, raw_rma, client_ip, RETURN_REFUNDERS)
        return await self._refund(who, rma, client_ip, automatic=False)

    async def _refund(
        self, who: Viewer, rma: str, client_ip: str, *, automatic: bool
    ) -> ReturnView:
        """Decide (or find the refund decided before) and commit; then send it to the
        provider, no transaction open. `Refunds` completes it and runs `_refund_done`, which
        makes the return REFUNDED; the answer is the return as it now is."""
        async with self._locked(who, rma, client_ip, "refund_return") as (session, ret, order):
            if ret.status == ReturnStatus.REFUNDED.value:  # the same request again: done once
                return await self._view(session, ret, order.code)
            refund = await self._refund_to_send(session, ret, order, who, automatic=automatic)
            if refund is None:
                # Nothing left to pay back: refunded here and now, no provider involved.
                view = await self._mark_refunded(
                    session, ret, order, by=who.user_id, refund_minor=0, reference=None
                )
                await self._audit.record(
                    actor=who,
                    action="refund_return",
                    outcome="refunded",
                    order_id=order.id,
                    code=order.code,
                    reason=_refund_note(ret, 0, automatic=automatic),
                    client_ip=client_ip,
                    session=session,
                )
            await session.commit()
        if refund is None:
            self._publish(order)  # `Refunds` publishes the completions it makes
        else:
            await self._send(refund, who, ret, order, client_ip)
            view = await self._reread(ret, order.code)
        log.info("return refunded", extra={"user": who.public_id})
        return view

    async def _send(
        self, refund: PaymentRefund, who: Viewer, ret: ReturnRequest, order: Order, client_ip: str
    ) -> None:
        """The provider call, no transaction open. When it fails the refund stays PENDING
        and the return RECEIVED: a retry sends the same refund, with the same key."""
        try:
            await self._refunds.send(refund)
        except ServiceUnavailable:
            await self._audit.record(
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
        async with self._db.read() as session:
            now = await session.get(ReturnRequest, ret.id)
            assert now is not None
            return await self._view(session, now, order_code)

    async def _refund_to_send(
        self,
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
        rows = await self._return_rows(session, ret)
        quote = refund_quote(
            [(line.unit_price_minor, row.received_quantity or 0) for row, line in rows],
            ordered_units=await self._ordered_units(session, order),
            units_refunded_before=await self._units_refunded(session, order),
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

    async def _refund_done(
        self, session: AsyncSession, refund: PaymentRefund, made: Refund
    ) -> str | None:
        """The second half of a return's refund, in the transaction that completes it
        (`Refunds` has marked it DONE and added it to the order's refunded amount): the
        return becomes REFUNDED, the customer is emailed, and the step is audited in the
        name of whoever asked for the refund."""
        assert refund.return_id is not None
        ret = await session.get(ReturnRequest, refund.return_id)
        order = await session.get(Order, refund.order_id)
        assert ret is not None and order is not None
        await self._mark_refunded(
            session,
            ret,
            order,
            by=refund.requested_by,
            refund_minor=refund.amount_minor,
            reference=made.reference,
        )
        role = None
        if refund.requested_by is not None:
            role = (
                await session.execute(select(User.role).where(col(User.id) == refund.requested_by))
            ).scalar_one_or_none()
        await self._audit.record(
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
        session: AsyncSession,
        ret: ReturnRequest,
        order: Order,
        *,
        by: int | None,
        refund_minor: int,
        reference: str | None,
    ) -> ReturnView:
        """RECEIVED → REFUNDED (compare-and-set), and the customer's email."""
        new = status_after(ReturnStatus(ret.status), ReturnAction.REFUND)
        await self._move(
            session,
            ret,
            new,
            refunded_at=utcnow(),
            refunded_by=by,
            refund_minor=refund_minor,
            refund_reference=reference,
        )
        view = await self._view(session, ret, order.code)
        self._email(
            session, "return_refunded", view, order, await self._owner_email(session, order)
        )
        return view

    # -- helpers ---------------------------------------------------------------------------
    async def _not_found(self, who: Viewer, rma: str, client_ip: str, door: str) -> None:
        """A staff member tried an RMA that matches no return (own transaction)."""
        await self._audit.record(
            actor=who,
            action=door,
            outcome="not_found",
            reason=f"RMA {codes.mask(rma)}",
            client_ip=client_ip,
        )

    async def _view(self, session: AsyncSession, ret: ReturnRequest, order_code: str) -> ReturnView:
        lines = await self._lines(session, [ret.id or 0])
        return ReturnView(ret, order_code, lines[ret.id or 0])

    @staticmethod
    async def _fresh_rma(session: AsyncSession) -> str:
        while True:  # 75 random bits: a collision is astronomically rare, but handled
            rma = codes.generate()
            taken = (
                await session.execute(
                    select(ReturnRequest.id).where(col(ReturnRequest.rma_code) == rma)
                )
            ).first()
            if taken is None:
                return rma

    @staticmethod
    async def _move(
        session: AsyncSession, ret: ReturnRequest, new: ReturnStatus, **values: object
    ) -> None:
        """Compare-and-set on the status: a change that raced us is refused, not lost."""
        now = utcnow()
        changed = await session.execute(
            update(ReturnRequest)
            .where(col(ReturnRequest.id) == ret.id, col(ReturnRequest.status) == ret.status)
            .values(status=new.value, updated_at=now, **values)
        )
        if changed.rowcount != 1:  # type: ignore[attr-defined]
            raise Conflict("The return changed meanwhile; try again.", field="rma")
        for key, value in {"status": new.value, "updated_at": now, **values}.items():
            set_committed_value(ret, key, value)

    @staticmethod
    async def _move_order(session: AsyncSession, order: Order, new: OrderStatus) -> None:
        changed = await session.execute(
            update(Order)
            .where(col(Order.id) == order.id, col(Order.status) == order.status)
            .values(status=new.value, updated_at=utcnow())
        )
        if changed.rowcount != 1:  # type: ignore[attr-defined]
            raise Conflict("The order changed meanwhile; try again.", field="rma")
        set_committed_value(order, "status", new.value)

    @staticmethod
    async def _return_rows(
        session: AsyncSession, ret: ReturnRequest
    ) -> list[tuple[ReturnLine, OrderLine]]:
        return [
            (row, line)
            for row, line in (
                await session.execute(
                    select(ReturnLine, OrderLine)
                    .join(OrderLine, col(OrderLine.id) == ReturnLine.order_line_id)
                    .where(col(ReturnLine.return_id) == ret.id)
                    .order_by(col(ReturnLine.id))
                )
            ).all()
        ]

    @staticmethod
    async def _apply_receipt(
        session: AsyncSession,
        rows: list[tuple[ReturnLine, OrderLine]],
        counted: list[ReturnLineRequest],
    ) -> None:
        """Spread the units counted per SKU over the return's lines (no more than asked
        for); a line not counted came back empty."""
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

    @staticmethod
    async def _ordered_units(session: AsyncSession, order: Order) -> int:
        total = (
            await session.execute(
                select(func.coalesce(func.sum(OrderLine.quantity), 0)).where(
                    col(OrderLine.order_id) == order.id
                )
            )
        ).scalar_one()
        return int(total)

    @staticmethod
    async def _units_refunded(session: AsyncSession, order: Order) -> int:
        """Units of returns refunded, or whose refund is on its way."""
        in_flight = select(PaymentRefund.return_id).where(
            col(PaymentRefund.order_id) == order.id,
            col(PaymentRefund.status) == RefundStatus.PENDING.value,
        )
        total = (
            await session.execute(
                select(func.coalesce(func.sum(ReturnLine.received_quantity), 0))
                .join(ReturnRequest, col(ReturnRequest.id) == ReturnLine.return_id)
                .where(
                    col(ReturnRequest.order_id) == order.id,
                    or_(
                        col(ReturnRequest.status) == ReturnStatus.REFUNDED.value,
                        col(ReturnRequest.id).in_(in_flight),
                    ),
                )
            )
        ).scalar_one()
        return int(total)

    @staticmethod
    async def _owner_email(session: AsyncSession, order: Order) -> str:
        return str(
            (
                await session.execute(select(User.email).where(col(User.id) == order.user_id))
            ).scalar_one()
        )

    def _email(
        self, session: AsyncSession, kind: str, view: ReturnView, order: Order, recipient: str
    ) -> None:
        ret = view.request
        subject, body = templates.render(
            kind,
            {
                "code": codes.display(order.code),
                "rma": codes.display(ret.rma_code),
                "name": order.ship_name,
                "lines": [
                    {
                        "sku": line.sku,
                        "name": line.name,
                        "quantity": line.quantity,
                        "received_quantity": line.received_quantity,
                    }
                    for line in view.lines
                ],
                "reason": ret.reason,
                "rejection_reason": ret.rejection_reason or "",
                "window_days": self._settings.return_window_days,
                "return_address": RETURN_ADDRESS,
                "refund_minor": ret.refund_minor or 0,
                "currency": ret.currency,
            },
        )
        enqueue_email(
            session,
            kind=kind,
            recipient=recipient,
            subject=subject,
            body_text=body,
            dedupe_key=f"{kind.replace('_', '-')}.{ret.rma_code}",
        )

    def _publish(self, order: Order) -> None:
        """Tell orderUpdates subscribers (after the commit); they re-read the order."""
        assert order.id is not None
        self._events.publish(
            order_topic(order.id), {"type": "RETURN_UPDATED", "status": order.status}
        )

    # -- batch reads (loaders) -------------------------------------------------------------
    async def returns_for_orders(self, order_ids: list[int]) -> dict[int, list[ReturnRequest]]:
        result: dict[int, list[ReturnRequest]] = {order_id: [] for order_id in order_ids}
        rows = await self._db.fetch_all(_RETURNS_OF_ORDERS, {"ids": order_ids})
        for row in as_models(ReturnRequest, _RETURNS_OF_ORDERS, rows):
            result[row.order_id].append(row)
        return result

    async def lines_for_returns(self, return_ids: list[int]) -> dict[int, list[ReturnedLine]]:
        rows = await self._db.fetch_all(_LINES_OF_RETURNS, {"ids": return_ids})
        return _returned_lines(return_ids, rows)

    @staticmethod
    async def _lines(session: AsyncSession, return_ids: list[int]) -> dict[int, list[ReturnedLine]]:
        """The same inside a transaction (its own changes included)."""
        rows = (await session.execute(_LINES_OF_RETURNS, {"ids": return_ids})).all()
        return _returned_lines(return_ids, rows)


def _returned_lines(
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


def _refund_note(ret: ReturnRequest, amount_minor: int, *, automatic: bool) -> str:
    """The audit reason of a refund step."""
    note = f"RMA {codes.mask(ret.rma_code)}: {amount_minor} {ret.currency}"
    return note + (" (automatic on receipt)" if automatic else "")


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

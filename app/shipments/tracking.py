"""Tracking events: staff record one by hand (addTrackingEvent), carriers through the signed
webhook. Both apply the same rules: an event is recorded once per carrier event id, moves
the parcel and the order on, and queues the milestone email of the customer who wants it."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.accounts.models import User
from app.db import utcnow
from app.errors import BadUserInput
from app.metrics import delivery_counted
from app.notifications import templates
from app.notifications.models import OutboxEmail
from app.notifications.preferences import milestone_emails_wanted
from app.orders import address_lines
from app.orders.models import Order, OrderStatus
from app.returns import order_status_with_returns, returned_units
from app.security import codes
from app.security.policy import Viewer
from app.shipments.fulfilment import ADD_TRACKING_EVENT, Fulfilment, counts, find_order, move_order
from app.shipments.inputs import (
    CleanEvent,
    EventInput,
    clean_carrier,
    clean_event,
    clean_tracking_number,
)
from app.shipments.models import EventSource, Shipment, ShipmentStatus, TrackingEvent
from app.shipments.results import Applied, CarrierOutcome, EventResult, tracking_fingerprint
from app.shipments.transitions import (
    IllegalTransition,
    Step,
    order_estimate,
    order_status_after,
    shipment_status_after,
)
from app.tracking import load_places
from app.unit_of_work import UnitOfWork

log = logging.getLogger("app.shipments")

# The email each milestone of a parcel sends (app/notifications/templates/<kind>.*).
MILESTONE_EMAILS: dict[ShipmentStatus, str] = {
    ShipmentStatus.OUT_FOR_DELIVERY: "shipment_out_for_delivery",
    ShipmentStatus.DELAYED: "shipment_delayed",
    ShipmentStatus.ATTEMPTED_DELIVERY: "shipment_attempted",
    ShipmentStatus.EXCEPTION: "shipment_exception",
    ShipmentStatus.DELIVERED: "shipment_delivered",
}


class TrackingEvents:
    def __init__(self, deps: Fulfilment) -> None:
        self._deps = deps

    async def add_tracking_event(
        self,
        viewer: Viewer | None,
        raw_code: str,
        client_ip: str,
        carrier: str,
        tracking_number: str,
        event: EventInput,
    ) -> EventResult:
        """Staff record an event by hand: the same rules as the carrier webhook. Without an
        event id, one is made up (so the call is not idempotent; pass one to make it so)."""
        deps = self._deps
        entry = await deps.doors.enter(ADD_TRACKING_EVENT, viewer, raw_code, client_ip)
        who = entry.who
        carrier = clean_carrier(carrier)
        tracking = clean_tracking_number(tracking_number)
        await load_places()
        now = utcnow()
        clean = clean_event(event, now=now, default_event_id=f"staff-{uuid.uuid4().hex}")
        async with entry.misses(), deps.units.begin() as uow:
            session = uow.session
            order = await find_order(session, entry.code, lock=True)
            shipment = (
                await session.execute(
                    select(Shipment).where(
                        col(Shipment.order_id) == order.id,
                        col(Shipment.carrier) == carrier,
                        col(Shipment.tracking_number) == tracking,
                    )
                )
            ).scalar_one_or_none()
            if shipment is None:
                raise BadUserInput(
                    "This order has no shipment with this carrier and tracking number.",
                    field="trackingNumber",
                )
            applied = await self._apply_event(uow, order, shipment, clean, EventSource.STAFF, who)
            await deps.audit.record(
                actor=who,
                action="add_tracking_event",
                outcome="recorded" if applied.recorded else "duplicate",
                order_id=order.id,
                code=order.code,
                reason=f"{carrier} {clean.status.value}",
                client_ip=client_ip,
                session=session,
            )
            await uow.commit()
        if applied.recorded:
            _count_delivery(shipment, applied)
        return EventResult(order, shipment, applied.recorded)

    async def record_carrier_event(
        self, carrier: str, tracking_number: str, event: EventInput
    ) -> CarrierOutcome:
        """An event from the (already authenticated) carrier webhook. The caller answers
        every outcome the same way, so whether a tracking number exists is never told."""
        carrier = clean_carrier(carrier)
        tracking = clean_tracking_number(tracking_number)
        await load_places()
        clean = clean_event(event, now=utcnow(), default_event_id=None)
        try:
            async with self._deps.units.begin() as uow:
                session = uow.session
                shipment = (
                    await session.execute(
                        select(Shipment).where(
                            col(Shipment.carrier) == carrier,
                            col(Shipment.tracking_number) == tracking,
                        )
                    )
                ).scalar_one_or_none()
                if shipment is None:
                    log.warning(
                        "carrier event for an unknown shipment",
                        extra={
                            "carrier": carrier,
                            "tracking": tracking_fingerprint(carrier, tracking),
                        },
                    )
                    return CarrierOutcome.UNKNOWN_SHIPMENT
                order = (
                    await session.execute(
                        select(Order).where(col(Order.id) == shipment.order_id).with_for_update()
                    )
                ).scalar_one()
                await session.refresh(shipment)  # as of the lock
                applied = await self._apply_event(
                    uow, order, shipment, clean, EventSource.CARRIER, None
                )
                await uow.commit()
        except IntegrityError:
            return CarrierOutcome.DUPLICATE  # the same event delivered twice at once
        if not applied.recorded:
            return CarrierOutcome.DUPLICATE
        _count_delivery(shipment, applied)
        return CarrierOutcome.RECORDED

    async def _apply_event(
        self,
        uow: UnitOfWork,
        order: Order,
        shipment: Shipment,
        event: CleanEvent,
        source: EventSource,
        by: Viewer | None,
    ) -> Applied:
        """Record the event once (per carrier event id) and move shipment and order on.
        A recorded event tells live subscribers after the commit (the subscription adds
        STATUS_CHANGED when the order's status moved)."""
        session = uow.session
        seen = (
            await session.execute(
                select(col(TrackingEvent.id)).where(
                    col(TrackingEvent.carrier) == shipment.carrier,
                    col(TrackingEvent.carrier_event_id) == event.event_id,
                )
            )
        ).first()
        if seen is not None:
            return Applied(recorded=False)
        now = utcnow()
        session.add(
            TrackingEvent(
                shipment_id=shipment.id or 0,
                carrier=shipment.carrier,
                carrier_event_id=event.event_id,
                status=event.status.value,
                location=event.location,
                town=event.town,
                description=event.description,
                occurred_at=event.occurred_at,
                received_at=now,
                source=source.value,
                recorded_by=by.user_id if by is not None else None,
            )
        )
        before = ShipmentStatus(shipment.status)
        after = shipment_status_after(
            before, shipment.last_event_at, event.status, event.occurred_at
        )
        newest = shipment.last_event_at is None or event.occurred_at >= shipment.last_event_at
        if (
            before is not ShipmentStatus.DELIVERED
            and after is event.status
            and (newest or after is ShipmentStatus.DELIVERED)
        ):
            # The event is the shipment's state now (not an older one arriving late).
            await self._queue_milestone_email(uow, order, shipment, event)
        shipment.status = after.value
        if shipment.last_event_at is None or event.occurred_at > shipment.last_event_at:
            shipment.last_event_at = event.occurred_at
        if event.estimated_delivery is not None and after is not ShipmentStatus.DELIVERED:
            shipment.estimated_delivery = event.estimated_delivery
        delivered_on_time: bool | None = None
        if after is ShipmentStatus.DELIVERED and shipment.delivered_at is None:
            # The carrier's time of the delivery, compared with the date promised at checkout
            shipment.delivered_at = event.occurred_at
            promise = order.promised_delivery or order.estimated_delivery
            delivered_on_time = event.occurred_at.astimezone(UTC).date() <= promise
        shipment.updated_at = now
        session.add(shipment)
        await session.flush()

        found = await counts(session, order)
        progress = found.progress()
        current = OrderStatus(order.status)
        new_status = current
        delivered_at: dict[str, datetime] = {}
        if before is not ShipmentStatus.DELIVERED and after is ShipmentStatus.DELIVERED:
            try:
                new_status = order_status_after(current, Step.DELIVER, progress)
                if new_status is OrderStatus.DELIVERED and order.delivered_at is None:
                    # every parcel is delivered: the order arrived with its last one
                    delivered_at["delivered_at"] = max(
                        s.delivered_at for s in found.shipments if s.delivered_at is not None
                    )
                # Units returned from parcels that arrived earlier keep counting.
                returned = await returned_units(session, order.id or 0)
                new_status = order_status_with_returns(new_status, progress.ordered, returned)
            except IllegalTransition:
                # A carrier's delivery is a fact: keep it on the shipment, leave the order.
                log.warning(
                    "delivery for an order that cannot be delivered",
                    extra={"code": codes.mask(order.code), "status": order.status},
                )
        pending = [
            s.estimated_delivery
            for s in found.shipments
            if s.status != ShipmentStatus.DELIVERED.value and s.estimated_delivery
        ]
        await move_order(
            session,
            order,
            new_status,
            estimated_delivery=order_estimate(
                order.estimated_delivery, pending, progress.shipped >= progress.ordered
            ),
            **delivered_at,
        )
        uow.publish(order, "TRACKING_EVENT")
        return Applied(recorded=True, delivered_on_time=delivered_on_time)

    async def _queue_milestone_email(
        self, uow: UnitOfWork, order: Order, shipment: Shipment, event: CleanEvent
    ) -> None:
        """The milestone email of this event, at most one per milestone and parcel, and only
        for a customer who has not switched milestone emails off. Called before the event
        moves the shipment on (so the estimate it had is still the old one)."""
        session: AsyncSession = uow.session
        kind = MILESTONE_EMAILS.get(event.status)
        if kind is None:
            return
        dedupe_key = f"{kind.replace('_', '-')}.{shipment.id}"
        sent = (
            await session.execute(
                select(col(OutboxEmail.id)).where(col(OutboxEmail.dedupe_key) == dedupe_key)
            )
        ).first()
        if sent is not None or not await milestone_emails_wanted(session, order.user_id):
            return
        email, public_id = (
            await session.execute(
                select(col(User.email), col(User.public_id)).where(col(User.id) == order.user_id)
            )
        ).one()
        occurred = event.occurred_at.astimezone(UTC).date()
        old_estimate = shipment.estimated_delivery or order.estimated_delivery
        data: dict[str, object] = {
            "code": codes.display(order.code),
            "name": order.ship_name,
            "carrier": shipment.carrier,
            "tracking_number": shipment.tracking_number,
            "town": event.town,
            "unsubscribe_user": public_id,
        }
        if event.status is ShipmentStatus.DELAYED:
            data["old_estimate"] = old_estimate.isoformat()
            new = event.estimated_delivery
            data["new_estimate"] = new.isoformat() if new is not None else None
        elif event.status is ShipmentStatus.DELIVERED:
            data["delivered_on"] = occurred.isoformat()
            window = self._deps.return_window_days
            data["return_until"] = (occurred + timedelta(days=window)).isoformat()
            data["address_lines"] = address_lines(order)
        subject, body = templates.render(kind, data)
        uow.email(
            kind=kind,
            recipient=email,
            subject=subject,
            body_text=body,
            dedupe_key=dedupe_key,
        )


def _count_delivery(shipment: Shipment, applied: Applied) -> None:
    """After the commit: count a delivery against the promise."""
    if applied.delivered_on_time is not None:
        delivery_counted(shipment.carrier, on_time=applied.delivered_on_time)

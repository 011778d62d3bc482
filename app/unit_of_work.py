"""The unit of work: one per use case (in the spirit of cosmicpython's), on the request's
connection (`Database.write()`).

It opens the transaction, collects what the change tells others — live-update events and
queued emails (outbox rows, written in the same transaction) — commits when the use case
says so, and only after the commit publishes the events. Rolled back by default: leaving
the block without `commit()`, or with an exception, writes nothing and publishes nothing.

Never open across a call to another system (payment provider, SMTP, Redis): a use case that
calls out runs one unit of work before the call and another after it (reserve → call →
confirm), so `Database.write()`'s rule holds.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from app.db import Database
from app.events.broker import Broker, order_topic
from app.notifications.models import OutboxEmail
from app.notifications.outbox import enqueue_email
from app.orders.models import Order


@dataclass
class UnitOfWork:
    session: AsyncSession
    events: list[tuple[Order, str]] = field(default_factory=list)
    emails: list[OutboxEmail] = field(default_factory=list)
    committed: bool = False

    def publish(self, order: Order, kind: str) -> None:
        """Tell the order's live subscribers (orderUpdates) after the commit; they re-read
        the order. The status sent is the order's as committed."""
        self.events.append((order, kind))

    def email(
        self, *, kind: str, recipient: str, subject: str, body_text: str, dedupe_key: str
    ) -> OutboxEmail:
        """Queue an email in this transaction: sent exactly when the change commits."""
        email = enqueue_email(
            self.session,
            kind=kind,
            recipient=recipient,
            subject=subject,
            body_text=body_text,
            dedupe_key=dedupe_key,
        )
        self.emails.append(email)
        return email

    async def commit(self) -> None:
        await self.session.commit()
        self.committed = True


class UnitsOfWork:
    """Makes one `UnitOfWork` per use case: `async with units.begin() as uow: ...`."""

    def __init__(self, db: Database, events: Broker | None = None) -> None:
        """`events`: where to publish (a service whose use cases publish nothing has none)."""
        self._db = db
        self._events = events

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[UnitOfWork]:
        uow: UnitOfWork | None = None
        try:
            async with self._db.write() as session:
                uow = UnitOfWork(session)
                yield uow
        finally:
            # After the transaction has ended (committed, or rolled back by `write()`).
            if uow is not None and uow.committed:
                self.publish_now(uow.events)

    def publish_now(self, events: list[tuple[Order, str]]) -> None:
        if events and self._events is None:
            raise RuntimeError("this service's units of work have no broker to publish to")
        for order, kind in events:
            assert order.id is not None and self._events is not None
            self._events.publish(order_topic(order.id), {"type": kind, "status": order.status})

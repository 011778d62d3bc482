"""Delivers the outbox: claim due emails, send them, record the outcome, retry with backoff.

At-least-once: an email leaves the outbox only after the transport accepted it, so a mail
server that is down (or a crash mid-pass) delays an email but never loses it. A resend
after a lost acknowledgement carries the same Message-ID, for receivers to de-duplicate.

Several senders (workers, instances) may run at once; a claim (`claimed_until`) taken in a
short write transaction keeps them off each other's rows, and an expired claim (a sender
that died) makes the row due again. No transaction stays open while an email is handed to
the transport: claim and commit, send, then record the outcome in a second transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, update
from sqlmodel import col, select
from sqlmodel.sql.expression import SelectOfScalar

from app.db import Database, utcnow
from app.notifications.models import OutboxEmail
from app.notifications.preferences import UnsubscribeLinks
from app.notifications.templates import Shop
from app.notifications.transports import MailTransport, build_message

logger = logging.getLogger("app.notifications")

BACKOFF_BASE_SECONDS = 5
BACKOFF_CAP_SECONDS = 3600
LAST_ERROR_MAX_CHARS = 500  # the column's length

# SMTP replies often quote the refused address; last_error is shown to operators.
_ADDRESS = re.compile(r"[^\s<>\"'@]+@[^\s<>\"'@]+")


@dataclass
class SendReport:
    """What one pass did: delivered, failed but to be retried, failed for good."""

    sent: int = 0
    retried: int = 0
    dead: int = 0

    @property
    def handled(self) -> int:
        return self.sent + self.retried + self.dead


def backoff_seconds(attempts: int) -> int:
    """Delay after the `attempts`-th failure: 10 s, 20 s, 40 s, ... at most an hour."""
    if attempts >= 20:  # well past the cap; skips computing a huge power of two
        return BACKOFF_CAP_SECONDS
    delay: int = BACKOFF_BASE_SECONDS * 2**attempts
    return min(delay, BACKOFF_CAP_SECONDS)


def describe_error(exc: BaseException) -> str:
    """Type and first words of an error for `last_error`: no addresses, bounded length.

    Transports never put credentials in their exceptions (aiosmtplib reports the server's
    reply), so the remaining risk is an address quoted back by the server.
    """
    text = _ADDRESS.sub("<address>", " ".join(str(exc).split()))
    described = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return described[:LAST_ERROR_MAX_CHARS]


def due_statement(now: datetime, limit: int, *, skip_locked: bool) -> SelectOfScalar[OutboxEmail]:
    """Rows a sender may claim now, oldest first.

    With `skip_locked` (PostgreSQL), rows another transaction is claiming right now are
    passed over instead of waited for, so concurrent senders split the queue between them.
    """
    statement = (
        select(OutboxEmail)
        .where(
            col(OutboxEmail.sent_at).is_(None),
            col(OutboxEmail.failed_at).is_(None),
            col(OutboxEmail.next_attempt_at) <= now,
            or_(col(OutboxEmail.claimed_until).is_(None), col(OutboxEmail.claimed_until) < now),
        )
        .order_by(col(OutboxEmail.id))
        .limit(limit)
    )
    if skip_locked:
        statement = statement.with_for_update(skip_locked=True)
    return statement


class OutboxSender:
    def __init__(
        self,
        db: Database,
        transport: MailTransport,
        mail_from: str,
        max_attempts: int = 12,
        claim_seconds: int = 60,
        shop: Shop | None = None,
        unsubscribe: UnsubscribeLinks | None = None,
    ) -> None:
        self.db = db
        self.transport = transport
        self.mail_from = mail_from
        self.max_attempts = max_attempts
        self.claim_seconds = claim_seconds
        self.shop = shop or Shop()
        self.unsubscribe = unsubscribe

    # -- the loop ---------------------------------------------------------------------------
    async def run_forever(self, poll_seconds: float, stop: asyncio.Event) -> None:
        """Send passes until `stop` is set. A failing pass (database down...) is logged and
        the loop carries on: the emails are still in the outbox for the next pass."""
        while not stop.is_set():
            report = SendReport()
            try:
                report = await self.send_pending()
            except Exception as exc:
                logger.error("outbox pass failed: %s", type(exc).__name__, exc_info=exc)
            if report.handled == 0:  # a busy pass goes again at once to drain a backlog
                await _wait(stop, poll_seconds)

    async def send_pending(self, limit: int = 50) -> SendReport:
        """One pass: claim up to `limit` due emails and try each once."""
        rows = await self._claim(limit)
        report = SendReport()
        for row in rows:
            # A claim that ran out while earlier emails were slow to send may now be another
            # sender's: leave the rest for the next pass rather than send them twice.
            if row.claimed_until is None or utcnow() >= row.claimed_until:
                break
            await self._deliver(row, report)
        return report

    # -- one email --------------------------------------------------------------------------
    async def _deliver(self, row: OutboxEmail, report: SendReport) -> None:
        try:
            await self.transport.send(
                build_message(row, self.mail_from, self.shop, self.unsubscribe)
            )
        except Exception as exc:
            dead = await self._record_failure(row, describe_error(exc))
            if dead:
                report.dead += 1
                logger.error(
                    "email %s (%s) undeliverable after %d attempts: %s",
                    row.id,
                    row.kind,
                    self.max_attempts,
                    type(exc).__name__,
                )
            else:
                report.retried += 1
                logger.warning(
                    "email %s (%s) not sent, will retry: %s", row.id, row.kind, type(exc).__name__
                )
            return
        await self._record_sent(row)
        report.sent += 1
        logger.info("email %s (%s) sent", row.id, row.kind)

    # -- database steps: each one short transaction, none open across a send ----------------
    async def _claim(self, limit: int) -> list[OutboxEmail]:
        """Mark due rows as ours for `claim_seconds`, in one short write transaction.

        On SQLite, `db.write()` opens with BEGIN IMMEDIATE, so claimers queue up on the
        write lock and each sees the claims of the one before; PostgreSQL needs the row
        locks of FOR UPDATE SKIP LOCKED for the same effect.
        """
        now = utcnow()
        async with self.db.write() as session:
            statement = due_statement(now, limit, skip_locked=not self.db.is_sqlite)
            rows = list((await session.execute(statement)).scalars().all())
            for row in rows:
                row.claimed_until = now + timedelta(seconds=self.claim_seconds)
            await session.commit()
        return rows

    async def _record_sent(self, row: OutboxEmail) -> None:
        async with self.db.write() as session:
            await session.execute(
                update(OutboxEmail)
                .where(col(OutboxEmail.id) == row.id, col(OutboxEmail.sent_at).is_(None))
                .values(sent_at=utcnow(), claimed_until=None)
            )
            await session.commit()

    async def _record_failure(self, row: OutboxEmail, error: str) -> bool:
        """Count the failed attempt; returns True when it was the last one (dead letter)."""
        now = utcnow()
        attempts = row.attempts + 1
        dead = attempts >= self.max_attempts
        values: dict[str, object] = {
            "attempts": attempts,
            "last_error": error,
            "claimed_until": None,
            "next_attempt_at": now + timedelta(seconds=backoff_seconds(attempts)),
        }
        if dead:
            values["failed_at"] = now  # kept in the table for an operator to inspect
        async with self.db.write() as session:
            await session.execute(
                update(OutboxEmail)
                .where(
                    col(OutboxEmail.id) == row.id,
                    col(OutboxEmail.sent_at).is_(None),
                    # Unchanged since our claim: if another sender took over an expired
                    # claim and already counted its own try, ours must not overwrite it.
                    col(OutboxEmail.attempts) == row.attempts,
                )
                .values(values)
            )
            await session.commit()
        return dead

    # -- metrics ----------------------------------------------------------------------------
    async def queue_depth(self) -> tuple[int, float | None]:
        """(emails waiting to be sent, age in seconds of the oldest); dead letters excluded."""
        async with self.db.read() as session:
            count, oldest = (
                await session.execute(
                    select(func.count(), func.min(col(OutboxEmail.created_at))).where(
                        col(OutboxEmail.sent_at).is_(None), col(OutboxEmail.failed_at).is_(None)
                    )
                )
            ).one()
        if oldest is None:
            return int(count), None
        return int(count), max(0.0, (utcnow() - oldest).total_seconds())


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    """Sleep up to `seconds`, waking at once when `stop` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)

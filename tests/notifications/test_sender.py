"""The outbox sender against a real SMTP server: delivery, retries, dead letters, and
several senders sharing one queue."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.dialects import postgresql

from app.db import Database, utcnow
from app.notifications.sender import OutboxSender, SendReport, backoff_seconds, due_statement
from app.notifications.transports import FileTransport, SmtpTransport, message_id

from .conftest import MAIL_FROM, SmtpServer, create_tables, edit_row, get_row, make_due, queue_email

KEY = "order-confirmation.ABCD2345EFGH6789"


def smtp_sender(db: Database, server: SmtpServer, **options: Any) -> OutboxSender:
    transport = SmtpTransport("127.0.0.1", server.port, None, None, False, timeout=5)
    return OutboxSender(db, transport, MAIL_FROM, **options)


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


# -- delivery ----------------------------------------------------------------------------
async def test_queued_email_is_delivered_over_smtp(db: Database, running_smtp: SmtpServer) -> None:
    row_id = await queue_email(db, KEY, body_text="Hello Ada,\nyour order is confirmed.\n")

    report = await smtp_sender(db, running_smtp).send_pending()

    assert report == SendReport(sent=1)
    [envelope] = running_smtp.mailbox.envelopes
    assert envelope.rcpt_tos == ["ada@example.com"]
    [message] = running_smtp.mailbox.messages
    assert message["Message-ID"] == message_id(KEY)
    assert message["Subject"] == "Your order ABCD-2345-EFGH-6789 is confirmed"
    plain = message.get_body(preferencelist=("plain",))
    assert plain is not None
    assert (
        plain.get_content()
        .replace("\r\n", "\n")
        .startswith("Hello Ada,\nyour order is confirmed.\n")
    )
    row = await get_row(db, row_id)
    assert row.sent_at is not None
    assert row.claimed_until is None
    assert row.attempts == 0


async def test_a_sent_email_is_not_sent_again(db: Database, running_smtp: SmtpServer) -> None:
    await queue_email(db, KEY)
    sender = smtp_sender(db, running_smtp)

    await sender.send_pending()
    second = await sender.send_pending()

    assert second == SendReport()
    assert len(running_smtp.mailbox.envelopes) == 1


async def test_emails_go_out_oldest_first_within_the_limit(
    db: Database, running_smtp: SmtpServer
) -> None:
    for n in range(3):
        await queue_email(db, f"k{n}")

    report = await smtp_sender(db, running_smtp).send_pending(limit=2)

    assert report.sent == 2
    assert running_smtp.mailbox.message_ids() == [message_id("k0"), message_id("k1")]


# -- retries -------------------------------------------------------------------------------
async def test_server_down_keeps_the_email_queued_then_delivers_it_once(
    db: Database, smtp_server: SmtpServer
) -> None:
    row_id = await queue_email(db, KEY)
    sender = smtp_sender(db, smtp_server)  # nothing listens on the port yet
    before = utcnow()

    down = await sender.send_pending()

    assert down == SendReport(retried=1)
    row = await get_row(db, row_id)
    assert row.attempts == 1
    assert row.sent_at is None and row.failed_at is None and row.claimed_until is None
    assert row.last_error is not None and row.last_error.startswith("SMTPConnectError")
    assert row.next_attempt_at >= before + timedelta(seconds=backoff_seconds(1))
    assert await sender.send_pending() == SendReport()  # not due yet: no hammering

    smtp_server.start()
    await make_due(db, row_id)
    up = await sender.send_pending()
    again = await sender.send_pending()

    assert up == SendReport(sent=1)
    assert again == SendReport()
    assert smtp_server.mailbox.message_ids() == [message_id(KEY)]
    assert (await get_row(db, row_id)).sent_at is not None


def test_backoff_doubles_and_is_capped_at_an_hour() -> None:
    assert [backoff_seconds(n) for n in (1, 2, 3, 4)] == [10, 20, 40, 80]
    assert backoff_seconds(10) == 3600
    assert backoff_seconds(500) == 3600


async def test_dead_letter_after_max_attempts(db: Database, smtp_server: SmtpServer) -> None:
    row_id = await queue_email(db, KEY)
    sender = smtp_sender(db, smtp_server, max_attempts=3)

    reports = []
    for _ in range(3):
        reports.append(await sender.send_pending())
        await make_due(db, row_id)

    assert reports == [SendReport(retried=1), SendReport(retried=1), SendReport(dead=1)]
    row = await get_row(db, row_id)  # kept in the table for an operator
    assert row.attempts == 3
    assert row.failed_at is not None
    assert row.last_error is not None
    # Even with the server back and the row "due", a dead letter is not retried.
    smtp_server.start()
    assert await sender.send_pending() == SendReport()
    assert smtp_server.mailbox.envelopes == []
    assert await sender.queue_depth() == (0, None)


async def test_refused_recipient_is_recorded_without_the_address(
    db: Database, running_smtp: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="app.notifications")
    running_smtp.mailbox.refused.add("ada@example.com")
    row_id = await queue_email(db, KEY, body_text="SECRET-BODY-TEXT\n")

    report = await smtp_sender(db, running_smtp).send_pending()

    assert report == SendReport(retried=1)
    row = await get_row(db, row_id)
    assert row.last_error is not None
    assert row.last_error.startswith("SMTPRecipientsRefused")
    assert "ada@example.com" not in row.last_error
    assert "ada@example.com" not in caplog.text
    assert "SECRET-BODY-TEXT" not in caplog.text
    assert "SMTPRecipientsRefused" in caplog.text  # the failure itself is logged


# -- claims: several senders share the queue --------------------------------------------------
async def two_senders_drain_the_queue(db: Database, server: SmtpServer) -> None:
    keys = [f"order-confirmation.{n:04d}" for n in range(20)]
    for key in keys:
        await queue_email(db, key)
    other_db = Database(db.url)  # a second process: its own engine and connections
    senders = [smtp_sender(db, server), smtp_sender(other_db, server)]

    async def drain(sender: OutboxSender) -> int:
        sent = 0
        while (report := await sender.send_pending(limit=3)).handled:
            sent += report.sent
        return sent

    try:
        totals = await asyncio.gather(*(drain(s) for s in senders))
    finally:
        await other_db.dispose()

    assert sum(totals) == 20
    assert sorted(server.mailbox.message_ids()) == sorted(message_id(k) for k in keys)


async def test_two_senders_deliver_each_email_exactly_once(
    db: Database, running_smtp: SmtpServer
) -> None:
    await two_senders_drain_the_queue(db, running_smtp)


@pytest.mark.postgres
async def test_two_senders_on_postgresql_deliver_each_email_exactly_once(
    pg_db: Database, running_smtp: SmtpServer
) -> None:
    await two_senders_drain_the_queue(pg_db, running_smtp)


@pytest.mark.postgres
async def test_postgresql_sender_skips_rows_another_sender_is_claiming(
    pg_db: Database, running_smtp: SmtpServer
) -> None:
    await queue_email(pg_db, "being-claimed")
    await queue_email(pg_db, "free")
    claiming, finish = asyncio.Event(), asyncio.Event()

    async def another_sender_mid_claim() -> None:
        # Its own task, so its own connection and transaction (as another process would).
        async with pg_db.write() as session:
            # It holds the row lock, its claim not yet committed.
            (await session.execute(due_statement(utcnow(), 1, skip_locked=True))).all()
            claiming.set()
            await finish.wait()  # leaving without a commit rolls the claim back

    other = asyncio.create_task(another_sender_mid_claim())
    try:
        await asyncio.wait_for(claiming.wait(), 10)
        # Neither waits for the lock nor takes the row: it moves on to the next one.
        report = await asyncio.wait_for(smtp_sender(pg_db, running_smtp).send_pending(), 10)
    finally:
        finish.set()
        await other

    assert report == SendReport(sent=1)
    assert running_smtp.mailbox.message_ids() == [message_id("free")]


class InterleavingTransport:
    """Real SMTP delivery, but a second sender runs a whole pass in the middle of each send:
    the worst interleaving, made deterministic."""

    def __init__(self, inner: SmtpTransport, during_send: Callable[[], Awaitable[SendReport]]):
        self.inner = inner
        self.during_send = during_send
        self.reports_during_send: list[SendReport] = []

    async def send(self, message: EmailMessage) -> None:
        self.reports_during_send.append(await self.during_send())
        await self.inner.send(message)


async def test_a_claimed_email_is_not_taken_by_another_sender(
    db: Database, running_smtp: SmtpServer
) -> None:
    await queue_email(db, KEY)
    other = smtp_sender(Database(db.url), running_smtp)
    transport = InterleavingTransport(
        SmtpTransport("127.0.0.1", running_smtp.port, None, None, False), other.send_pending
    )
    first = OutboxSender(db, transport, MAIL_FROM)

    report = await first.send_pending()
    await other.db.dispose()

    assert report == SendReport(sent=1)
    assert transport.reports_during_send == [SendReport()]
    assert len(running_smtp.mailbox.envelopes) == 1


async def test_an_expired_claim_is_taken_over(db: Database, running_smtp: SmtpServer) -> None:
    # A sender that died mid-pass left its claims behind; only expired ones are free.
    stale = await queue_email(db, "stale")
    live = await queue_email(db, "live")
    for row_id, offset in ((stale, -1), (live, +60)):
        await edit_row(db, row_id, claimed_until=utcnow() + timedelta(seconds=offset))

    report = await smtp_sender(db, running_smtp).send_pending()

    assert report == SendReport(sent=1)
    assert running_smtp.mailbox.message_ids() == [message_id("stale")]


def test_postgresql_claims_skip_rows_locked_by_another_sender() -> None:
    statement = due_statement(utcnow(), 50, skip_locked=True)

    sql = str(statement.compile(dialect=postgresql.dialect()))  # type: ignore[no-untyped-call]

    assert sql.endswith("FOR UPDATE SKIP LOCKED")


# -- file transport through the sender -------------------------------------------------------
async def test_file_transport_keeps_one_file_when_an_email_is_resent(
    db: Database, tmp_path: Path
) -> None:
    row_id = await queue_email(db, KEY)
    sender = OutboxSender(db, FileTransport(tmp_path / "mail"), MAIL_FROM)
    await sender.send_pending()
    await edit_row(db, row_id, sent_at=None)  # as if the acknowledgement had been lost

    report = await sender.send_pending()

    assert report == SendReport(sent=1)
    [written] = (tmp_path / "mail").iterdir()
    assert message_id(KEY).encode() in written.read_bytes()


# -- the loop and metrics ----------------------------------------------------------------------
async def test_run_forever_delivers_and_stops(db: Database, running_smtp: SmtpServer) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(smtp_sender(db, running_smtp).run_forever(0.02, stop))
    await queue_email(db, KEY)

    await eventually(lambda: len(running_smtp.mailbox.envelopes) == 1)
    stop.set()
    await asyncio.wait_for(task, timeout=2)

    assert task.done() and task.exception() is None


async def test_run_forever_survives_a_failing_pass(
    tmp_path: Path, running_smtp: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    db = Database(f"sqlite:///{tmp_path / 'empty.db'}")  # no tables yet: every pass fails
    stop = asyncio.Event()
    task = asyncio.create_task(smtp_sender(db, running_smtp).run_forever(0.02, stop))
    try:
        await eventually(lambda: "outbox pass failed" in caplog.text)
        await create_tables(db)
        await queue_email(db, KEY)

        await eventually(lambda: len(running_smtp.mailbox.envelopes) == 1)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=2)
        await db.dispose()

    assert "ada@example.com" not in caplog.text


async def test_queue_depth_counts_waiting_emails_and_the_oldest_age(
    db: Database, running_smtp: SmtpServer
) -> None:
    sender = smtp_sender(db, running_smtp)
    assert await sender.queue_depth() == (0, None)
    first = await queue_email(db, "first")
    await queue_email(db, "second")
    await edit_row(db, first, created_at=utcnow() - timedelta(minutes=5))

    count, age = await sender.queue_depth()

    assert count == 2
    assert age is not None and 299 <= age <= 330
    await sender.send_pending()
    assert await sender.queue_depth() == (0, None)

"""Fixtures for the outbox tests: a fresh SQLite file per test and a real SMTP server
(aiosmtpd) on a free local port. Self-sufficient: nothing here relies on tests/conftest.py.

The tests are async and run on their own event loop: the `Database` is built, used and
disposed of on it, and rows are arranged and read through its own async sessions."""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiosmtpd.controller import Controller
from sqlmodel import SQLModel

from app.db import Database, utcnow
from app.engines import make_engine
from app.notifications.models import OutboxEmail
from app.notifications.outbox import enqueue_email
from tests.support.processes import free_port

MAIL_FROM = "Orders <orders@shop.example>"
# Same convention as the rest of the suite: skipped locally when absent, required under CI.
PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


class Mailbox:
    """aiosmtpd handler that keeps every accepted envelope; can refuse chosen recipients."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []
        self.refused: set[str] = set()

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if address in self.refused:
            return f"550 5.1.1 <{address}>: Recipient address rejected"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    @property
    def messages(self) -> list[EmailMessage]:
        parsed = []
        for envelope in self.envelopes:
            message = email.message_from_bytes(envelope.content, policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            parsed.append(message)
        return parsed

    def message_ids(self) -> list[str]:
        return [str(message["Message-ID"]) for message in self.messages]


class SmtpServer:
    """A real SMTP server on 127.0.0.1:`port`, started and stopped on demand."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.mailbox = Mailbox()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


async def create_tables(db: Database) -> None:
    """Every table of the app, straight from the models (no migrations needed here).

    Through a synchronous engine in a worker thread: its busy timeout waits out a sender
    that holds SQLite's write lock, while the loop lets that sender finish."""
    import app.models  # noqa: F401 - registers every table on SQLModel.metadata

    def create() -> None:
        engine = make_engine(db.url, null_pool=True)
        try:
            SQLModel.metadata.create_all(engine)
        finally:
            engine.dispose()

    await asyncio.to_thread(create)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'orders.db'}")
    await create_tables(database)
    yield database
    await database.dispose()


@pytest.fixture
async def pg_db() -> AsyncIterator[Database]:
    """A throwaway PostgreSQL database of our own, for the row-locking claim path."""
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL is required under CI=true but unreachable: {exc}")
        pytest.skip(f"PostgreSQL not reachable: {exc}")

    name = f"outbox_test_{uuid.uuid4().hex[:10]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        database = Database(PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name)
        try:
            await create_tables(database)
            yield database
        finally:
            await database.dispose()
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """Not started: tests that want the server down first start it themselves."""
    server = SmtpServer(free_port())
    yield server
    server.stop()


@pytest.fixture
def running_smtp(smtp_server: SmtpServer) -> SmtpServer:
    smtp_server.start()
    return smtp_server


async def queue_email(
    db: Database,
    dedupe_key: str = "order-confirmation.ABCD2345EFGH6789",
    *,
    recipient: str = "ada@example.com",
    subject: str = "Your order ABCD-2345-EFGH-6789 is confirmed",
    body_text: str = "Hello Ada,\nyour order ABCD-2345-EFGH-6789 is confirmed.\n",
) -> int:
    """Enqueue one email the way a use case does, and commit."""
    async with db.write() as session:
        row = enqueue_email(
            session,
            kind="order_confirmation",
            recipient=recipient,
            subject=subject,
            body_text=body_text,
            dedupe_key=dedupe_key,
        )
        await session.commit()
        assert row.id is not None
        return row.id


async def get_row(db: Database, row_id: int) -> OutboxEmail:
    async with db.read() as session:
        row = await session.get(OutboxEmail, row_id)
        assert row is not None
        return row


async def edit_row(db: Database, row_id: int, **values: Any) -> None:
    """Set columns of one outbox row directly, and commit."""
    async with db.write() as session:
        row = await session.get(OutboxEmail, row_id)
        assert row is not None
        for name, value in values.items():
            setattr(row, name, value)
        await session.commit()


async def make_due(db: Database, row_id: int) -> None:
    """Skip the backoff wait: the row becomes due now, as if its time had come."""
    await edit_row(db, row_id, next_attempt_at=utcnow() - timedelta(seconds=1))

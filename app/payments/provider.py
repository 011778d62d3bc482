"""The payment provider interface and the shipped test provider.

A provider is another system: every call may take seconds or never answer, so the API
never calls it inside a database transaction (reserve, call out with an idempotency key,
confirm — app/orders/placement.py, app/payments/refunds.py). Every call carries an
idempotency key; repeating a call with the same key returns the first result and moves
no money twice, and `find_charge` tells whether a key was charged (what the reconciler
asks after a crash).

The test provider plays an external payment service: it keeps its own ledger
(`test_provider_transactions`, see models.py) on connections and in transactions of its
own, so a charge survives whatever happens to the order's transactions, exactly as a real
provider's would — which is what lets tests count charges.

Documented test tokens (README):
  tok_visa → VISA 4242, tok_mastercard → MASTERCARD 4444, tok_amex → AMEX 0005 (succeed)
  tok_declined → card declined, tok_insufficient_funds → insufficient funds
  tok_unavailable → the provider is down (SERVICE_UNAVAILABLE, nothing charged)
  tok_slow → VISA 4242, but the provider answers 2 s after taking the money (a process
             killed in that window has charged the card and not confirmed the order)
  tok_slow_to_charge → VISA 4242, taken 2 s after the call (a process killed in that
             window has reserved the stock and charged nothing)
`latency_seconds` (TEST_PAYMENT_LATENCY_SECONDS) makes every call that long, like a real
provider's round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

from sqlalchemy import Row, insert, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db import utcnow
from app.engines import make_async_engine, make_engine
from app.errors import BadUserInput, ServiceUnavailable
from app.payments.models import provider_metadata, test_provider_transactions


@dataclass(frozen=True)
class Charge:
    reference: str
    amount_minor: int
    currency: str
    brand: str
    last4: str


@dataclass(frozen=True)
class Refund:
    reference: str
    charge_reference: str
    amount_minor: int


class PaymentDeclined(BadUserInput):
    default_message = "The payment was declined. Use another card."


class PaymentProvider(Protocol):
    async def charge(
        self, token: str, amount_minor: int, currency: str, idempotency_key: str
    ) -> Charge:
        """Take the money, or raise PaymentDeclined / BadUserInput (nothing charged),
        ServiceUnavailable (the provider said it is down: nothing charged), or anything
        else (timeout, lost answer: unknown whether charged — ask `find_charge`)."""
        ...

    async def refund(
        self, charge_reference: str, amount_minor: int, currency: str, idempotency_key: str
    ) -> Refund: ...

    async def find_charge(self, idempotency_key: str) -> Charge | None:
        """The charge made with this key, if any (for the reconciler)."""
        ...

    async def aclose(self) -> None: ...


_CARDS = {
    "tok_visa": ("VISA", "4242"),
    "tok_slow": ("VISA", "4242"),
    "tok_slow_to_charge": ("VISA", "4242"),
    "tok_mastercard": ("MASTERCARD", "4444"),
    "tok_amex": ("AMEX", "0005"),
}
_DECLINES = {
    "tok_declined": "The card was declined.",
    "tok_insufficient_funds": "The card has insufficient funds.",
}
SLOW_ANSWER_SECONDS = 2.0
TEST_TOKENS = (*_CARDS, *_DECLINES, "tok_unavailable")


def provider_ledger_url(database_url: str) -> str:
    """Where the test provider keeps its ledger: a sibling file for SQLite, else the same
    server (a separate table, separate connections and transactions)."""
    if database_url.startswith("sqlite:///") and ":memory:" not in database_url:
        path = database_url.removeprefix("sqlite:///")
        return "sqlite:///" + str(Path(path).with_name(Path(path).stem + ".payments.db"))
    return database_url


class TestPaymentProvider:
    __test__ = False  # not a pytest class

    def __init__(self, ledger_url: str, *, latency_seconds: float = 0.0) -> None:
        self.ledger_url = ledger_url
        self.latency_seconds = latency_seconds
        setup = make_engine(ledger_url)  # start-up, before the server's loop runs
        try:
            provider_metadata.create_all(setup, checkfirst=True)
        finally:
            setup.dispose()
        # The provider's own database: its lock waits happen in aiosqlite's thread.
        self.engine = make_async_engine(
            ledger_url, pool_size=5, sqlite_busy_ms=30_000, name="orders-api-test-provider"
        )

    async def charge(
        self, token: str, amount_minor: int, currency: str, idempotency_key: str
    ) -> Charge:
        await self._round_trip()
        if token == "tok_unavailable":
            raise ServiceUnavailable("The payment provider is unavailable. Try again shortly.")
        if token in _DECLINES:
            raise PaymentDeclined(_DECLINES[token], field="paymentToken")
        if token not in _CARDS:
            raise BadUserInput("Unknown payment token.", field="paymentToken")
        if token == "tok_slow_to_charge":
            await asyncio.sleep(SLOW_ANSWER_SECONDS)
        brand, last4 = _CARDS[token]
        row = await self._record(
            reference="ch_" + secrets.token_hex(8),
            idempotency_key=idempotency_key,
            kind="charge",
            amount_minor=amount_minor,
            currency=currency,
            brand=brand,
            last4=last4,
        )
        if token == "tok_slow":
            await asyncio.sleep(SLOW_ANSWER_SECONDS)
        return _charge_of(row)

    async def refund(
        self, charge_reference: str, amount_minor: int, currency: str, idempotency_key: str
    ) -> Refund:
        await self._round_trip()
        row = await self._record(
            reference="re_" + secrets.token_hex(8),
            idempotency_key=idempotency_key,
            kind="refund",
            amount_minor=amount_minor,
            currency=currency,
            charge_reference=charge_reference,
        )
        return Refund(row.reference, charge_reference, row.amount_minor)

    async def find_charge(self, idempotency_key: str) -> Charge | None:
        await self._round_trip()
        try:
            async with self.engine.connect() as conn:
                row = await self._by_key(conn, idempotency_key)
        except (DBAPIError, OSError) as exc:
            raise ServiceUnavailable("The payment provider is unavailable.") from exc
        return _charge_of(row) if row is not None and row.kind == "charge" else None

    def transactions(self, kind: str | None = None) -> list[Row[Any]]:
        """The ledger as an operator (or a test) reads it: synchronous, never called by
        the server."""
        query = select(test_provider_transactions).order_by(test_provider_transactions.c.id)
        if kind:
            query = query.where(test_provider_transactions.c.kind == kind)
        engine = make_engine(self.ledger_url)
        try:
            with engine.connect() as conn:
                return list(conn.execute(query))
        finally:
            engine.dispose()

    async def aclose(self) -> None:
        await self.engine.dispose()

    async def _round_trip(self) -> None:
        if self.latency_seconds > 0:
            await asyncio.sleep(self.latency_seconds)

    async def _record(self, **values: Any) -> Any:
        """Insert, or return the earlier transaction with the same idempotency key.

        Like a real provider, it fails in two ways: before anything was recorded
        (ServiceUnavailable: nothing charged, the caller may release what it reserved),
        and after — the commit whose answer was lost, a concurrent twin it could not read
        back (ConnectionError: the caller cannot know; `find_charge` tells later)."""
        key = values["idempotency_key"]
        try:
            conn = await self.engine.connect()
        except (DBAPIError, OSError) as exc:
            raise ServiceUnavailable("The payment provider is unavailable.") from exc
        try:
            try:
                transaction = await conn.begin()
                existing = await self._by_key(conn, key)
                if existing is not None:
                    return existing
                await conn.execute(
                    insert(test_provider_transactions).values(created_at=utcnow(), **values)
                )
            except IntegrityError:
                pass  # a concurrent call with the same key won: answer with its result
            except (DBAPIError, OSError) as exc:
                raise ServiceUnavailable("The payment provider is unavailable.") from exc
            else:
                try:
                    await transaction.commit()
                except (DBAPIError, OSError) as exc:
                    raise ConnectionError("the payment provider's answer was lost") from exc
                return SimpleNamespace(**values)
        finally:
            with contextlib.suppress(Exception):
                await conn.close()
        try:
            async with self.engine.connect() as reread:
                found = await self._by_key(reread, key)
        except (DBAPIError, OSError) as exc:
            raise ConnectionError("the payment provider's answer was lost") from exc
        assert found is not None
        return found

    @staticmethod
    async def _by_key(conn: AsyncConnection, key: str) -> Row[Any] | None:
        result = await conn.execute(
            select(test_provider_transactions).where(
                test_provider_transactions.c.idempotency_key == key
            )
        )
        return result.one_or_none()


def _charge_of(row: Any) -> Charge:
    return Charge(row.reference, row.amount_minor, row.currency, row.brand, row.last4)

"""The payment provider interface and the shipped test provider.

The test provider plays an external payment service: it keeps its own ledger
(`test_provider_transactions`, see models.py) written in its *own* transaction, so a
charge survives a rollback of the order transaction exactly as a real provider's would —
which is what lets tests count charges. Every call carries an idempotency key; repeating
a call with the same key returns the first result and moves no money twice.

Documented test tokens (README):
  tok_visa → VISA 4242, tok_mastercard → MASTERCARD 4444, tok_amex → AMEX 0005 (succeed)
  tok_declined → card declined, tok_insufficient_funds → insufficient funds
  tok_unavailable → the provider is down (SERVICE_UNAVAILABLE, retry later)
  tok_slow → VISA 4242, but the provider answers 2 s after taking the money (for
             crash-recovery tests: a process killed in that window has charged the card
             and committed nothing; the retry with the same key must charge nothing more)
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, Row, insert, select
from sqlalchemy.exc import IntegrityError, OperationalError

from app.db import make_engine, utcnow
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
    def charge(
        self, token: str, amount_minor: int, currency: str, idempotency_key: str
    ) -> Charge: ...

    def refund(
        self, charge_reference: str, amount_minor: int, currency: str, idempotency_key: str
    ) -> Refund: ...


_CARDS = {
    "tok_visa": ("VISA", "4242"),
    "tok_slow": ("VISA", "4242"),
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

    def __init__(self, ledger_url: str) -> None:
        self.engine = make_engine(ledger_url, pool_size=5)
        provider_metadata.create_all(self.engine, checkfirst=True)

    def charge(self, token: str, amount_minor: int, currency: str, idempotency_key: str) -> Charge:
        if token == "tok_unavailable":
            raise ServiceUnavailable("The payment provider is unavailable. Try again shortly.")
        if token in _DECLINES:
            raise PaymentDeclined(_DECLINES[token], field="paymentToken")
        if token not in _CARDS:
            raise BadUserInput("Unknown payment token.", field="paymentToken")
        brand, last4 = _CARDS[token]
        row = self._record(
            reference="ch_" + secrets.token_hex(8),
            idempotency_key=idempotency_key,
            kind="charge",
            amount_minor=amount_minor,
            currency=currency,
            brand=brand,
            last4=last4,
        )
        if token == "tok_slow":
            time.sleep(SLOW_ANSWER_SECONDS)
        return Charge(row.reference, row.amount_minor, row.currency, row.brand, row.last4)

    def refund(
        self, charge_reference: str, amount_minor: int, currency: str, idempotency_key: str
    ) -> Refund:
        row = self._record(
            reference="re_" + secrets.token_hex(8),
            idempotency_key=idempotency_key,
            kind="refund",
            amount_minor=amount_minor,
            currency=currency,
            charge_reference=charge_reference,
        )
        return Refund(row.reference, charge_reference, row.amount_minor)

    def transactions(self, kind: str | None = None) -> list[Row[Any]]:
        """The ledger, for tests and reconciliation."""
        query = select(test_provider_transactions).order_by(test_provider_transactions.c.id)
        if kind:
            query = query.where(test_provider_transactions.c.kind == kind)
        with self.engine.connect() as conn:
            return list(conn.execute(query))

    def _record(self, **values: Any) -> Row[Any]:
        """Insert, or return the earlier transaction with the same idempotency key."""
        key = values["idempotency_key"]
        try:
            with self.engine.begin() as conn:
                existing = self._by_key(conn, key)
                if existing is not None:
                    return existing
                conn.execute(
                    insert(test_provider_transactions).values(created_at=utcnow(), **values)
                )
        except IntegrityError:
            pass  # a concurrent call with the same key won: answer with its result
        except OperationalError as exc:
            raise ServiceUnavailable("The payment provider is unavailable.") from exc
        with self.engine.connect() as conn:
            found = self._by_key(conn, key)
        assert found is not None
        return found

    @staticmethod
    def _by_key(conn: Connection, key: str) -> Row[Any] | None:
        return conn.execute(
            select(test_provider_transactions).where(
                test_provider_transactions.c.idempotency_key == key
            )
        ).one_or_none()

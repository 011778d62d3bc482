"""The payment provider interface and the shipped test provider.

The test provider plays an external payment service: it keeps its own ledger
(`test_provider_transactions`) written in its *own* transaction, so a charge survives a
rollback of the order transaction exactly as a real provider's would — which is what lets
tests count charges. Every call carries an idempotency key; repeating a call with the same
key returns the first result and moves no money twice.

Documented test tokens (README):
  tok_visa → VISA 4242, tok_mastercard → MASTERCARD 4444, tok_amex → AMEX 0005 (succeed)
  tok_declined → card declined, tok_insufficient_funds → insufficient funds
  tok_unavailable → the provider is down (SERVICE_UNAVAILABLE, retry later)
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from app.db import Database
from app.errors import BadUserInput, ServiceUnavailable
from app.payments.models import TestProviderTransaction


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
    "tok_mastercard": ("MASTERCARD", "4444"),
    "tok_amex": ("AMEX", "0005"),
}
_DECLINES = {
    "tok_declined": "The card was declined.",
    "tok_insufficient_funds": "The card has insufficient funds.",
}
TEST_TOKENS = (*_CARDS, *_DECLINES, "tok_unavailable")


class TestPaymentProvider:
    __test__ = False  # not a pytest class

    def __init__(self, db: Database) -> None:
        self._db = db

    def charge(self, token: str, amount_minor: int, currency: str, idempotency_key: str) -> Charge:
        if token == "tok_unavailable":
            raise ServiceUnavailable("The payment provider is unavailable. Try again shortly.")
        if token in _DECLINES:
            raise PaymentDeclined(_DECLINES[token], field="paymentToken")
        if token not in _CARDS:
            raise BadUserInput("Unknown payment token.", field="paymentToken")
        brand, last4 = _CARDS[token]
        row = self._record(
            TestProviderTransaction(
                reference="ch_" + secrets.token_hex(8),
                idempotency_key=idempotency_key,
                kind="charge",
                amount_minor=amount_minor,
                currency=currency,
                brand=brand,
                last4=last4,
            )
        )
        return Charge(row.reference, row.amount_minor, row.currency, row.brand, row.last4)

    def refund(
        self, charge_reference: str, amount_minor: int, currency: str, idempotency_key: str
    ) -> Refund:
        row = self._record(
            TestProviderTransaction(
                reference="re_" + secrets.token_hex(8),
                idempotency_key=idempotency_key,
                kind="refund",
                amount_minor=amount_minor,
                currency=currency,
                charge_reference=charge_reference,
            )
        )
        return Refund(row.reference, charge_reference, row.amount_minor)

    def _record(self, row: TestProviderTransaction) -> TestProviderTransaction:
        """Insert, or return the earlier transaction with the same idempotency key."""
        with Session(self._db.engine, expire_on_commit=False) as session:
            existing = self._by_key(session, row.idempotency_key)
            if existing is not None:
                return existing
            session.add(row)
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                existing = self._by_key(session, row.idempotency_key)
                if existing is None:
                    raise
                return existing
            return row

    @staticmethod
    def _by_key(session: Session, key: str) -> TestProviderTransaction | None:
        return session.execute(
            select(TestProviderTransaction).where(TestProviderTransaction.idempotency_key == key)
        ).scalar_one_or_none()

"""The reconciler (app/payments/reconciler.py) finishing what an interrupted placeOrder or
cancelOrder left between its two transactions, driven in-process: a provider whose charges
and refunds can fail the ways a real one does, rows aged with the test's own session in
place of waiting, `services.reconciler.run_once()` for one pass of the loop every server
runs in the background.

Settings are the defaults: the reconciler looks at reservations and refunds older than
`reconcile_after_seconds` (60 s) and releases uncharged reservations after
`reservation_ttl_seconds` (15 min)."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlmodel import Session, col

from app.catalog.models import Product
from app.container import Services, build_services
from app.db import utcnow
from app.errors import ServiceUnavailable
from app.orders.inputs import LineInput
from app.orders.models import Order, OrderReservation
from app.orders.placement import RECHECK_SECONDS, PaymentNotConfirmed
from app.orders.service import OrderView
from app.payments.models import PaymentRefund
from app.payments.provider import Charge, provider_ledger_url
from app.settings import Settings
from tests.conftest import ADDRESS, FAST_PASSWORDS, Account, Run, db_session, sql_count
from tests.support.returns import FlakyRefunds

IP = "10.0.0.1"


class FlakyProvider(FlakyRefunds):
    """The test provider (own ledger), whose charges can also fail: `unreachable` calls
    fail before the provider recorded anything (the connection never got through),
    `lost_answers` calls go through and then fail as if the answer were lost on the way
    back. Both raise ConnectionError: the shop cannot tell whether the card was charged.
    `find_down`: the provider cannot say whether a key was charged."""

    __test__ = False

    def __init__(self, ledger_url: str) -> None:
        super().__init__(ledger_url)
        self.unreachable = 0
        self.lost_answers = 0
        self.charge_calls = 0
        self.find_calls = 0
        self.find_down = False

    async def charge(
        self, token: str, amount_minor: int, currency: str, idempotency_key: str
    ) -> Charge:
        self.charge_calls += 1
        if self.unreachable > 0:
            self.unreachable -= 1
            raise ConnectionError("the payment provider did not answer")
        made = await super().charge(token, amount_minor, currency, idempotency_key)
        if self.lost_answers > 0:
            self.lost_answers -= 1
            raise ConnectionError("the payment provider's answer was lost")
        return made

    async def find_charge(self, idempotency_key: str) -> Charge | None:
        self.find_calls += 1
        if self.find_down:
            raise ServiceUnavailable("The payment provider is unavailable.")
        return await super().find_charge(idempotency_key)


@pytest.fixture
def services(settings: Settings) -> Services:
    """Built as in production, with the flaky provider (closed by the app's lifespan)."""
    provider = FlakyProvider(provider_ledger_url(settings.database_url))
    return build_services(settings, passwords=FAST_PASSWORDS, payments=provider)


def provider(services: Services) -> FlakyProvider:
    assert isinstance(services.payments, FlakyProvider)
    return services.payments


@pytest.fixture(autouse=True)
def _catalog(catalog: dict[str, Product]) -> None:
    """MUG-001: 50 in stock, 12.99 (every test here buys two)."""


def place(run: Run[Any], services: Services, account: Account, key: str) -> OrderView:
    view: OrderView = run(
        services.orders.place_order(
            account.viewer, [LineInput("MUG-001", 2)], ADDRESS, "tok_visa", key
        )
    )
    return view


def interrupted_place(run: Run[Any], services: Services, account: Account, key: str) -> None:
    """placeOrder whose charge ended without an answer: the customer is told to retry."""
    with pytest.raises(PaymentNotConfirmed):
        place(run, services, account, key)


def charged_without_an_answer(run: Run[Any], services: Services, account: Account) -> str:
    """placeOrder whose card was charged but whose answer was lost (the provider took the
    money, the request ended): the reservation holds the stock, no order exists. Its key."""
    key = new_key()
    provider(services).lost_answers = 1
    interrupted_place(run, services, account, key)
    return key


@contextmanager
def reservation_of(services: Services, key: str) -> Iterator[tuple[Session, OrderReservation]]:
    with db_session(services) as session:
        found = session.execute(
            select(OrderReservation).where(col(OrderReservation.idempotency_key) == key)
        ).scalar_one()
        yield session, found


def reservation(services: Services, key: str) -> OrderReservation:
    with reservation_of(services, key) as (_, found):
        return found


def age_reservation(services: Services, key: str, *, seconds: float) -> None:
    """As if the reservation had been made `seconds` earlier (its expiry and the
    reconciler's next look at it with it)."""
    with reservation_of(services, key) as (session, found):
        found.created_at -= timedelta(seconds=seconds)
        found.expires_at -= timedelta(seconds=seconds)
        found.next_check_at -= timedelta(seconds=seconds)
        session.add(found)
        session.commit()


def expire_reservation(services: Services, key: str) -> None:
    with reservation_of(services, key) as (session, found):
        found.expires_at = utcnow() - timedelta(seconds=1)
        found.next_check_at = min(found.next_check_at, found.expires_at)
        session.add(found)
        session.commit()


def stale(services: Services) -> float:
    """Seconds that make a row old enough for the reconciler."""
    return services.settings.reconcile_after_seconds + 1


def stock(services: Services) -> int:
    with db_session(services) as session:
        return int(
            session.execute(
                select(col(Product.stock)).where(col(Product.sku) == "MUG-001")
            ).scalar_one()
        )


def orders_for(services: Services, key: str) -> list[Order]:
    with db_session(services) as session:
        return list(
            session.execute(select(Order).where(col(Order.idempotency_key) == key)).scalars()
        )


def ledger(services: Services, kind: str) -> list[Any]:
    return list(services.payments.transactions(kind))  # type: ignore[attr-defined]


def confirmations(services: Services, code: str) -> int:
    return sql_count(
        services,
        f"SELECT count(*) FROM outbox_emails WHERE dedupe_key = 'order-confirmation.{code}'",
    )


def new_key() -> str:
    return f"reconcile-{uuid.uuid4().hex}"


def test_a_charged_reservation_never_confirmed_is_confirmed_by_the_reconciler_once(
    run: Run[Any], services: Services, owner: Account
) -> None:
    # given a placeOrder whose card was charged but whose answer was lost: the request
    # ended, the reservation holds the stock, no order exists
    key = charged_without_an_answer(run, services, owner)
    [charge] = ledger(services, "charge")
    held = reservation(services, key)
    assert held.status == "RESERVED" and charge.idempotency_key == held.payment_key
    assert orders_for(services, key) == [] and stock(services) == 48

    # when the reconciler passes while the reservation is young (its request may still be
    # running) -> it leaves it alone
    assert run(services.reconciler.run_once()) == 0
    assert reservation(services, key).status == "RESERVED" and orders_for(services, key) == []

    # when it passes once the reservation is old enough
    age_reservation(services, key, seconds=stale(services))
    assert run(services.reconciler.run_once()) == 1

    # then the order exists, made of the reservation and paid by that charge, with its
    # confirmation email queued; nothing more was charged
    [order] = orders_for(services, key)
    assert order.code == held.code and order.user_id == owner.viewer.user_id
    assert order.payment_reference == charge.reference
    assert order.total_minor == held.amount_minor == charge.amount_minor == 2 * 1299 + 495
    assert confirmations(services, order.code) == 1
    assert len(ledger(services, "charge")) == 1
    assert stock(services) == 48
    done = reservation(services, key)
    assert done.status == "CONFIRMED" and done.order_id == order.id
    assert sql_count(services, f"SELECT count(*) FROM order_lines WHERE order_id = {order.id}") == 1

    # when it passes again -> nothing changes
    assert run(services.reconciler.run_once()) == 0
    assert len(orders_for(services, key)) == 1
    assert confirmations(services, order.code) == 1
    assert len(ledger(services, "charge")) == 1
    assert stock(services) == 48

    # and the customer's retry with the same key is answered with that order
    again = place(run, services, owner, key)
    assert again.order.code == order.code
    assert len(ledger(services, "charge")) == 1


def test_an_uncharged_reservation_is_released_only_once_it_expired(
    run: Run[Any], services: Services, owner: Account
) -> None:
    # given a placeOrder whose charge never reached the provider (no answer: the shop
    # cannot know that nothing was charged)
    key = new_key()
    provider(services).unreachable = 1
    interrupted_place(run, services, owner, key)
    assert ledger(services, "charge") == []
    assert reservation(services, key).status == "RESERVED" and stock(services) == 48

    # when the reconciler passes once the request is surely over, but before expiry
    age_reservation(services, key, seconds=stale(services))
    asked = provider(services).find_calls
    assert run(services.reconciler.run_once()) == 0
    # then it asked the provider, and keeps the stock held
    assert provider(services).find_calls == asked + 1
    assert reservation(services, key).status == "RESERVED" and stock(services) == 48

    # when it passes after the reservation expired
    expire_reservation(services, key)
    assert run(services.reconciler.run_once()) == 1

    # then the stock is back, and no order, charge or email exists
    released = reservation(services, key)
    assert released.status == "RELEASED" and released.resolved_at is not None
    assert stock(services) == 50
    assert orders_for(services, key) == []
    assert ledger(services, "charge") == []
    assert confirmations(services, released.code) == 0

    # when it passes again -> the stock is not given back twice
    assert run(services.reconciler.run_once()) == 0
    assert stock(services) == 50
    assert reservation(services, key).status == "RELEASED"


def test_a_cancellation_whose_refund_failed_is_refunded_by_the_reconciler_once(
    run: Run[Any], services: Services, owner: Account
) -> None:
    # given an order, and the provider down when the customer cancels it
    view = place(run, services, owner, new_key())
    code, total = view.order.code, view.order.total_minor
    provider(services).down = True
    cancelled = run(services.orders.cancel_order(owner.viewer, code, IP))

    # then the cancellation stands, with its refund decided but not made
    assert cancelled.order.status == "CANCELLED"
    assert stock(services) == 50
    pending = refund_of(services, code)
    assert pending.status == "PENDING" and pending.amount_minor == total
    assert pending.attempts == 1 and pending.last_error == "ServiceUnavailable"
    assert ledger(services, "refund") == []
    assert order_of(services, code).refunded_minor == 0

    # when the provider is back and the reconciler passes before the refund is due
    provider(services).down = False
    assert run(services.reconciler.run_once()) == 0
    assert refund_of(services, code).status == "PENDING" and ledger(services, "refund") == []

    # when it passes once the refund is due
    make_refund_due(services, code)
    assert run(services.reconciler.run_once()) == 1

    # then the money went back once, and the order says so
    [made] = ledger(services, "refund")
    assert made.amount_minor == total and made.idempotency_key == f"cancel:{code}"
    assert made.charge_reference == view.order.payment_reference
    done = refund_of(services, code)
    assert done.status == "DONE" and done.provider_reference == made.reference
    order = order_of(services, code)
    assert order.refunded_minor == total and order.status == "CANCELLED"

    # when it passes again -> nothing changes
    make_refund_due(services, code)
    assert run(services.reconciler.run_once()) == 0
    assert len(ledger(services, "refund")) == 1
    assert order_of(services, code).refunded_minor == total
    assert refund_of(services, code).status == "DONE"


def test_a_retry_while_the_reservation_is_charged_resumes_it(
    run: Run[Any], services: Services, owner: Account
) -> None:
    # given a placeOrder whose card was charged but whose answer was lost
    key = charged_without_an_answer(run, services, owner)
    [charge] = ledger(services, "charge")
    held = reservation(services, key)
    assert held.status == "RESERVED" and stock(services) == 48

    # when the customer retries with the same key (the reconciler has not passed)
    view = place(run, services, owner, key)

    # then the reservation became the order, paid by the first charge: the provider was
    # asked again with the same key and moved no more money
    assert provider(services).charge_calls == 2
    assert view.order.code == held.code
    assert view.order.payment_reference == charge.reference
    assert [line.quantity for line in view.lines or []] == [2]
    assert len(orders_for(services, key)) == 1
    assert len(ledger(services, "charge")) == 1
    assert stock(services) == 48
    assert confirmations(services, view.order.code) == 1
    assert reservation(services, key).status == "CONFIRMED"

    # and the reconciler, later, has nothing left to do
    age_reservation(services, key, seconds=stale(services))
    assert run(services.reconciler.run_once()) == 0
    assert len(orders_for(services, key)) == 1 and confirmations(services, view.order.code) == 1


def test_the_reconciler_leaves_reservations_alone_while_the_provider_is_down(
    run: Run[Any], services: Services, owner: Account
) -> None:
    # given a charged reservation old enough for the reconciler, and the provider down
    key = charged_without_an_answer(run, services, owner)
    age_reservation(services, key, seconds=stale(services))
    expire_reservation(services, key)
    provider(services).find_down = True
    # when the reconciler passes -> it neither confirms nor releases (it cannot know)
    assert run(services.reconciler.run_once()) == 0
    assert reservation(services, key).status == "RESERVED" and stock(services) == 48
    # when the provider answers again and the reconciler looks again (it waits a little
    # after a failed look) -> the charge is found and the order confirmed, even though
    # the reservation expired meanwhile (the customer paid)
    provider(services).find_down = False
    assert run(services.reconciler.run_once()) == 0  # not due again yet
    age_reservation(services, key, seconds=RECHECK_SECONDS)
    assert run(services.reconciler.run_once()) == 1
    assert len(orders_for(services, key)) == 1 and stock(services) == 48
    assert len(ledger(services, "charge")) == 1


def test_a_late_retry_of_a_charged_reservation_does_not_charge_the_customer_twice(
    run: Run[Any], services: Services, owner: Account
) -> None:
    """A retry late in a charged reservation's life resumes it with the same payment key
    (the provider answers with the first charge) and renews its life, so the customer
    pays once and the reconciler does not release it under the retry."""
    # given a placeOrder whose card was charged but whose answer was lost, late in the
    # reservation's life (20 s left: the reconciler could not reach the provider so far)
    key = charged_without_an_answer(run, services, owner)
    with reservation_of(services, key) as (session, found):
        found.expires_at = utcnow() + timedelta(seconds=20)
        session.add(found)
        session.commit()
    # when the customer retries with the same key, and the reconciler passes afterwards
    view = place(run, services, owner, key)
    age_reservation(services, key, seconds=stale(services))
    run(services.reconciler.run_once())
    # then there is one order, and the customer paid for it once (a second charge, if
    # any, was given back)
    assert len(orders_for(services, key)) == 1
    charged = sum(row.amount_minor for row in ledger(services, "charge"))
    refunded = sum(row.amount_minor for row in ledger(services, "refund"))
    keys = [row.idempotency_key for row in ledger(services, "charge")]
    assert charged - refunded == view.order.total_minor, (charged, refunded, keys)


def test_a_charged_reservation_is_not_kept_waiting_behind_uncharged_ones(
    run: Run[Any], services: Services, owner: Account
) -> None:
    """A full batch of uncharged reservations (they wait for their expiry) ahead of a
    charged one: the same pass reaches the charged one (each looked-at reservation is
    rescheduled to its expiry, and the pass takes batch after batch)."""
    batch = inspect.signature(services.placement.reconcile).parameters["limit"].default
    with db_session(services) as session:  # enough mugs for a batch and one more
        session.execute(update(Product).values(stock=2 * (batch + 1)))
        session.commit()
    # given a batch of reservations whose charge never got through (a provider outage;
    # they wait for their expiry), then one whose card was charged
    waiting = [new_key() for _ in range(batch)]
    for key in waiting:
        provider(services).unreachable = 1
        interrupted_place(run, services, owner, key)
    paid = charged_without_an_answer(run, services, owner)
    for key in [*waiting, paid]:
        age_reservation(services, key, seconds=stale(services))
    # when the reconciler passes
    run(services.reconciler.run_once())
    # then the paid one became its order (now, not once the others expired)
    assert reservation(services, paid).status == "CONFIRMED"
    assert len(orders_for(services, paid)) == 1
    assert all(reservation(services, key).status == "RESERVED" for key in waiting)


def refund_of(services: Services, code: str) -> PaymentRefund:
    with db_session(services) as session:
        found: PaymentRefund = session.execute(
            select(PaymentRefund).where(col(PaymentRefund.idempotency_key) == f"cancel:{code}")
        ).scalar_one()
        return found


def order_of(services: Services, code: str) -> Order:
    with db_session(services) as session:
        found: Order = session.execute(select(Order).where(col(Order.code) == code)).scalar_one()
        return found


def make_refund_due(services: Services, code: str) -> None:
    """As if the refund had been decided long ago and its backoff had run out."""
    with db_session(services) as session:
        refund = session.execute(
            select(PaymentRefund).where(col(PaymentRefund.idempotency_key) == f"cancel:{code}")
        ).scalar_one()
        refund.created_at = utcnow() - timedelta(seconds=stale(services))
        refund.next_attempt_at = utcnow() - timedelta(seconds=1)
        session.add(refund)
        session.commit()

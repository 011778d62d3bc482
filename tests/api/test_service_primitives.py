"""The service layer's primitives on the real databases: the unit of work (publish only after
a commit, roll back by default), the one status change (compare-and-set), and the door
declarations' own rules."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlmodel import col

from app.container import Services
from app.errors import Conflict
from app.events.broker import order_topic
from app.orders.models import Order, OrderStatus
from app.orders.service import OrderView
from app.security.doors import DECLARED, Subject, Who, declare
from app.security.roles import Role
from app.status_change import change_status
from app.unit_of_work import UnitsOfWork
from tests.conftest import Account, Run, db_session


async def _events_after(
    services: Services,
    order_id: int,
    work: Callable[[UnitsOfWork, list[tuple[str, Any]]], Awaitable[Any]],
) -> tuple[list[tuple[str, Any]], Any]:
    """Run `work` while a subscriber of the order's topic collects into a list (which `work`
    sees as it fills): the events, and what `work` returned or raised."""
    units = UnitsOfWork(services.db, services.events)
    got: list[tuple[str, Any]] = []
    async with services.events.subscribe([order_topic(order_id)]) as events:

        async def collect() -> None:
            async for event in events:
                got.append(event)

        collector = asyncio.create_task(collect())
        try:
            outcome: Any = await work(units, got)
        except Exception as exc:
            outcome = exc
        await asyncio.sleep(0.05)  # in-process delivery is a call_soon away
        collector.cancel()
    return got, outcome


def _name_in_db(services: Services, order_id: int) -> str:
    with db_session(services) as session:
        return str(
            session.execute(
                select(col(Order.ship_name)).where(col(Order.id) == order_id)
            ).scalar_one()
        )


@pytest.fixture
def placed(place_order: Callable[..., OrderView], owner: Account) -> Order:
    return place_order(owner).order


def test_a_unit_of_work_publishes_after_its_commit_and_only_then(
    services: Services, run: Run[Any], placed: Order
) -> None:
    assert placed.id is not None
    seen_before_commit: list[int] = []

    async def work(units: UnitsOfWork, got: list[tuple[str, Any]]) -> str:
        async with units.begin() as uow:
            order = await uow.session.get(Order, placed.id)
            assert order is not None
            order.ship_name = "Changed Name"
            uow.session.add(order)
            uow.publish(order, "STATUS_CHANGED")
            await asyncio.sleep(0.05)  # long enough for an event to arrive, had it been sent
            seen_before_commit.append(len(got))
            await uow.commit()
        return "done"

    events, outcome = run(_events_after(services, placed.id, work))
    assert outcome == "done"
    assert seen_before_commit == [0]
    assert events == [
        (order_topic(placed.id), {"type": "STATUS_CHANGED", "status": OrderStatus.PLACED.value})
    ]
    assert _name_in_db(services, placed.id) == "Changed Name"


@pytest.mark.parametrize("ending", ["no commit", "an exception"])
def test_a_unit_of_work_rolls_back_and_publishes_nothing_by_default(
    services: Services, run: Run[Any], placed: Order, ending: str
) -> None:
    assert placed.id is not None
    before = _name_in_db(services, placed.id)

    async def work(units: UnitsOfWork, got: list[tuple[str, Any]]) -> None:
        async with units.begin() as uow:
            order = await uow.session.get(Order, placed.id)
            assert order is not None
            order.ship_name = "Never Saved"
            uow.session.add(order)
            await uow.session.flush()  # the UPDATE ran inside the transaction
            uow.publish(order, "STATUS_CHANGED")
            uow.email(
                kind="order_cancelled",
                recipient="x@example.com",
                subject="s",
                body_text="b",
                dedupe_key=f"primitive-test.{placed.code}",
            )
            if ending == "an exception":
                raise Conflict("stop here")

    events, outcome = run(_events_after(services, placed.id, work))
    assert events == []
    assert (isinstance(outcome, Conflict)) == (ending == "an exception")
    assert _name_in_db(services, placed.id) == before
    with db_session(services) as session:
        queued = session.execute(
            text("SELECT count(*) FROM outbox_emails WHERE dedupe_key LIKE 'primitive-test.%'")
        ).scalar_one()
    assert queued == 0


def test_the_status_change_refuses_a_change_that_raced_it(
    services: Services, run: Run[Any], placed: Order
) -> None:
    assert placed.id is not None

    async def read() -> Order:
        async with services.db.read() as session:
            found = await session.get(Order, placed.id)
            assert found is not None
            return found

    stale = run(read())  # read as PLACED
    with db_session(services) as session:  # someone else moves it meanwhile
        session.execute(
            text("UPDATE orders SET status = 'PROCESSING' WHERE id = :id"), {"id": placed.id}
        )
        session.commit()

    async def move() -> None:
        async with UnitsOfWork(services.db, services.events).begin() as uow:
            await change_status(
                uow.session, stale, OrderStatus.CANCELLED, noun="order", field="code"
            )
            await uow.commit()

    with pytest.raises(Conflict) as refused:
        run(move())
    assert refused.value.field == "code"
    assert str(refused.value) == "The order changed meanwhile; try again."
    with db_session(services) as session:
        status = session.execute(
            select(col(Order.status)).where(col(Order.id) == placed.id)
        ).scalar_one()
    assert status == "PROCESSING"  # the other change stands, nothing was lost
    assert stale.status == OrderStatus.PLACED.value  # and the stale row was not mirrored


def test_the_status_change_moves_the_row_and_mirrors_it(
    services: Services, run: Run[Any], placed: Order
) -> None:
    async def move() -> Order:
        async with UnitsOfWork(services.db, services.events).begin() as uow:
            order = await uow.session.get(Order, placed.id)
            assert order is not None
            await change_status(
                uow.session, order, OrderStatus.PROCESSING, noun="order", field="code"
            )
            await uow.commit()
            return order

    moved = run(move())
    assert moved.status == OrderStatus.PROCESSING.value
    with db_session(services) as session:
        status = session.execute(
            select(col(Order.status)).where(col(Order.id) == placed.id)
        ).scalar_one()
    assert status == "PROCESSING"


def test_a_door_is_declared_once_and_says_who_may_pass() -> None:
    try:
        _declare_test_doors()
    finally:  # the registry is the matrix test's: leave it as the app declares it
        for name in ("testDoorOnce", "testDoorNoRoles", "testDoorOwnerRoles"):
            DECLARED.pop(name, None)


def _declare_test_doors() -> None:
    declare("testDoorOnce", Who.OWNER, Subject.ORDER)
    declare("testDoorOnce", Who.OWNER, Subject.ORDER)  # the same declaration again: fine
    with pytest.raises(ValueError, match="declared twice"):
        declare("testDoorOnce", Who.STAFF, Subject.ORDER, Role.ADMIN)
    with pytest.raises(ValueError, match="names its roles"):
        declare("testDoorNoRoles", Who.STAFF, Subject.ORDER)
    with pytest.raises(ValueError, match="only staff doors"):
        declare("testDoorOwnerRoles", Who.OWNER, Subject.ORDER, Role.ADMIN)

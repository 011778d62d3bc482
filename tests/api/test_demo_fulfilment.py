"""The demo data reaches its shipped and delivered states through the real warehouse use
cases (real shipments and tracking events), and seeding again changes nothing."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from app.container import Services
from app.demo import seed_demo
from tests.conftest import Run, db_session


def snapshot(services: Services) -> dict[str, object]:
    with db_session(services) as session:
        statuses = sorted(
            session.execute(
                text(
                    "SELECT u.email, o.status FROM orders o JOIN users u ON u.id = o.user_id "
                    "ORDER BY u.email, o.status"
                )
            ).all()
        )
        shipments = sorted(
            session.execute(
                text(
                    "SELECT s.tracking_number, s.status, o.status, count(e.id) "
                    "FROM shipments s JOIN orders o ON o.id = s.order_id "
                    "LEFT JOIN tracking_events e ON e.shipment_id = s.id "
                    "GROUP BY s.tracking_number, s.status, o.status"
                )
            ).all()
        )
        packs = session.execute(text("SELECT count(*) FROM packs")).scalar_one()
        emails = session.execute(
            text("SELECT count(*) FROM outbox_emails WHERE kind = 'order_shipped'")
        ).scalar_one()
    return {"statuses": statuses, "shipments": shipments, "packs": packs, "emails": emails}


def test_demo_orders_ship_and_deliver_through_the_warehouse_idempotently(
    services: Services, run: Run[Any]
) -> None:
    # when the demo data is loaded
    run(seed_demo(services))
    first = snapshot(services)
    # then the shipped and delivered orders have shipments with tracking events
    assert first["shipments"] == [
        ("DEMO-ALICE-1", "DELIVERED", "DELIVERED", 3),
        ("DEMO-ALICE-2", "IN_TRANSIT", "SHIPPED", 1),
        ("DEMO-BOB-1", "DELIVERED", "DELIVERED", 3),
    ]
    # then every demo status is as the README promises
    assert first["statuses"] == [
        ("alice@example.com", "DELIVERED"),
        ("alice@example.com", "PLACED"),
        ("alice@example.com", "PROCESSING"),
        ("alice@example.com", "SHIPPED"),
        ("bob@example.com", "CANCELLED"),
        ("bob@example.com", "DELIVERED"),
        ("bob@example.com", "PLACED"),
    ]
    assert first["emails"] == 3
    # when it is loaded again
    created = run(seed_demo(services))
    # then nothing new was made
    assert created == 0
    assert snapshot(services) == first

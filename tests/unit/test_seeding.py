"""The one seeding module (app/seeding) writes what scripts/bench and scripts/loadtest rely
on, at a small scale, on both databases: the counts each seed reports are the rows in the
tables, every order's history agrees with its status, and the app can insert after it
(the sequences were moved past the seeded ids)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import create_engine, text

from app.catalog.models import Product
from app.engines import normalise_url
from app.seeding import bench, load


def rows_of(url: str, sql: str) -> list[Any]:
    engine = create_engine(normalise_url(url))
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(sql)).all())
    finally:
        engine.dispose()


def count(url: str, table: str) -> int:
    return int(rows_of(url, f"SELECT count(*) FROM {table}")[0][0])


def next_product_id(url: str) -> int:
    """The id the database gives the next product the app inserts."""
    engine = create_engine(normalise_url(url))
    try:
        with engine.begin() as conn:
            conn.execute(
                Product.__table__.insert().values(  # type: ignore[attr-defined]  # SQLModel
                    sku="AFTER-SEED", name="After", price_minor=1, bin_location="Z"
                )
            )
            return int(
                conn.execute(text("SELECT id FROM products WHERE sku = 'AFTER-SEED'")).scalar_one()
            )
    finally:
        engine.dispose()


def test_the_bench_seed_writes_the_rows_it_reports_and_a_story_per_status(
    database_url: str,
) -> None:
    # when the bench's data is seeded at a small scale
    seeded = bench.seed(database_url, 400, 10, 40)
    # then every count it reports is the table's row count
    for table, n in seeded.rows.items():
        assert count(database_url, table) == n, table
    assert seeded.rows["orders"] == 400 and seeded.rows["users"] == 10
    assert seeded.rows["products"] == len(bench.PRODUCTS)
    # and the bench customer owns exactly `my_orders` orders, the ones it expects
    mine = rows_of(database_url, "SELECT code, status, total_minor FROM orders WHERE user_id = 1")
    assert len(mine) == 40 == len(seeded.expected)
    for code, status, total in mine:
        assert seeded.expected[code] == {"status": status, "amount": total, "currency": "EUR"}
    # and only its orders have a history; a delivered one's parcels are all delivered
    owners = rows_of(
        database_url,
        "SELECT DISTINCT o.user_id FROM shipments s JOIN orders o ON o.id = s.order_id",
    )
    assert owners == [(1,)]
    for code in seeded.codes_of("delivered"):
        states = rows_of(
            database_url,
            "SELECT s.status FROM shipments s JOIN orders o ON o.id = s.order_id "
            f"WHERE o.code = '{code}'",
        )
        assert states and {s for (s,) in states} == {"DELIVERED"}, code
    for code in seeded.codes_of("not_shipped") + seeded.codes_of("cancelled"):
        assert not rows_of(
            database_url,
            "SELECT s.id FROM shipments s JOIN orders o ON o.id = s.order_id "
            f"WHERE o.code = '{code}'",
        )
    # and one live session of the bench customer
    assert rows_of(database_url, "SELECT public_id, user_id FROM auth_sessions") == [
        (seeded.session_public_id, 1)
    ]
    # and the app's next product follows the seeded ones
    assert next_product_id(database_url) == len(bench.PRODUCTS) + 1


def test_the_load_seed_writes_customers_sessions_and_orders_in_three_states(
    database_url: str,
) -> None:
    # when the load test's data is seeded at a small scale
    seeded = load.seed(database_url, 300, 30, 3, 6)
    # then customers, their sessions and products are all there; three can log in
    assert count(database_url, "users") == len(seeded.customers) == 30
    assert count(database_url, "auth_sessions") == 30
    assert count(database_url, "products") == len(seeded.products) == 6
    hashes = rows_of(database_url, "SELECT password_hash FROM users ORDER BY id")
    assert [h.startswith("$argon2id$") for (h,) in hashes] == [True] * 3 + [False] * 27
    # and the orders, lines and events it reports
    assert count(database_url, "orders") == seeded.orders == 300
    assert count(database_url, "order_lines") == seeded.lines
    assert count(database_url, "tracking_events") == seeded.events
    # and each order's parcel agrees with its status (one pack and one parcel per shipped
    # order; two events in transit, three once delivered)
    by_status = Counter(status for (status,) in rows_of(database_url, "SELECT status FROM orders"))
    assert set(by_status) == {"PLACED", "SHIPPED", "DELIVERED"}
    parcels = rows_of(
        database_url,
        "SELECT o.status, s.status, s.tracking_number, s.carrier, "
        "(SELECT count(*) FROM tracking_events e WHERE e.shipment_id = s.id) "
        "FROM orders o JOIN shipments s ON s.order_id = o.id",
    )
    assert len(parcels) == by_status["SHIPPED"] + by_status["DELIVERED"]
    assert count(database_url, "packs") == len(parcels)
    for order_status, parcel_status, _, _, events in parcels:
        if order_status == "SHIPPED":
            assert (parcel_status, events) == ("IN_TRANSIT", 2)
        else:
            assert (order_status, parcel_status, events) == ("DELIVERED", "DELIVERED", 3)
    in_transit = {(c, t) for _, s, t, c, _ in parcels if s == "IN_TRANSIT"}
    assert set(seeded.shipments) == in_transit
    # and every lookup is an order of the customer it is drawn for
    owner_of = dict(rows_of(database_url, "SELECT code, user_id FROM orders"))
    assert seeded.lookups
    for index, code in seeded.lookups:
        assert owner_of[code] == seeded.customers[index].id
    assert next_product_id(database_url) == 7

"""The shape of scripts/loadtest: `customers` customers, each with a live session (the
first `n_login` of them can also log in, with LOGIN_PASSWORD hashed by the production
argon2id parameters), `products` products with stock that never runs out, and `orders`
orders of 1-3 lines: 15 % PLACED, 25 % SHIPPED (one parcel, in transit), 60 % DELIVERED
(one parcel, delivered two days after shipping), each parcel with its pack and tracking
events. About half of the orders are drawn as lookups for their owners. PostgreSQL only
(the load test runs there)."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from app.engines import make_engine
from app.orders.models import OrderStatus
from app.orders.pricing import compute_totals
from app.payments.models import provider_metadata
from app.security.passwords import Passwords
from app.security.tokens import new_public_id
from app.seeding import rows

LOGIN_PASSWORD = "load-test-Passw0rd-4711"
CHUNK = 5_000
CARRIERS = ("DHL", "UPS", "DPD")
CITIES = (
    ("Berlin", "10115"),
    ("Hamburg", "20095"),
    ("Munich", "80331"),
    ("Cologne", "50667"),
    ("Leipzig", "04109"),
)
# Parents first: the order in which the tables are written.
ORDER_TABLES = (
    "users",
    "auth_sessions",
    "products",
    "orders",
    "order_lines",
    "packs",
    "pack_lines",
    "shipments",
    "shipment_lines",
    "tracking_events",
)


@dataclass
class Customer:
    id: int
    public_id: str
    session_public_id: str
    email: str
    name: str
    can_login: bool
    orders: list[tuple[datetime, str]] = field(default_factory=list)  # (placed_at, code)


@dataclass
class Seeded:
    customers: list[Customer]
    products: list[tuple[str, int]]  # (sku, price)
    stock: dict[int, int]  # product id -> stock at the start
    lookups: list[tuple[int, str]]  # (customer index, canonical code)
    shipments: list[tuple[str, str]]  # (carrier, tracking number) of parcels in transit
    orders: int
    lines: int
    events: int
    seconds: float


def seed(
    database_url: str, n_orders: int, n_customers: int, n_login: int, n_products: int
) -> Seeded:
    """Write the load test's data into the migrated database at `database_url`."""
    started = time.perf_counter()
    rng = random.Random(20261128)  # noqa: S311 (a repeatable seed, not a secret)
    now = datetime.now(UTC).replace(microsecond=0)
    login_hash = asyncio.run(Passwords().hash(LOGIN_PASSWORD))  # production argon2id
    customers = [
        Customer(
            id=i + 1,
            public_id=new_public_id(),
            session_public_id=new_public_id(),
            email=f"load-customer-{i}@shop.example",
            name=f"Load Customer {i}",
            can_login=i < n_login,
        )
        for i in range(n_customers)
    ]
    products = [
        (pid, f"LT-{pid:04d}", f"Load test product {pid}", rng.randrange(490, 9_000, 10))
        for pid in range(1, n_products + 1)
    ]
    stock = {pid: 10_000_000 for pid, *_ in products}
    engine = make_engine(database_url)
    provider_metadata.create_all(engine, checkfirst=True)  # the test provider's own ledger
    ids = {"order": 0, "line": 0, "pack": 0, "pack_line": 0, "shipment": 0, "event": 0}
    in_transit: list[tuple[str, str]] = []
    codes = rows.UniqueCodes()
    n_lines = n_events = 0
    with engine.begin() as conn:
        rows.insert_rows(
            conn,
            "products",
            [
                rows.product(pid, sku, name, price, stock=stock[pid], bin_=f"A-{pid:02d}")
                for pid, sku, name, price in products
            ],
        )
        rows.insert_rows(
            conn,
            "users",
            [
                rows.customer(
                    c.id,
                    c.public_id,
                    c.email,
                    login_hash if c.can_login else "!load-test-no-login",
                    c.name,
                    now - timedelta(days=400),
                )
                for c in customers
            ],
        )
        rows.insert_rows(
            conn,
            "auth_sessions",
            [rows.auth_session(c.session_public_id, c.id, now, c.id) for c in customers],
        )
        for start in range(0, n_orders, CHUNK):
            batch: dict[str, list[rows.Row]] = {table: [] for table in ORDER_TABLES[3:]}
            for _ in range(min(CHUNK, n_orders - start)):
                ids["order"] += 1
                order_id = ids["order"]
                code = codes.new()
                owner = customers[rng.randrange(n_customers)]
                placed = now - timedelta(minutes=rng.randrange(60, 365 * 24 * 60))
                owner.orders.append((placed, code))
                chosen = rng.sample(products, rng.randint(1, 3))
                quantities = [rng.randint(1, 3) for _ in chosen]
                totals = compute_totals(
                    [p[3] * q for p, q in zip(chosen, quantities, strict=True)],
                    shipping_flat=495,
                    free_from=5000,
                    tax_basis_points=2000,
                )
                roll = rng.random()
                status = (
                    OrderStatus.PLACED
                    if roll < 0.15
                    else OrderStatus.SHIPPED
                    if roll < 0.40
                    else OrderStatus.DELIVERED
                )
                city, postal = CITIES[owner.id % len(CITIES)]
                batch["orders"].append(
                    rows.order(
                        order_id,
                        code,
                        owner.id,
                        status.value,
                        totals,
                        ship_to=(owner.name, f"{owner.id} Load Street", "", city, postal),
                        card=("VISA", "4242"),
                        reference=f"ch_seed_{order_id}",
                        key=f"seed-{order_id}",
                        estimated_delivery=(placed + timedelta(days=3)).date(),
                        placed_at=placed,
                    )
                )
                line_ids = []
                for (pid, sku, name, price), quantity in zip(chosen, quantities, strict=True):
                    ids["line"] += 1
                    line_ids.append((ids["line"], quantity))
                    batch["order_lines"].append(
                        rows.order_line(ids["line"], order_id, pid, sku, name, price, quantity)
                    )
                if status is OrderStatus.PLACED:
                    continue
                # Packed and shipped in one parcel a day after the order; tracking events.
                shipped = placed + timedelta(days=1)
                delivered = status is OrderStatus.DELIVERED
                ids["pack"] += 1
                ids["shipment"] += 1
                carrier = CARRIERS[order_id % len(CARRIERS)]
                tracking = f"LT{order_id:010d}"
                batch["packs"].append(rows.pack(ids["pack"], order_id, shipped))
                timeline = [
                    ("LABEL_CREATED", shipped),
                    ("IN_TRANSIT", shipped + timedelta(hours=6)),
                ]
                if delivered:
                    timeline.append(("DELIVERED", shipped + timedelta(days=2)))
                batch["shipments"].append(
                    rows.shipment(
                        ids["shipment"],
                        order_id,
                        carrier,
                        tracking,
                        timeline[-1][0],
                        estimated_delivery=(shipped + timedelta(days=2)).date(),
                        shipped_at=shipped,
                        delivered_at=timeline[-1][1] if delivered else None,
                        last_event_at=timeline[-1][1],
                    )
                )
                for line_id, quantity in line_ids:
                    ids["pack_line"] += 1
                    batch["pack_lines"].append(
                        rows.pack_line(ids["pack_line"], ids["pack"], line_id, quantity)
                    )
                    batch["shipment_lines"].append(
                        rows.shipment_line(ids["pack_line"], ids["shipment"], line_id, quantity)
                    )
                for event_status, at in timeline:
                    ids["event"] += 1
                    batch["tracking_events"].append(
                        rows.tracking_event(
                            ids["event"],
                            ids["shipment"],
                            carrier,
                            f"seed-{ids['event']}",
                            event_status,
                            location=city,
                            description="",
                            occurred_at=at,
                            received_at=at,
                        )
                    )
                if not delivered:
                    in_transit.append((carrier, tracking))
            for table, values in batch.items():
                rows.insert_rows(conn, table, values)
            n_lines += len(batch["order_lines"])
            n_events += len(batch["tracking_events"])
        rows.advance_sequences(conn, ORDER_TABLES)
    engine.dispose()
    lookups = [
        (index, code)
        for index, customer in enumerate(customers)
        for _, code in customer.orders
        if rng.random() < 0.5
    ]
    if not lookups or not in_transit:
        raise rows.SeedError(
            "the seed has no orders to look up or no parcel in transit: use more --orders"
        )
    return Seeded(
        customers=customers,
        products=[(sku, price) for _, sku, _, price in products],
        stock=stock,
        lookups=lookups,
        shipments=in_transit,
        orders=n_orders,
        lines=n_lines,
        events=n_events,
        seconds=time.perf_counter() - started,
    )

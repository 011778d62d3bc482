"""The shape of scripts/bench: `orders` orders with 1-3 lines each over a small catalogue,
owned by `customers` customers. One of them, the bench customer, owns `my_orders` of them
(spread evenly over the table), and only those carry an order page's worth of history:
about 40 % not shipped yet (PLACED / PROCESSING / PACKED), 5 % cancelled (refunded), 15 %
in transit (1-2 shipments, a few only partly shipped) and 40 % delivered (1-2 shipments
with their lines and 2-4 tracking events each; a third of them with a return request and
its lines, in every return status: app/seeding/history.py). Packs are not written: no page
of the bench reads them. The other customers' orders only give the tables their size.

After the inserts: ANALYZE (VACUUM ANALYZE on PostgreSQL, and the id sequences are moved
past the explicit ids), so both targets read a database with planner statistics."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from app.engines import make_engine
from app.migrate import upgrade
from app.orders.models import OrderStatus
from app.orders.pricing import add_business_days, compute_totals
from app.security.tokens import new_public_id
from app.seeding import rows
from app.seeding.history import History, Ids, story

CHUNK = 10_000
# id, sku, name, price (minor units), bin
PRODUCTS = [
    (1, "BENCH-TEE", "Bench T-shirt", 1999, "A-01-01"),
    (2, "BENCH-HOODIE", "Bench hoodie", 4999, "A-01-02"),
    (3, "BENCH-MUG", "Bench mug", 1299, "B-02-01"),
    (4, "BENCH-CAP", "Bench cap", 1599, "B-02-02"),
    (5, "BENCH-SOCKS", "Bench socks (3 pairs)", 999, "C-03-01"),
    (6, "BENCH-TOTE", "Bench tote bag", 1499, "C-03-02"),
    (7, "BENCH-BOTTLE", "Bench water bottle", 2499, "D-04-01"),
    (8, "BENCH-NOTEBOOK", "Bench notebook", 899, "D-04-02"),
]
OTHER_STATUSES = [
    OrderStatus.PLACED,
    OrderStatus.PROCESSING,
    OrderStatus.SHIPPED,
    OrderStatus.DELIVERED,
]


@dataclass
class Seeded:
    user_public_id: str
    session_public_id: str
    # the bench customer's orders: canonical code -> {status, amount, currency}
    expected: dict[str, dict[str, Any]]
    kind_of: dict[str, str]  # canonical code -> not_shipped / cancelled / in_transit / ...
    seconds: float
    rows: dict[str, int] = field(default_factory=dict)

    @property
    def orders(self) -> int:
        return self.rows.get("orders", 0)

    def codes_of(self, kind: str) -> list[str]:
        return [code for code, k in self.kind_of.items() if k == kind]


def seed(database_url: str, n_orders: int, n_customers: int, my_orders: int) -> Seeded:
    """Migrate `database_url` and write the bench's data into it."""
    started = time.perf_counter()
    upgrade(database_url)
    engine = make_engine(database_url)
    rng = random.Random(20260101)  # noqa: S311 (a repeatable seed, not a secret)
    now = datetime.now(UTC).replace(microsecond=0)
    users = [
        rows.customer(
            i + 1,
            new_public_id(),
            f"bench-customer-{i}@shop.example",
            "!bench-no-login",
            f"Bench Customer {i}",
            now - timedelta(days=800),
        )
        for i in range(n_customers)
    ]
    customer = users[0]
    stride = n_orders // my_orders
    mine_ids = {1 + stride // 2 + k * stride for k in range(my_orders)}
    expected: dict[str, dict[str, Any]] = {}
    kind_of: dict[str, str] = {}
    counts: dict[str, int] = {"users": len(users), "products": len(PRODUCTS)}
    ids = Ids()
    history = History()
    codes = rows.UniqueCodes()

    with engine.begin() as conn:
        rows.insert_rows(
            conn,
            "products",
            [
                rows.product(pid, sku, name, price, stock=1_000_000, bin_=bin_)
                for pid, sku, name, price, bin_ in PRODUCTS
            ],
        )
        rows.insert_rows(conn, "users", users)
        mine_rank = 0
        for start in range(0, n_orders, CHUNK):
            orders: list[rows.Row] = []
            lines: list[rows.Row] = []
            for order_id in range(start + 1, min(start + CHUNK, n_orders) + 1):
                code = codes.new()
                is_mine = order_id in mine_ids
                owner = customer if is_mine else users[1 + order_id % (n_customers - 1)]
                products = rng.sample(PRODUCTS, rng.randint(1, 3 if is_mine else 2))
                order_lines = []
                for pid, sku, name, price, _ in products:
                    ids.order_line += 1
                    order_lines.append(
                        rows.order_line(
                            ids.order_line, order_id, pid, sku, name, price, rng.randint(1, 3)
                        )
                    )
                totals = compute_totals(
                    [line["unit_price_minor"] * line["quantity"] for line in order_lines],
                    shipping_flat=495,
                    free_from=5000,
                    tax_basis_points=2000,
                )
                if is_mine:
                    # One order every ~2 days, the newest 20 days ago: every step of its
                    # story (shipping, delivery, return) lies in the past.
                    placed = now - timedelta(days=20 + 2 * mine_rank, minutes=rng.randint(0, 900))
                    mine_rank += 1
                else:
                    placed = now - timedelta(minutes=order_id)
                order = rows.order(
                    order_id,
                    code,
                    owner["id"],
                    OTHER_STATUSES[order_id % len(OTHER_STATUSES)].value,
                    totals,
                    ship_to=(
                        owner["name"],
                        "1 Bench Street",
                        "Floor 3" if order_id % 3 == 0 else "",
                        "Berlin",
                        "10115",
                    ),
                    card=(
                        "visa" if order_id % 4 else "mastercard",
                        f"{4242 + order_id % 7:04d}",
                    ),
                    reference=f"ch_bench_{order_id}",
                    key=f"bench-{order_id}",
                    estimated_delivery=add_business_days(placed.date(), 3),
                    placed_at=placed,
                )
                if is_mine:
                    kind = story(rng, order, order_lines, ids, history, codes.new)
                    kind_of[code] = kind
                    expected[code] = {
                        "status": order["status"],
                        "amount": order["total_minor"],
                        "currency": "EUR",
                    }
                orders.append(order)
                lines.extend(order_lines)
            counts["orders"] = counts.get("orders", 0) + rows.insert_rows(conn, "orders", orders)
            counts["order_lines"] = counts.get("order_lines", 0) + rows.insert_rows(
                conn, "order_lines", lines
            )
        for table, values in history.tables().items():
            counts[table] = rows.insert_rows(conn, table, values)
        session_public_id = new_public_id()
        rows.insert_rows(
            conn, "auth_sessions", [rows.auth_session(session_public_id, customer["id"], now, None)]
        )
        rows.advance_sequences(conn, (*counts, "auth_sessions"))
    rows.analyze(engine)
    engine.dispose()
    if not expected:
        raise rows.SeedError("the bench customer owns no order: use more --orders")
    return Seeded(
        user_public_id=customer["public_id"],
        session_public_id=session_public_id,
        expected=expected,
        kind_of=kind_of,
        seconds=time.perf_counter() - started,
        rows=counts,
    )

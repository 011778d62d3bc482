"""The data of scripts/bench: a scratch database (SQLite file or PostgreSQL database), its
schema (the app's migrations) and a seed written with SQLAlchemy Core bulk inserts.

The seed: `orders` orders with 1-3 lines each over a small catalogue, owned by `customers`
customers. One of them, the bench customer, owns `my_orders` of them (spread evenly over
the table), and only those carry an order page's worth of history: about 40 % not
shipped yet (PLACED / PROCESSING / PACKED), 5 % cancelled (refunded), 15 % in transit
(1-2 shipments, a few only partly shipped) and 40 % delivered (1-2 shipments with their
lines and 2-4 tracking events each; a third of them with a return request and its lines,
in every return status). Packs are not written: no page of the bench reads them.
The other customers' orders only give the tables their size.

After the inserts: ANALYZE (VACUUM ANALYZE on PostgreSQL, and the id sequences are moved
past the explicit ids), so both targets read a database with planner statistics.
"""

from __future__ import annotations

import random
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.pool import NullPool

import app.models  # noqa: F401  (registers every table)
from app.accounts.models import AuthSession, User
from app.catalog.models import Product
from app.db import make_engine, normalise_url
from app.migrate import upgrade
from app.orders.models import Order, OrderLine, OrderStatus
from app.orders.pricing import add_business_days, compute_totals
from app.returns.models import ReturnLine, ReturnReason, ReturnRequest, ReturnStatus
from app.security import codes
from app.security.tokens import new_public_id
from app.shipments.models import Shipment, ShipmentLine, ShipmentStatus, TrackingEvent

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
CARRIERS = ["DHL", "UPS", "DPD", "GLS"]
HUBS = ["Leipzig", "Hannover", "Frankfurt", "Kassel", "Nuremberg", "Cologne"]
LC, IT, OFD, DLV = (
    ShipmentStatus.LABEL_CREATED.value,
    ShipmentStatus.IN_TRANSIT.value,
    ShipmentStatus.OUT_FOR_DELIVERY.value,
    ShipmentStatus.DELIVERED.value,
)
IN_TRANSIT_EVENTS = {2: [LC, IT], 3: [LC, IT, IT], 4: [LC, IT, IT, OFD]}
DELIVERED_EVENTS = {2: [LC, DLV], 3: [LC, IT, DLV], 4: [LC, IT, OFD, DLV]}
EVENT_TEXT = {
    LC: "Shipment information received",
    IT: "Arrived at the sorting centre",
    OFD: "Out for delivery",
    DLV: "Delivered, handed to the recipient",
}
RETURN_STATUSES = [
    ReturnStatus.REQUESTED,
    ReturnStatus.APPROVED,
    ReturnStatus.REJECTED,
    ReturnStatus.RECEIVED,
    ReturnStatus.REFUNDED,
]
RETURN_WEIGHTS = [2, 2, 1, 2, 3]
# What the bench customer's orders are, by share of their orders.
KINDS = [("not_shipped", 0.40), ("cancelled", 0.05), ("in_transit", 0.15), ("delivered", 0.40)]


def fail(message: str) -> SystemExit:
    return SystemExit(f"bench: FAILED: {message}")


# -- the scratch database ---------------------------------------------------------------


@dataclass
class ScratchDatabase:
    """Where the bench writes: a fresh SQLite file, or a fresh PostgreSQL database created
    through the admin URL (and dropped WITH (FORCE) by `drop`)."""

    url: str  # for the app: sqlite:///PATH or postgresql://...
    kind: str  # "sqlite" or "postgresql"
    admin_url: str | None = None
    name: str | None = None

    @classmethod
    def sqlite(cls, path: str) -> ScratchDatabase:
        return cls(url=f"sqlite:///{path}", kind="sqlite")

    @classmethod
    def postgresql(cls, admin_url: str) -> ScratchDatabase:
        name = f"orders_bench_{secrets.token_hex(4)}"
        parsed = make_url(admin_url)
        url = parsed.set(database=name).render_as_string(hide_password=False)
        admin = create_engine(normalise_url(admin_url), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        except Exception as exc:
            raise fail(
                f"cannot create a scratch database through {parsed.render_as_string()} "
                f"(BENCH_POSTGRES_URL): {type(exc).__name__}: {str(exc).strip()[:300]}"
            ) from exc
        finally:
            admin.dispose()
        return cls(url=url, kind="postgresql", admin_url=admin_url, name=name)

    @property
    def shown(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    def sessions(self) -> SessionCount:
        """Counts the connections opened to this database (PostgreSQL only)."""
        return SessionCount(self.url if self.kind == "postgresql" else None)

    def drop(self) -> None:
        if self.kind != "postgresql" or self.admin_url is None:
            return
        admin = create_engine(normalise_url(self.admin_url), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        finally:
            admin.dispose()


class SessionCount:
    """PostgreSQL's count of connections (sessions) opened to the database so far, read
    on one connection kept open for the purpose; None on SQLite or if it cannot be read.
    Backends report it within about a second."""

    def __init__(self, url: str | None) -> None:
        self.conn: Connection | None = None
        self.engine: Engine | None = None
        if url is None:
            return
        try:
            self.engine = create_engine(
                normalise_url(url), poolclass=NullPool, isolation_level="AUTOCOMMIT"
            )
            self.conn = self.engine.connect()
        except Exception:
            self.conn = None

    def read(self) -> int | None:
        if self.conn is None:
            return None
        try:
            value = self.conn.execute(
                text("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
            ).scalar()
        except Exception:
            return None
        return int(value) if value is not None else None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if self.engine is not None:
            self.engine.dispose()


# -- the seed ------------------------------------------------------------------------------


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


@dataclass
class _Ids:
    order_line: int = 0
    shipment: int = 0
    shipment_line: int = 0
    event: int = 0
    return_request: int = 0
    return_line: int = 0


@dataclass
class _History:
    """The rows below the bench customer's orders, written after the orders."""

    shipments: list[dict[str, Any]] = field(default_factory=list)
    shipment_lines: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    returns: list[dict[str, Any]] = field(default_factory=list)
    return_lines: list[dict[str, Any]] = field(default_factory=list)


def seed(database_url: str, n_orders: int, n_customers: int, my_orders: int) -> Seeded:
    started = time.perf_counter()
    upgrade(database_url)
    engine = make_engine(database_url)
    rng = random.Random(20260101)
    now = datetime.now(UTC).replace(microsecond=0)
    users = [
        {
            "id": i + 1,
            "public_id": new_public_id(),
            "email": f"bench-customer-{i}@shop.example",
            "password_hash": "!bench-no-login",
            "name": f"Bench Customer {i}",
            "role": "CUSTOMER",
            "created_at": now - timedelta(days=800),
        }
        for i in range(n_customers)
    ]
    customer = users[0]
    stride = n_orders // my_orders
    mine_ids = {1 + stride // 2 + k * stride for k in range(my_orders)}
    expected: dict[str, dict[str, Any]] = {}
    kind_of: dict[str, str] = {}
    rows: dict[str, int] = {"users": len(users), "products": len(PRODUCTS)}
    ids = _Ids()
    history = _History()
    used_codes: set[str] = set()

    def new_code() -> str:
        code = codes.generate()
        while code in used_codes:
            code = codes.generate()
        used_codes.add(code)
        return code

    with engine.begin() as conn:
        conn.execute(
            insert(Product.__table__),  # type: ignore[attr-defined]
            [
                {
                    "id": pid,
                    "sku": sku,
                    "name": name,
                    "description": "",
                    "price_minor": price,
                    "currency": "EUR",
                    "stock": 1_000_000,
                    "bin_location": bin_,
                    "active": True,
                }
                for pid, sku, name, price, bin_ in PRODUCTS
            ],
        )
        conn.execute(insert(User.__table__), users)  # type: ignore[attr-defined]
        mine_rank = 0
        for start in range(0, n_orders, CHUNK):
            orders: list[dict[str, Any]] = []
            lines: list[dict[str, Any]] = []
            for order_id in range(start + 1, min(start + CHUNK, n_orders) + 1):
                code = new_code()
                is_mine = order_id in mine_ids
                owner = customer if is_mine else users[1 + order_id % (n_customers - 1)]
                products = rng.sample(PRODUCTS, rng.randint(1, 3 if is_mine else 2))
                order_lines = []
                for pid, sku, name, price, _ in products:
                    ids.order_line += 1
                    order_lines.append(
                        {
                            "id": ids.order_line,
                            "order_id": order_id,
                            "product_id": pid,
                            "sku": sku,
                            "name": name,
                            "unit_price_minor": price,
                            "quantity": rng.randint(1, 3),
                        }
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
                order = {
                    "id": order_id,
                    "code": code,
                    "user_id": owner["id"],
                    "status": OTHER_STATUSES[order_id % len(OTHER_STATUSES)].value,
                    "currency": "EUR",
                    "subtotal_minor": totals.subtotal_minor,
                    "shipping_minor": totals.shipping_minor,
                    "tax_minor": totals.tax_minor,
                    "total_minor": totals.total_minor,
                    "refunded_minor": 0,
                    "ship_name": owner["name"],
                    "ship_line1": "1 Bench Street",
                    "ship_line2": "Floor 3" if order_id % 3 == 0 else "",
                    "ship_city": "Berlin",
                    "ship_postal_code": "10115",
                    "ship_country": "DE",
                    "payment_brand": "visa" if order_id % 4 else "mastercard",
                    "payment_last4": f"{4242 + order_id % 7:04d}",
                    "payment_reference": f"ch_bench_{order_id}",
                    "idempotency_key": f"bench-{order_id}",
                    "request_fingerprint": "0" * 64,
                    "estimated_delivery": add_business_days(placed.date(), 3),
                    "placed_at": placed,
                    "updated_at": placed,
                    "cancelled_at": None,
                }
                if is_mine:
                    kind = _story(rng, order, order_lines, ids, history, new_code)
                    kind_of[code] = kind
                    expected[code] = {
                        "status": order["status"],
                        "amount": order["total_minor"],
                        "currency": "EUR",
                    }
                orders.append(order)
                lines.extend(order_lines)
            conn.execute(insert(Order.__table__), orders)  # type: ignore[attr-defined]
            conn.execute(insert(OrderLine.__table__), lines)  # type: ignore[attr-defined]
            rows["orders"] = rows.get("orders", 0) + len(orders)
            rows["order_lines"] = rows.get("order_lines", 0) + len(lines)
        for table, values in (
            (Shipment, history.shipments),
            (ShipmentLine, history.shipment_lines),
            (TrackingEvent, history.events),
            (ReturnRequest, history.returns),
            (ReturnLine, history.return_lines),
        ):
            if values:
                conn.execute(insert(table.__table__), values)  # type: ignore[attr-defined]
            rows[table.__tablename__] = len(values)  # type: ignore[attr-defined]
        session_public_id = new_public_id()
        conn.execute(
            insert(AuthSession.__table__),  # type: ignore[attr-defined]
            [
                {
                    "public_id": session_public_id,
                    "user_id": customer["id"],
                    "created_at": now,
                    "revoked_at": None,
                    "revoked_reason": None,
                }
            ],
        )
        if engine.dialect.name == "postgresql":
            for table in (*rows, "auth_sessions"):
                conn.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
                        f"(SELECT max(id) FROM {table}))"
                    )
                )
    _analyze(engine)
    engine.dispose()
    if not expected:
        raise fail("the bench customer owns no order: use more --orders")
    return Seeded(
        user_public_id=customer["public_id"],
        session_public_id=session_public_id,
        expected=expected,
        kind_of=kind_of,
        seconds=time.perf_counter() - started,
        rows=rows,
    )


def _analyze(engine: Any) -> None:
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    else:
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")


def _story(
    rng: random.Random,
    order: dict[str, Any],
    lines: list[dict[str, Any]],
    ids: _Ids,
    history: _History,
    new_code: Any,
) -> str:
    """Give one of the bench customer's orders its state and history rows; returns its
    kind. Mutates `order` (status, refunds, timestamps)."""
    placed: datetime = order["placed_at"]
    draw = rng.random()
    kind = KINDS[-1][0]
    for name, share in KINDS:
        if draw < share:
            kind = name
            break
        draw -= share
    if kind == "not_shipped":
        order["status"] = rng.choice(
            [OrderStatus.PLACED, OrderStatus.PROCESSING, OrderStatus.PACKED]
        ).value
        order["updated_at"] = placed + timedelta(hours=2)
        return kind
    if kind == "cancelled":
        cancelled = placed + timedelta(hours=3, minutes=rng.randint(0, 59))
        order.update(
            status=OrderStatus.CANCELLED.value,
            cancelled_at=cancelled,
            updated_at=cancelled,
            refunded_minor=order["total_minor"],
        )
        return kind
    # Parcels: one, or two when the order splits (by line, or a line's units).
    parcels: list[list[tuple[dict[str, Any], int]]]
    if rng.random() < 0.35 and len(lines) >= 2:
        split = len(lines) // 2
        parcels = [[(ln, ln["quantity"]) for ln in lines[:split]]]
        parcels.append([(ln, ln["quantity"]) for ln in lines[split:]])
    elif rng.random() < 0.35 and lines[0]["quantity"] >= 2:
        first = lines[0]["quantity"] // 2
        parcels = [[(lines[0], first)], [(lines[0], lines[0]["quantity"] - first)]]
        parcels[0] += [(ln, ln["quantity"]) for ln in lines[1:]]
    else:
        parcels = [[(ln, ln["quantity"]) for ln in lines]]
    delivered = kind == "delivered"
    partial = not delivered and len(parcels) == 2 and rng.random() < 0.4
    if partial:
        parcels = parcels[:1]
    shipments: list[dict[str, Any]] = []
    for index, parcel in enumerate(parcels):
        ids.shipment += 1
        shipped = placed + timedelta(days=1 + index, hours=rng.randint(1, 10))
        n_events = rng.randint(3, 4) if delivered else rng.randint(2, 4)
        statuses = (DELIVERED_EVENTS if delivered else IN_TRANSIT_EVENTS)[n_events]
        carrier = rng.choice(CARRIERS)
        at = shipped
        for status in statuses:
            ids.event += 1
            history.events.append(
                {
                    "id": ids.event,
                    "shipment_id": ids.shipment,
                    "carrier": carrier,
                    "carrier_event_id": f"bench-ev-{ids.event}",
                    "status": status,
                    "location": "" if status == LC else rng.choice(HUBS),
                    "description": EVENT_TEXT[status],
                    "occurred_at": at,
                    "received_at": at + timedelta(seconds=rng.randint(1, 90)),
                    "source": "CARRIER",
                    "recorded_by": None,
                }
            )
            last = at
            at += timedelta(hours=rng.randint(6, 20), minutes=rng.randint(0, 59))
        shipment = {
            "id": ids.shipment,
            "order_id": order["id"],
            "carrier": carrier,
            "tracking_number": f"{carrier}{ids.shipment:010d}",
            "status": statuses[-1],
            "estimated_delivery": (shipped + timedelta(days=2)).date(),
            "shipped_by": None,
            "shipped_at": shipped,
            "delivered_at": last if delivered else None,
            "last_event_at": last,
            "updated_at": last,
        }
        shipments.append(shipment)
        history.shipments.append(shipment)
        for line, quantity in parcel:
            ids.shipment_line += 1
            history.shipment_lines.append(
                {
                    "id": ids.shipment_line,
                    "shipment_id": ids.shipment,
                    "order_line_id": line["id"],
                    "quantity": quantity,
                }
            )
    order["status"] = (
        OrderStatus.DELIVERED.value
        if delivered
        else OrderStatus.PARTIALLY_SHIPPED.value
        if partial
        else OrderStatus.SHIPPED.value
    )
    order["updated_at"] = max(s["updated_at"] for s in shipments)
    if delivered and rng.random() < 0.35:
        kind = "returned"
        _return(rng, order, lines, shipments[0], parcels[0], ids, history, new_code)
    elif not delivered:
        kind = "partially_shipped" if partial else "in_transit"
    return kind


def _return(
    rng: random.Random,
    order: dict[str, Any],
    lines: list[dict[str, Any]],
    shipment: dict[str, Any],
    parcel: list[tuple[dict[str, Any], int]],
    ids: _Ids,
    history: _History,
    new_code: Any,
) -> None:
    """A return request for some units of the first parcel, in a random status."""
    status = rng.choices(RETURN_STATUSES, RETURN_WEIGHTS)[0]
    requested = shipment["delivered_at"] + timedelta(days=2, hours=rng.randint(0, 12))
    decided = requested + timedelta(days=1)
    approved = decided if status != ReturnStatus.REJECTED else None
    rejected = decided if status == ReturnStatus.REJECTED else None
    got_back = status in (ReturnStatus.RECEIVED, ReturnStatus.REFUNDED)
    received = decided + timedelta(days=3) if got_back else None
    refunded = decided + timedelta(days=4) if status == ReturnStatus.REFUNDED else None
    ids.return_request += 1
    refund = 0
    returned_units = 0
    for line, shipped_units in parcel:
        quantity = rng.randint(1, shipped_units)
        returned_units += quantity
        refund += quantity * line["unit_price_minor"]
        ids.return_line += 1
        history.return_lines.append(
            {
                "id": ids.return_line,
                "return_id": ids.return_request,
                "order_line_id": line["id"],
                "shipment_id": shipment["id"],
                "quantity": quantity,
                "received_quantity": quantity if got_back else None,
            }
        )
    history.returns.append(
        {
            "id": ids.return_request,
            "rma_code": new_code(),
            "order_id": order["id"],
            "status": status.value,
            "reason": rng.choice(list(ReturnReason)).value,
            "comment": rng.choice(["", "Too small.", "Arrived scratched."]),
            "rejection_reason": "Used items cannot be returned." if rejected else None,
            "currency": "EUR",
            "refund_minor": refund if refunded else None,
            "refund_reference": f"re_bench_{ids.return_request}" if refunded else None,
            "requested_at": requested,
            "approved_at": approved,
            "rejected_at": rejected,
            "received_at": received,
            "refunded_at": refunded,
            "updated_at": refunded or received or decided,
            "approved_by": None,
            "rejected_by": None,
            "received_by": None,
            "refunded_by": None,
        }
    )
    if got_back:
        whole = returned_units == sum(line["quantity"] for line in lines)
        order["status"] = (
            OrderStatus.RETURNED.value if whole else OrderStatus.PARTIALLY_RETURNED.value
        )
        order["updated_at"] = received
    if refunded:
        order["refunded_minor"] = refund
        order["updated_at"] = refunded

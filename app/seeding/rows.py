"""One builder per table for bulk seeding (plain dicts for SQLAlchemy Core `insert`), and
the writes around them: chunked inserts, sequences moved past explicit ids, ANALYZE.

Every builder names every column the table needs, so the two seeds (bench, load) cannot
drift from the schema in different ways."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from sqlalchemy import Table, insert, text
from sqlalchemy.engine import Connection, Engine

import app.models  # noqa: F401  (registers every table)
from app.accounts.models import AuthSession, User
from app.catalog.models import Product
from app.orders.models import Order, OrderLine
from app.orders.pricing import Totals
from app.returns.models import ReturnLine, ReturnRequest
from app.security import codes
from app.shipments.models import Pack, PackLine, Shipment, ShipmentLine, TrackingEvent

Row = dict[str, Any]


class SeedError(ValueError):
    """The requested seed cannot be made (too few orders for its shape)."""


def table_of(model: type[Any]) -> Table:
    """The Core table of a SQLModel table class (SQLModel does not type `__table__`)."""
    table: Table = model.__table__
    return table


TABLES: dict[str, Table] = {
    name: table_of(model)
    for name, model in {
        "products": Product,
        "users": User,
        "auth_sessions": AuthSession,
        "orders": Order,
        "order_lines": OrderLine,
        "packs": Pack,
        "pack_lines": PackLine,
        "shipments": Shipment,
        "shipment_lines": ShipmentLine,
        "tracking_events": TrackingEvent,
        "return_requests": ReturnRequest,
        "return_lines": ReturnLine,
    }.items()
}


class UniqueCodes:
    """Order codes (and RMA codes) that never repeat within one seed."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def new(self) -> str:
        code = codes.generate()
        while code in self.used:
            code = codes.generate()
        self.used.add(code)
        return code


def product(pid: int, sku: str, name: str, price_minor: int, *, stock: int, bin_: str) -> Row:
    return {
        "id": pid,
        "sku": sku,
        "name": name,
        "description": "",
        "price_minor": price_minor,
        "currency": "EUR",
        "stock": stock,
        "bin_location": bin_,
        "active": True,
    }


def customer(
    uid: int, public_id: str, email: str, password_hash: str, name: str, created_at: datetime
) -> Row:
    return {
        "id": uid,
        "public_id": public_id,
        "email": email,
        "password_hash": password_hash,
        "name": name,
        "role": "CUSTOMER",
        "created_at": created_at,
    }


def auth_session(public_id: str, user_id: int, created_at: datetime, sid: int | None) -> Row:
    """A live session (a token of it is accepted); `sid` None lets the database number it."""
    row: Row = {} if sid is None else {"id": sid}
    row.update(
        public_id=public_id,
        user_id=user_id,
        created_at=created_at,
        revoked_at=None,
        revoked_reason=None,
    )
    return row


def order(
    oid: int,
    code: str,
    user_id: int,
    status: str,
    totals: Totals,
    *,
    ship_to: tuple[str, str, str, str, str],  # name, line1, line2, city, postal code
    card: tuple[str, str],  # brand, last 4
    reference: str,
    key: str,
    estimated_delivery: date,
    placed_at: datetime,
) -> Row:
    name, line1, line2, city, postal_code = ship_to
    return {
        "id": oid,
        "code": code,
        "user_id": user_id,
        "status": status,
        "currency": "EUR",
        "subtotal_minor": totals.subtotal_minor,
        "shipping_minor": totals.shipping_minor,
        "tax_minor": totals.tax_minor,
        "total_minor": totals.total_minor,
        "refunded_minor": 0,
        "ship_name": name,
        "ship_line1": line1,
        "ship_line2": line2,
        "ship_city": city,
        "ship_postal_code": postal_code,
        "ship_country": "DE",
        "payment_brand": card[0],
        "payment_last4": card[1],
        "payment_reference": reference,
        "idempotency_key": key,
        "request_fingerprint": "0" * 64,
        "estimated_delivery": estimated_delivery,
        "placed_at": placed_at,
        "updated_at": placed_at,
        "cancelled_at": None,
    }


def order_line(
    lid: int, order_id: int, product_id: int, sku: str, name: str, price: int, quantity: int
) -> Row:
    return {
        "id": lid,
        "order_id": order_id,
        "product_id": product_id,
        "sku": sku,
        "name": name,
        "unit_price_minor": price,
        "quantity": quantity,
    }


def pack(pid: int, order_id: int, packed_at: datetime) -> Row:
    return {"id": pid, "order_id": order_id, "packed_by": None, "packed_at": packed_at}


def pack_line(lid: int, pack_id: int, order_line_id: int, quantity: int) -> Row:
    return {"id": lid, "pack_id": pack_id, "order_line_id": order_line_id, "quantity": quantity}


def shipment(
    sid: int,
    order_id: int,
    carrier: str,
    tracking_number: str,
    status: str,
    *,
    estimated_delivery: date,
    shipped_at: datetime,
    delivered_at: datetime | None,
    last_event_at: datetime,
) -> Row:
    return {
        "id": sid,
        "order_id": order_id,
        "carrier": carrier,
        "tracking_number": tracking_number,
        "status": status,
        "estimated_delivery": estimated_delivery,
        "shipped_by": None,
        "shipped_at": shipped_at,
        "delivered_at": delivered_at,
        "last_event_at": last_event_at,
        "updated_at": last_event_at,
    }


def shipment_line(lid: int, shipment_id: int, order_line_id: int, quantity: int) -> Row:
    return {
        "id": lid,
        "shipment_id": shipment_id,
        "order_line_id": order_line_id,
        "quantity": quantity,
    }


def tracking_event(
    eid: int,
    shipment_id: int,
    carrier: str,
    event_id: str,
    status: str,
    *,
    location: str,
    description: str,
    occurred_at: datetime,
    received_at: datetime,
) -> Row:
    return {
        "id": eid,
        "shipment_id": shipment_id,
        "carrier": carrier,
        "carrier_event_id": event_id,
        "status": status,
        "location": location,
        "description": description,
        "occurred_at": occurred_at,
        "received_at": received_at,
        "source": "CARRIER",
        "recorded_by": None,
    }


def insert_rows(conn: Connection, table: str, rows: list[Row]) -> int:
    """Insert `rows` into `table` (one executemany); how many."""
    if rows:
        conn.execute(insert(TABLES[table]), rows)
    return len(rows)


def advance_sequences(conn: Connection, tables: Iterable[str]) -> None:
    """Explicit ids leave PostgreSQL's sequences behind: move each past its table's largest
    id, or the first row the app inserts would collide with a seeded one. (SQLite numbers
    from the largest rowid by itself.)"""
    if conn.dialect.name != "postgresql":
        return
    for table in tables:
        assert table in TABLES, table  # a name of ours, never input: safe in the statement
        conn.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
                f"(SELECT max(id) FROM {table}))"
            )
        )


def analyze(engine: Engine) -> None:
    """Planner statistics, so that the database is read as it would be after a while."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    else:
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")

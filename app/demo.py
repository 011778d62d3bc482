"""Demo data for `scripts/serve`: a catalog with bins and stock, two customers with orders
in several states, and one account per staff role. Idempotent: run it as often as you like.

Orders reach their demo status through the real use cases: cancelled by the owner, packed,
shipped and tracked by the warehouse account, so shipped and delivered orders have real
shipments and tracking events."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update
from sqlmodel import col

from app.accounts.models import User
from app.catalog.models import Product
from app.container import Services
from app.db import utcnow
from app.errors import Conflict
from app.orders.inputs import AddressInput, LineInput
from app.orders.models import Order, OrderStatus
from app.security.policy import Viewer
from app.security.roles import Role
from app.shipments.inputs import EventInput, LineRequest, Place
from app.shipments.models import Shipment

DEMO_PASSWORD = "orders-demo-2026"
DEMO_IP = "127.0.0.1"

PRODUCTS = [
    ("MUG-001", "Enamel camping mug", 1299, 120, "A-01-03"),
    ("TEE-BLK-M", "Organic T-shirt, black, M", 2499, 80, "B-04-01"),
    ("TEE-WHT-L", "Organic T-shirt, white, L", 2499, 60, "B-04-02"),
    ("BOTTLE-750", "Steel water bottle 750 ml", 1999, 200, "A-02-07"),
    ("NOTE-A5", "Dotted notebook A5", 899, 300, "C-01-01"),
    ("PEN-GEL-3", "Gel pens, pack of 3", 599, 500, "C-01-02"),
    ("LAMP-DESK", "LED desk lamp", 4999, 25, "D-10-04"),
    ("BAG-TOTE", "Canvas tote bag", 1499, 150, "B-01-05"),
    ("SOCK-WOOL", "Merino socks", 1799, 90, "B-02-02"),
    ("CABLE-USBC", "USB-C cable 1 m", 999, 400, "E-03-01"),
    ("LIMITED-ED", "Limited edition print", 3999, 5, "F-01-01"),
]

USERS = [
    ("alice@example.com", "Alice Example", Role.CUSTOMER),
    ("bob@example.com", "Bob Example", Role.CUSTOMER),
    ("support@example.com", "Sam Support", Role.SUPPORT),
    ("warehouse@example.com", "Wendy Warehouse", Role.WAREHOUSE),
    ("admin@example.com", "Ada Admin", Role.ADMIN),
]

ALICE_ADDRESS = AddressInput("Alice Example", "1 Demo Street", "Berlin", "10115", "DE")
BOB_ADDRESS = AddressInput("Bob Example", "22 Sample Road", "Paris", "75001", "FR")

# (owner, idempotency key, lines, status to move to, days ago)
ORDERS = [
    (
        "alice@example.com",
        "demo-alice-1",
        [("MUG-001", 2), ("NOTE-A5", 1)],
        OrderStatus.DELIVERED,
        20,
    ),
    ("alice@example.com", "demo-alice-2", [("TEE-BLK-M", 1)], OrderStatus.SHIPPED, 3),
    (
        "alice@example.com",
        "demo-alice-3",
        [("LAMP-DESK", 1), ("CABLE-USBC", 2)],
        OrderStatus.PROCESSING,
        1,
    ),
    ("alice@example.com", "demo-alice-4", [("BOTTLE-750", 1)], OrderStatus.PLACED, 0),
    (
        "bob@example.com",
        "demo-bob-1",
        [("BAG-TOTE", 1), ("SOCK-WOOL", 2)],
        OrderStatus.DELIVERED,
        40,
    ),
    ("bob@example.com", "demo-bob-2", [("PEN-GEL-3", 3)], OrderStatus.CANCELLED, 5),
    ("bob@example.com", "demo-bob-3", [("TEE-WHT-L", 2)], OrderStatus.PLACED, 0),
]


async def seed_demo(services: Services) -> int:
    created = await _seed_catalog(services)
    users: dict[str, User] = {}
    for email, name, role in USERS:
        try:
            users[email] = await services.accounts.create_user(
                email, DEMO_PASSWORD, name=name, role=role
            )
            created += 1
        except Conflict:
            async with services.db.read() as session:
                users[email] = (
                    await session.execute(select(User).where(col(User.email) == email))
                ).scalar_one()
    warehouse = _viewer(users["warehouse@example.com"])
    for owner, key, lines, status, days_ago in ORDERS:
        viewer = _viewer(users[owner])
        address = ALICE_ADDRESS if owner.startswith("alice") else BOB_ADDRESS
        view = await services.orders.place_order(
            viewer, [LineInput(sku, qty) for sku, qty in lines], address, "tok_visa", key
        )
        order = view.order
        placed = utcnow() - timedelta(days=days_ago)
        if days_ago and order.placed_at > placed + timedelta(hours=1):
            # placed just now: move it back in time, once
            order.placed_at = placed
            order.estimated_delivery = services.orders.estimated_delivery(placed)
            async with services.db.write() as session:
                await session.execute(
                    update(Order)
                    .where(col(Order.id) == order.id)
                    .values(
                        placed_at=placed,
                        updated_at=placed,
                        estimated_delivery=order.estimated_delivery,
                        promised_delivery=order.estimated_delivery,
                    )
                )
                await session.commit()
            created += 1
        if status == OrderStatus.CANCELLED and order.status == OrderStatus.PLACED.value:
            await services.orders.cancel_order(viewer, order.code, DEMO_IP)
            created += 1
        elif status in (OrderStatus.PROCESSING, OrderStatus.SHIPPED, OrderStatus.DELIVERED):
            created += await _fulfil(services, warehouse, order, lines, status, key)
    return created


async def _seed_catalog(services: Services) -> int:
    """The demo products that are not there yet; returns how many were added."""
    added = 0
    async with services.db.write() as session:
        existing = set((await session.execute(select(col(Product.sku)))).scalars())
        for sku, name, price, stock, bin_location in PRODUCTS:
            if sku not in existing:
                session.add(
                    Product(
                        sku=sku,
                        name=name,
                        price_minor=price,
                        stock=stock,
                        bin_location=bin_location,
                        currency="EUR",
                    )
                )
                added += 1
        await session.commit()
    return added


def _viewer(user: User) -> Viewer:
    assert user.id is not None
    return Viewer(user.id, user.public_id, Role(user.role), 0, user.email)


# (status, hours after the order was placed, location, description, structured place)
_LEIPZIG = Place("Leipzig", "04109", "DE")
_BERLIN = Place("Berlin", "10115", "DE")
_TRACKING = {
    OrderStatus.SHIPPED: [
        ("IN_TRANSIT", 32, "Leipzig hub", "Arrived at the sorting centre", _LEIPZIG)
    ],
    OrderStatus.DELIVERED: [
        ("IN_TRANSIT", 32, "Leipzig hub", "Arrived at the sorting centre", _LEIPZIG),
        ("OUT_FOR_DELIVERY", 55, "Local depot", "Out for delivery", _BERLIN),
        ("DELIVERED", 61, "Front door", "Delivered", _BERLIN),
    ],
}


async def _fulfil(
    services: Services,
    warehouse: Viewer,
    order: Order,
    lines: list[tuple[str, int]],
    status: OrderStatus,
    key: str,
) -> int:
    """Walk a demo order to `status` through the warehouse's own use cases (pack, ship,
    tracking events), skipping the steps already done: real shipments and events, and
    safe to run again. An order from a database seeded before shipments existed (already
    SHIPPED without a shipment) is left as it is."""
    done = 0
    shipments = services.shipments
    current = OrderStatus(order.status)
    if current == OrderStatus.PLACED:
        first_only = [LineRequest(*lines[0])] if status == OrderStatus.PROCESSING else None
        scanned = [sku for sku, qty in (lines[:1] if first_only else lines) for _ in range(qty)]
        packed = await shipments.pack_order(warehouse, order.code, DEMO_IP, scanned, first_only)
        order = packed.order
        done += 1
    if status == OrderStatus.PROCESSING:
        return done
    tracking = "DEMO-" + key.upper().removeprefix("DEMO-")
    placed = order.placed_at
    if OrderStatus(order.status) == OrderStatus.PACKED:
        sent = await shipments.ship_order(warehouse, order.code, DEMO_IP, "DHL", tracking)
        shipped = sent.shipment
        estimate = services.orders.estimated_delivery(placed)
        # the demo's past: shipped a day after ordering
        async with services.db.write() as session:
            await session.execute(
                update(Shipment)
                .where(col(Shipment.id) == shipped.id)
                .values(shipped_at=placed + timedelta(days=1), estimated_delivery=estimate)
            )
            await session.execute(
                update(Order).where(col(Order.id) == order.id).values(estimated_delivery=estimate)
            )
            await session.commit()
        done += 1
    async with services.db.read() as session:
        has_shipment = (
            await session.execute(
                select(col(Shipment.id)).where(col(Shipment.order_id) == order.id)
            )
        ).first()
    if has_shipment is None:
        return done
    for number, (event, hours, location, description, place) in enumerate(_TRACKING[status], 1):
        result = await shipments.add_tracking_event(
            warehouse,
            order.code,
            DEMO_IP,
            "DHL",
            tracking,
            EventInput(
                status=event,
                occurred_at=placed + timedelta(hours=hours),
                location=location,
                place=place,
                description=description,
                event_id=f"{tracking}-{number}",
            ),
        )
        done += int(result.recorded)
    return done

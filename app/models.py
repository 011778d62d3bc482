"""Every table, imported in one place for Alembic and test setup."""

from app.accounts.models import AuthSession, RefreshToken, User
from app.audit.models import AuditEntry
from app.catalog.models import Product
from app.notifications.models import NotificationPreference, OutboxEmail, UsedUnsubscribeToken
from app.orders.models import Order, OrderLine, OrderReservation
from app.payments.models import PaymentRefund
from app.returns.models import ReturnLine, ReturnRequest
from app.shipments.models import Pack, PackLine, Shipment, ShipmentLine, TrackingEvent
from app.tracking.models import TrackingLink

__all__ = [
    "AuditEntry",
    "AuthSession",
    "NotificationPreference",
    "Order",
    "OrderLine",
    "OrderReservation",
    "OutboxEmail",
    "Pack",
    "PackLine",
    "PaymentRefund",
    "Product",
    "RefreshToken",
    "ReturnLine",
    "ReturnRequest",
    "Shipment",
    "ShipmentLine",
    "TrackingEvent",
    "TrackingLink",
    "UsedUnsubscribeToken",
    "User",
]

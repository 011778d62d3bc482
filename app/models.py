"""Every table, imported in one place for Alembic and test setup."""

from app.accounts.models import AuthSession, RefreshToken, User
from app.catalog.models import Product
from app.notifications.models import OutboxEmail
from app.orders.models import Order, OrderLine

__all__ = [
    "AuthSession",
    "Order",
    "OrderLine",
    "OutboxEmail",
    "Product",
    "RefreshToken",
    "User",
]

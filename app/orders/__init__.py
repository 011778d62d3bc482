"""Orders. What other domains may use of it: the tables (`app.orders.models`), the service
(`app.orders.service`), and the helpers exported here."""

from app.orders.addresses import address_lines
from app.orders.pricing import add_business_days

__all__ = ["add_business_days", "address_lines"]

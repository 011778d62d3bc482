"""Returns and refunds: RMA codes, eligibility, the staff steps and the order timeline.

What other domains may use of it: the tables (`app.returns.models`), the service
(`app.returns.service`), and what is exported here."""

from app.returns.queries import returned_units
from app.returns.rules import order_status_with_returns

__all__ = ["order_status_with_returns", "returned_units"]

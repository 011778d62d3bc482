"""Returns: the service the API calls, a façade over one module per use case — the
customer's side (`request.py`: eligibility, requesting a return, reading one by RMA), the
staff steps (`staff.py`: approve, reject, receive), the refund (`refund.py`), and the batch
reads behind the loaders (`views.py`). What they share — dependencies, door declarations,
the order's state, the locked staff transaction, the status change, the emails — is
`common.py`.
"""

from __future__ import annotations

from app.audit.service import AuditLog
from app.db import Database
from app.events.broker import Broker
from app.payments.refunds import Refunds
from app.returns.common import (
    REFUND_REASON,
    RETURN_ADDRESS,
    RETURN_DECIDERS,
    RETURN_READERS,
    RETURN_RECEIVERS,
    RETURN_REFUNDERS,
    ReturnsDeps,
)
from app.returns.queries import returned_units
from app.returns.refund import ReturnRefunds
from app.returns.request import CustomerReturns
from app.returns.staff import StaffReturns
from app.returns.views import EligibilityView, EligibleLine, ReturnedLine, ReturnReads, ReturnView
from app.security.doors import Doors
from app.security.lookups import CodeLookups
from app.settings import Settings
from app.unit_of_work import UnitsOfWork

__all__ = [
    "REFUND_REASON",
    "RETURN_ADDRESS",
    "RETURN_DECIDERS",
    "RETURN_READERS",
    "RETURN_RECEIVERS",
    "RETURN_REFUNDERS",
    "EligibilityView",
    "EligibleLine",
    "ReturnService",
    "ReturnView",
    "ReturnedLine",
    "returned_units",
]


class ReturnService:
    def __init__(
        self,
        db: Database,
        refunds: Refunds,
        lookups: CodeLookups,
        audit: AuditLog,
        events: Broker,
        settings: Settings,
    ) -> None:
        deps = ReturnsDeps(
            db=db,
            units=UnitsOfWork(db, events),
            doors=Doors(lookups, audit),
            audit=audit,
            refunds=refunds,
            settings=settings,
        )
        customer = CustomerReturns(deps)
        self.eligibility = customer.eligibility
        self.request_return = customer.request_return
        self.get_return = customer.get_return
        refund = ReturnRefunds(deps)  # registers the refund's completion with `Refunds`
        self.refund = refund.refund
        staff = StaffReturns(deps, refund)
        self.approve = staff.approve
        self.reject = staff.reject
        self.receive = staff.receive
        reads = ReturnReads(db)
        self.returns_for_orders = reads.returns_for_orders
        self.lines_for_returns = reads.lines_for_returns

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
from app.orders.models import Order
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
from app.returns.inputs import ReturnLineRequest
from app.returns.models import ReturnRequest
from app.returns.queries import returned_units
from app.returns.refund import ReturnRefunds
from app.returns.request import CustomerReturns
from app.returns.staff import StaffReturns
from app.returns.views import EligibilityView, EligibleLine, ReturnedLine, ReturnReads, ReturnView
from app.security.doors import Doors
from app.security.lookups import CodeLookups
from app.security.policy import Viewer
from app.settings import Settings
from app.unit_of_work import UnitOfWork, UnitsOfWork

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
        self._deps = deps
        self._customer = CustomerReturns(deps)
        self._refunds = ReturnRefunds(deps)  # registers the refund's completion with `Refunds`
        self._staff = StaffReturns(deps, self._refunds)
        self._reads = ReturnReads(db)

    # -- the customer (request.py) --------------------------------------------------------
    async def eligibility(
        self, viewer: Viewer | None, raw_code: str, client_ip: str
    ) -> EligibilityView:
        return await self._customer.eligibility(viewer, raw_code, client_ip)

    async def request_return(
        self,
        viewer: Viewer | None,
        raw_code: str,
        client_ip: str,
        lines: list[ReturnLineRequest],
        reason: str,
        comment: str | None = None,
    ) -> ReturnView:
        return await self._customer.request_return(
            viewer, raw_code, client_ip, lines, reason, comment
        )

    async def create_return(
        self,
        uow: UnitOfWork,
        order: Order,
        recipient: str,
        lines: list[ReturnLineRequest],
        reason: str,
        comment: str | None,
    ) -> ReturnView:
        """The return itself, in the caller's unit of work (`order` locked in it): for
        support acting for the customer (app/returns/on_behalf.py)."""
        return await self._customer.create_return(uow, order, recipient, lines, reason, comment)

    @property
    def units(self) -> UnitsOfWork:
        """Units of work on this service's database and broker."""
        return self._deps.units

    async def get_return(self, viewer: Viewer | None, raw_rma: str, client_ip: str) -> ReturnView:
        return await self._customer.get_return(viewer, raw_rma, client_ip)

    # -- staff (staff.py, refund.py) ------------------------------------------------------
    async def approve(self, viewer: Viewer | None, raw_rma: str, client_ip: str) -> ReturnView:
        return await self._staff.approve(viewer, raw_rma, client_ip)

    async def reject(
        self, viewer: Viewer | None, raw_rma: str, client_ip: str, reason: str
    ) -> ReturnView:
        return await self._staff.reject(viewer, raw_rma, client_ip, reason)

    async def receive(
        self,
        viewer: Viewer | None,
        raw_rma: str,
        client_ip: str,
        lines: list[ReturnLineRequest],
    ) -> ReturnView:
        return await self._staff.receive(viewer, raw_rma, client_ip, lines)

    async def refund(self, viewer: Viewer | None, raw_rma: str, client_ip: str) -> ReturnView:
        return await self._refunds.refund(viewer, raw_rma, client_ip)

    # -- batch reads (views.py) -----------------------------------------------------------
    async def returns_for_orders(self, order_ids: list[int]) -> dict[int, list[ReturnRequest]]:
        return await self._reads.returns_for_orders(order_ids)

    async def lines_for_returns(self, return_ids: list[int]) -> dict[int, list[ReturnedLine]]:
        return await self._reads.lines_for_returns(return_ids)

"""Shared by the returns tests: GraphQL documents, a payment provider whose refunds can
fail, and short-cuts that take an order to delivery and a return through its steps with the
real services. The short-cuts that call a service take the `run` fixture first (services
are async, bound to the app's event loop)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text

from app.container import Services
from app.errors import ServiceUnavailable
from app.orders.service import OrderView
from app.payments.provider import Refund, TestPaymentProvider
from app.returns.inputs import ReturnLineRequest
from app.returns.service import ReturnView
from tests.conftest import Account, Run, db_session, sql_count
from tests.support.actors import Cast
from tests.support.carriers import event, pack, ship

IP = "10.0.0.9"

ELIGIBILITY = """
query Eligibility($code: String!) {
  returnEligibility(code: $code) {
    orderCode windowDays canReturn
    lines {
      sku name orderedQuantity deliveredQuantity returnedQuantity returnableQuantity
      returnableUntil reason unitPrice { amount currency }
    }
  }
}
"""

REQUEST = """
mutation Request(
  $code: String!, $lines: [ReturnLineInput!]!, $reason: ReturnReason! = DAMAGED,
  $comment: String
) {
  requestReturn(code: $code, lines: $lines, reason: $reason, comment: $comment) {
    returnRequest {
      rma orderCode status reason comment
      lines { sku quantity receivedQuantity unitPrice { amount currency } }
      refund { amount currency }
      requestedAt approvedAt
    }
    userErrors { field message code }
  }
}
"""

RETURN = """
query Return($rma: String!) {
  returnRequest(rma: $rma) {
    rma orderCode status reason comment rejectionReason
    lines { sku quantity receivedQuantity unitPrice { amount } }
    refund { amount currency }
    requestedAt approvedAt rejectedAt receivedAt refundedAt
  }
}
"""

APPROVE = """
mutation Approve($rma: String!) {
  approveReturn(rma: $rma) {
    returnRequest { rma status approvedAt }
    userErrors { field message code }
  }
}
"""

REJECT = """
mutation Reject($rma: String!, $reason: String!) {
  rejectReturn(rma: $rma, reason: $reason) {
    returnRequest { rma status rejectionReason rejectedAt }
    userErrors { field message code }
  }
}
"""

RECEIVE = """
mutation Receive($rma: String!, $lines: [ReturnLineInput!]!) {
  receiveReturn(rma: $rma, lines: $lines) {
    returnRequest {
      rma status receivedAt lines { sku quantity receivedQuantity } refund { amount }
    }
    userErrors { field message code }
  }
}
"""

REFUND = """
mutation Refund($rma: String!) {
  refundReturn(rma: $rma) {
    returnRequest { rma status refund { amount currency } refundedAt }
    userErrors { field message code }
  }
}
"""

ORDER_RETURNS = """
query OrderReturns($code: String!) {
  order(code: $code) {
    status refunded { amount }
    returns { rma status lines { sku quantity receivedQuantity } refund { amount } }
  }
}
"""


class FlakyRefunds(TestPaymentProvider):
    """The test provider, whose refunds can be made to fail the two ways a real one does:
    `down` refuses before any money moves (an outage); `lose_answers` lets the refund go
    through, then fails as if the answer were lost on the way back (a timeout)."""

    __test__ = False

    def __init__(self, ledger_url: str, *, latency_seconds: float = 0.0) -> None:
        super().__init__(ledger_url, latency_seconds=latency_seconds)
        self.down = False
        self.lose_answers = 0
        self.refund_calls = 0

    async def refund(
        self, charge_reference: str, amount_minor: int, currency: str, idempotency_key: str
    ) -> Refund:
        self.refund_calls += 1
        if self.down:
            raise ServiceUnavailable("The payment provider is unavailable. Try again shortly.")
        made = await super().refund(charge_reference, amount_minor, currency, idempotency_key)
        if self.lose_answers > 0:
            self.lose_answers -= 1
            raise ServiceUnavailable("The payment provider did not answer in time.")
        return made


def deliver(
    run: Run[Any],
    services: Services,
    warehouse: Account,
    view: OrderView,
    *,
    lines: list[tuple[str, int]] | None = None,
    delivered_at: datetime | None = None,
) -> str:
    """Pack, ship and deliver (a staff DELIVERED event) all of `view`, or `lines` of it.
    Returns the tracking number."""
    pack(run, services, warehouse, view.order, lines)
    result = ship(run, services, warehouse, view.order, lines=lines)
    tracking = result.shipment.tracking_number
    event(run, services, warehouse, view.order, tracking, "DELIVERED", occurred_at=delivered_at)
    return tracking


def request(
    run: Run[Any],
    services: Services,
    owner: Account,
    view: OrderView,
    lines: list[tuple[str, int]] | None = None,
    reason: str = "DAMAGED",
) -> ReturnView:
    made: ReturnView = run(
        services.returns.request_return(
            owner.viewer,
            view.order.code,
            IP,
            [ReturnLineRequest(sku, qty) for sku, qty in (lines or [("MUG-001", 1)])],
            reason,
        )
    )
    return made


def approve(run: Run[Any], services: Services, cast: Cast, ret: ReturnView) -> ReturnView:
    approved: ReturnView = run(
        services.returns.approve(cast.support.viewer, ret.request.rma_code, IP)
    )
    return approved


def receive(
    run: Run[Any],
    services: Services,
    cast: Cast,
    ret: ReturnView,
    lines: list[tuple[str, int]] | None = None,
) -> ReturnView:
    counted = lines or [(line.sku, line.quantity) for line in ret.lines]
    received: ReturnView = run(
        services.returns.receive(
            cast.warehouse.viewer,
            ret.request.rma_code,
            IP,
            [ReturnLineRequest(sku, qty) for sku, qty in counted],
        )
    )
    return received


def refunds(services: Services) -> list[Any]:
    """The provider's ledger of refunds (money that actually moved back)."""
    return list(services.payments.transactions("refund"))  # type: ignore[attr-defined]


def emails(services: Services, kind: str) -> int:
    return sql_count(services, f"SELECT count(*) FROM outbox_emails WHERE kind = '{kind}'")


def email_body(services: Services, kind: str) -> str:
    """The newest queued email of this kind."""
    with db_session(services) as session:
        return str(
            session.execute(
                text("SELECT body_text FROM outbox_emails WHERE kind = :k ORDER BY id DESC"),
                {"k": kind},
            )
            .scalars()
            .first()
        )

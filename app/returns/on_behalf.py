"""requestReturn for the customer, by support (SUPPORT, ADMIN) on the phone.

Who takes which door (the resolver sends every requestReturn here):
* no `supportReason`, not SUPPORT/ADMIN: the owner's door (`ReturnService.request_return`):
  own orders only, the customer budgets; a WAREHOUSE account is a customer there (DESIGN §3).
* `supportReason` from SUPPORT or ADMIN: the staff door below.
* `supportReason` from a CUSTOMER: a userError on `supportReason` (only staff act for
  someone), before the code is read, so it says nothing about the code and spends nothing.
* `supportReason` from WAREHOUSE: charged as a customer at a staff door, then FORBIDDEN,
  the same answer whatever the code (as approveReturn answers a customer).
* no `supportReason` from SUPPORT or ADMIN: a userError on `supportReason`; the ticket is
  what the audit entry is for.

The staff door is rate-limited and audited like `supportOrder`: the agent's lockout, one
unit of the agent's support budget, a typo counted as a typo, an unknown code as one staff
failure; the same return rules as the owner's (`ReturnService.create_return` inside the
order's lock), the same email to the customer, and an audit entry with the ticket in the
transaction that creates the return (a refusal is audited on its own afterwards).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlmodel import col

from app.accounts.models import User
from app.audit.service import AuditLog
from app.db import Database
from app.errors import BadUserInput, DomainError, Forbidden, InvalidOrderCode
from app.orders.models import Order
from app.returns.common import REQUEST_RETURN
from app.returns.inputs import ReturnLineRequest
from app.returns.service import ReturnService, ReturnView
from app.security.doors import Doors, NoMatch
from app.security.lookups import CodeLookups
from app.security.policy import SUPPORT_ROLES, Viewer, require_viewer
from app.security.ratelimit import Limiter
from app.security.roles import Role
from app.support.service import MAX_REASON, MIN_REASON

ACTION = "staff_return_request"


def clean_support_reason(raw: str | None) -> str:
    reason = " ".join((raw or "").split())
    if not MIN_REASON <= len(reason) <= MAX_REASON:
        raise BadUserInput(
            f"Give the ticket this return is for ({MIN_REASON} to {MAX_REASON} characters).",
            field="supportReason",
        )
    return reason


class ReturnsOnBehalf:
    def __init__(
        self,
        db: Database,
        limiter: Limiter,
        lookups: CodeLookups,
        audit: AuditLog,
        returns: ReturnService,
    ) -> None:
        self._doors = Doors(lookups, audit, limiter)
        self._audit = audit
        self._returns = returns

    async def request_return(
        self,
        viewer: Viewer | None,
        raw_code: str,
        client_ip: str,
        lines: list[ReturnLineRequest],
        reason: str,
        comment: str | None,
        support_reason: str | None,
    ) -> ReturnView:
        """`requestReturn`: picks the door (module docstring), then walks through it."""
        staff = viewer is not None and viewer.role in SUPPORT_ROLES
        if support_reason is None and not staff:
            return await self._returns.request_return(
                viewer, raw_code, client_ip, lines, reason, comment
            )
        who = require_viewer(viewer)
        if who.role is Role.CUSTOMER:
            raise BadUserInput(
                "Only support staff give a support reason; leave it out.", field="supportReason"
            )
        if not staff:
            # charged as a customer (REQUEST_RETURN's staff are SUPPORT and ADMIN only)
            await self._doors.enter(REQUEST_RETURN, who, raw_code, client_ip)
            raise Forbidden()
        return await self._for_customer(
            who, raw_code, client_ip, lines, reason, comment, clean_support_reason(support_reason)
        )

    async def _for_customer(
        self,
        agent: Viewer,
        raw_code: str,
        client_ip: str,
        lines: list[ReturnLineRequest],
        reason: str,
        comment: str | None,
        ticket: str,
    ) -> ReturnView:
        outcome = "error"
        code: str | None = None
        order: Order | None = None
        try:
            try:
                entry = await self._doors.enter_support(REQUEST_RETURN, agent, raw_code, client_ip)
            except InvalidOrderCode:
                outcome = "invalid_code"
                raise
            code = entry.code
            async with entry.misses(), self._returns.units.begin() as uow:
                found = (
                    await uow.session.execute(
                        select(Order, User)
                        .join(User, col(User.id) == col(Order.user_id))
                        .where(col(Order.code) == code)
                        .with_for_update(of=Order)
                    )
                ).one_or_none()
                if found is None:
                    outcome = "not_found"
                    raise NoMatch()  # one staff failure, once the transaction has ended
                order, owner = found
                # The return is the customer's: their email gets the instructions.
                view = await self._returns.create_return(
                    uow, order, owner.email, lines, reason, comment
                )
                await self._audit.record(
                    actor=agent,
                    action=ACTION,
                    outcome="created",
                    order_id=order.id,
                    code=code,
                    reason=ticket,
                    client_ip=client_ip,
                    session=uow.session,
                )
                uow.publish(order, "RETURN_UPDATED")
                await uow.commit()
                outcome = "created"
        except DomainError as error:
            if outcome in ("error", "not_found"):
                outcome = error.code.value.lower()
            await self._audit.record(
                actor=agent,
                action=ACTION,
                outcome=outcome,
                order_id=order.id if order is not None else None,
                code=code,
                reason=ticket,
                client_ip=client_ip,
            )
            raise
        return view

"""Doors: every use case that takes a secret (order code, checkout code, RMA, tracking token)
declares its door once, here in this vocabulary, and `Doors` does the rest the same way for
all of them (DESIGN §3, §4; docs/security.md §3):

* the gate (`CodeLookups.begin`: authenticated, charged to the limiter once, the code
  normalised with no database access for a typo);
* at a staff door, the role right after the gate: FORBIDDEN before any database access,
  the same answer for a real and an unknown code;
* a miss (no such subject, or not the caller's) is one failed lookup, settled with the
  budgets once the use case's transaction has ended (the limiter may be Redis), audited
  when staff made it, and always the same error: "not found" and "not yours" are one answer.

A use case raises `NoMatch` inside its transaction and leaves the rest to `Entry.misses()`
(or calls `Entry.miss()` itself when no transaction is open). Forgetting to count a failure
is no longer possible: there is no other way to answer "not found" at a declared door.

`DECLARED` holds every declaration; tests/security/test_door_matrix.py checks that it covers
every door in the schema and that each declaration says what DESIGN §3 says.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import NoReturn

from app.audit.service import AuditLog
from app.errors import Forbidden, InvalidOrderCode, OrderNotFound
from app.security import codes
from app.security.lookups import CodeLookups
from app.security.policy import Viewer
from app.security.ratelimit import Limiter
from app.security.roles import Role


class Who(StrEnum):
    """Who may pass a door."""

    OWNER = "owner"  # the customer whose subject it is (one query by code and owner)
    STAFF = "staff"  # the door's roles only; FORBIDDEN for anyone else, before any read
    OWNER_OR_STAFF = "owner_or_staff"  # the owner, or the roles (who spend staff budgets)
    TOKEN = "token"  # public: the token is the credential (budgets per token and address)


class StaffBudget(StrEnum):
    """What staff spend at a door (DESIGN §4, docs/security.md §3)."""

    LOOKUPS = "lookups"  # the staff lookup budget (`CodeLookups.begin` with the roles)
    SUPPORT = "support"  # the agent's lockout and support budget (supportOrder and the like:
    # a reason/ticket is required and audited by the use case)


class Subject(StrEnum):
    ORDER = "order"
    CHECKOUT = "checkout"
    RMA = "rma"
    TOKEN = "token"


@dataclass(frozen=True)
class Door:
    """One declared door. `field`: the GraphQL field behind it; `audit`: the audit action
    of a staff miss (staff doors only)."""

    field: str
    who: Who
    subject: Subject
    roles: tuple[Role, ...] = ()
    audit: str | None = None
    not_found: type[OrderNotFound] = OrderNotFound
    staff_budget: StaffBudget = StaffBudget.LOOKUPS

    @property
    def staff_roles(self) -> tuple[Role, ...]:
        """The roles that spend the staff lookup budget through `Doors.enter` (none at an
        owner door, nor where staff go through `Doors.enter_support`)."""
        if self.staff_budget is StaffBudget.SUPPORT:
            return ()
        return self.roles if self.who in (Who.STAFF, Who.OWNER_OR_STAFF) else ()


DECLARED: dict[str, Door] = {}


def declare(
    field: str,
    who: Who,
    subject: Subject,
    *roles: Role,
    audit: str | None = None,
    not_found: type[OrderNotFound] = OrderNotFound,
    staff_budget: StaffBudget = StaffBudget.LOOKUPS,
) -> Door:
    """Declare a door (once: a second declaration of the same field is a bug)."""
    if who in (Who.STAFF, Who.OWNER_OR_STAFF) and not roles:
        raise ValueError(f"door {field}: a staff door names its roles")
    if who in (Who.OWNER, Who.TOKEN) and roles:
        raise ValueError(f"door {field}: only staff doors name roles")
    door = Door(field, who, subject, tuple(roles), audit, not_found, staff_budget)
    if DECLARED.setdefault(field, door) != door:
        raise ValueError(f"door {field} declared twice, differently")
    return door


class NoMatch(Exception):
    """The subject matches nothing the caller may see. Raised inside a transaction; turned
    into the door's not-found answer, with the failure settled, once it has ended."""


@dataclass(frozen=True)
class Entry:
    """A caller who passed the gate of `door`: who they are, the canonical code, and
    whether they act as staff (and spend staff budgets)."""

    door: Door
    who: Viewer
    code: str
    staff: bool
    client_ip: str
    _doors: Doors

    async def miss(self) -> NoReturn:
        """The subject matches nothing the caller may see: one failed lookup (RATE_LIMITED
        when it is one too many), audited for staff, then the door's not-found answer.
        Call it with no transaction open."""
        await self._doors.lookups.failed(self.who, self.client_ip, staff=self.staff)
        if self.staff and self.door.audit is not None:
            assert self._doors.audit is not None, f"door {self.door.field} audits its misses"
            masked = self.door.subject is Subject.RMA
            await self._doors.audit.record(
                actor=self.who,
                action=self.door.audit,
                outcome="not_found",
                code=None if masked else self.code,
                reason=f"RMA {codes.mask(self.code)}" if masked else None,
                client_ip=self.client_ip,
            )
        raise self.door.not_found() from None

    @contextlib.asynccontextmanager
    async def misses(self) -> AsyncIterator[None]:
        """Around a use case's transaction: `NoMatch` raised inside becomes `miss()` after
        the transaction has ended (enter this before `Database.write()`/`read()`)."""
        try:
            yield
        except NoMatch:
            await self.miss()


class Doors:
    """The one gate; built once by the composition root."""

    def __init__(
        self, lookups: CodeLookups, audit: AuditLog | None = None, limiter: Limiter | None = None
    ) -> None:
        """`audit`: needed by services with staff doors (owner doors audit nothing);
        `limiter`: by services with public doors (their budgets are the address's and the
        token's)."""
        self.lookups = lookups
        self.audit = audit
        self.limiter = limiter

    async def enter(
        self, door: Door, viewer: Viewer | None, raw_code: str, client_ip: str
    ) -> Entry:
        """UNAUTHENTICATED / RATE_LIMITED / INVALID_ORDER_CODE from the gate (charged once),
        then FORBIDDEN at a staff door for a caller without the role."""
        if door.who is Who.TOKEN:
            raise TypeError(f"door {door.field} is public: see its use case's own budgets")
        who, code = await self.lookups.begin(
            viewer, raw_code, client_ip, staff_roles=door.staff_roles
        )
        staff = who.role in door.staff_roles
        if door.who is Who.STAFF and not staff:
            raise Forbidden()
        return Entry(door, who, code, staff, client_ip, self)

    async def enter_support(
        self, door: Door, agent: Viewer, raw_code: str, client_ip: str
    ) -> Entry:
        """Staff with one of `door`'s roles at a support door (the caller checked the role
        and the reason first): the agent's lockout and one unit of the support budget, then
        the code normalised (a typo counted as a staff typo). A miss is one staff failure."""
        if door.staff_budget is not StaffBudget.SUPPORT or agent.role not in door.roles:
            raise TypeError(f"door {door.field}: not a support door for {agent.role}")
        assert self.limiter is not None, f"door {door.field} spends the support budget"
        await self.limiter.charge_support_lookup(CodeLookups.user_key(agent))
        try:
            code = codes.normalise(raw_code)
        except InvalidOrderCode:
            await self.lookups.typo(agent, client_ip, staff=True)
            raise
        return Entry(door, agent, code, True, client_ip, self)

    async def enter_public(
        self, door: Door, raw_token: str, client_ip: str, *, subject_key: Callable[[str], str]
    ) -> PublicEntry:
        """A public door (the token is the credential): RATE_LIMITED while the address is
        locked out by failed lookups, or past its view budget; INVALID_ORDER_CODE for a typo
        (a failure of the address); then the token's own view budget (`subject_key(token)`
        names it, never the token itself)."""
        if door.who is not Who.TOKEN:
            raise TypeError(f"door {door.field} is not public")
        limiter = self.limiter
        assert limiter is not None, f"door {door.field} spends the limiter's public budgets"
        await limiter.ensure_not_exhausted(limiter.failures_per_ip, client_ip)
        await limiter.hit(limiter.tracking_views, f"ip:{client_ip}")
        try:
            token = codes.normalise(raw_token)
        except InvalidOrderCode:
            await limiter.record(limiter.failures_per_ip, client_ip)
            raise
        await limiter.hit(limiter.tracking_views, f"token:{subject_key(token)}")
        return PublicEntry(door, token, client_ip, limiter)


@dataclass(frozen=True)
class PublicEntry:
    """A caller who passed a public door's budgets with a well-formed token."""

    door: Door
    code: str
    client_ip: str
    _limiter: Limiter

    async def miss(self) -> NoReturn:
        """Unknown, expired and revoked are one answer; each counts toward the address's
        failed-lookup lockout."""
        await self._limiter.record(self._limiter.failures_per_ip, self.client_ip)
        raise self.door.not_found() from None

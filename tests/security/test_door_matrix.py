"""Every door to an order, found from the schema itself: any field or argument that takes
an order code, checkout code, RMA or tracking token. For each door and each caller who is
not entitled to the subject, the answer for a real subject is exactly the answer for an
unknown one; entitled callers get through. A new door that is not in the table below fails
`test_every_door_is_in_the_matrix` until someone decides who may use it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from app.container import Services
from app.orders.inputs import LineInput
from app.schema import schema
from app.security import codes
from app.security.doors import DECLARED, StaffBudget, Who
from app.security.roles import Role
from tests.conftest import ADDRESS, Account, GraphQLClient, Run
from tests.support.returns import deliver, request

SUBJECT_ARGS = {"code", "rma", "token", "checkoutCode"}
DOOR_ERRORS = {"ORDER_NOT_FOUND", "FORBIDDEN", "UNAUTHENTICATED"}
OWNER = "owner"
ANYONE = "anyone"  # public door: the token is the credential


@dataclass(frozen=True)
class Door:
    document: str
    subject: str  # order | checkout | rma | token
    entitled: frozenset[str]  # callers who may act on someone else's... or their own subject
    staff_variables: tuple[tuple[str, Any], ...] = ()  # what staff callers send besides $s

    def variables(self, caller: str, subject: str) -> dict[str, Any]:
        extra = dict(self.staff_variables) if caller in STAFF_READ else {}
        return {"s": subject, **extra}


def door(document: str, subject: str, *entitled: str, **staff_variables: Any) -> Door:
    return Door(document, subject, frozenset(entitled), tuple(staff_variables.items()))


STAFF_READ = ("SUPPORT", "WAREHOUSE", "ADMIN")
DOORS: dict[str, Door | None] = {
    "order": door("query($s:String!){ order(code:$s){ code } }", "order", OWNER),
    "checkout": door("query($s:String!){ checkout(code:$s){ code } }", "checkout", OWNER),
    "reorder": door("query($s:String!){ reorder(code:$s){ total { amount } } }", "order", OWNER),
    "supportOrder": door(
        'query($s:String!){ supportOrder(code:$s, reason:"T-1"){ order { code } } }',
        "order",
        "SUPPORT",
        "ADMIN",
    ),
    "pickList": door("query($s:String!){ pickList(code:$s){ code } }", "order", *STAFF_READ),
    "trackingLink": door(
        "query($s:String!){ trackingLink(token:$s){ estimatedDelivery } }", "token", ANYONE
    ),
    "returnEligibility": door(
        "query($s:String!){ returnEligibility(code:$s){ canReturn } }", "order", OWNER
    ),
    "returnRequest": door(
        "query($s:String!){ returnRequest(rma:$s){ status } }", "rma", OWNER, *STAFF_READ
    ),
    "placeOrder": door(
        'mutation($s:String!){ placeOrder(checkoutCode:$s, paymentToken:"tok_visa")'
        "{ order { code } userErrors { code } } }",
        "checkout",
        OWNER,
    ),
    "updateCheckout": door(
        "mutation($s:String!){ updateCheckout(code:$s){ userErrors { code } } }",
        "checkout",
        OWNER,
    ),
    "cancelOrder": door(
        "mutation($s:String!){ cancelOrder(code:$s){ userErrors { code } } }", "order", OWNER
    ),
    "packOrder": door(
        'mutation($s:String!){ packOrder(code:$s, scannedSkus:["MUG-001"])'
        "{ userErrors { code } } }",
        "order",
        "WAREHOUSE",
        "ADMIN",
    ),
    "shipOrder": door(
        'mutation($s:String!){ shipOrder(code:$s, carrier:"DHL", trackingNumber:"TRK-M-1")'
        "{ userErrors { code } } }",
        "order",
        "WAREHOUSE",
        "ADMIN",
    ),
    "addTrackingEvent": door(
        'mutation($s:String!){ addTrackingEvent(code:$s, carrier:"DHL", trackingNumber:"NOPE",'
        ' status: IN_TRANSIT, location:"Hub", description:"x"){ userErrors { code } } }',
        "order",
        "WAREHOUSE",
        "ADMIN",
    ),
    "createTrackingLink": door(
        "mutation($s:String!){ createTrackingLink(code:$s, expiresInHours: 5)"
        "{ userErrors { code } } }",
        "order",
        OWNER,
    ),
    "revokeTrackingLink": door(
        "mutation($s:String!){ revokeTrackingLink(token:$s){ userErrors { code } } }",
        "token",
        OWNER,
    ),
    # Staff send the ticket (supportReason) and act for the customer: SUPPORT and ADMIN get
    # through, WAREHOUSE is FORBIDDEN; customers leave it out (the owner's door).
    "requestReturn": door(
        'mutation($s:String!, $why:String){ requestReturn(code:$s, lines:[{sku:"MUG-001",'
        " quantity:1}], reason: DAMAGED, supportReason: $why){ userErrors { code } } }",
        "order",
        OWNER,
        "SUPPORT",
        "ADMIN",
        why="TICKET-1",
    ),
    "approveReturn": door(
        "mutation($s:String!){ approveReturn(rma:$s){ userErrors { code } } }",
        "rma",
        "SUPPORT",
        "ADMIN",
    ),
    "rejectReturn": door(
        'mutation($s:String!){ rejectReturn(rma:$s, reason:"Used item, not eligible")'
        "{ userErrors { code } } }",
        "rma",
        "SUPPORT",
        "ADMIN",
    ),
    "receiveReturn": door(
        'mutation($s:String!){ receiveReturn(rma:$s, lines:[{sku:"MUG-001", quantity:1}])'
        "{ userErrors { code } } }",
        "rma",
        "WAREHOUSE",
        "ADMIN",
    ),
    "refundReturn": door(
        "mutation($s:String!){ refundReturn(rma:$s){ userErrors { code } } }", "rma", "ADMIN"
    ),
    # Subscriptions do not run over HTTP POST: tests/api/test_order_updates.py and
    # tests/e2e/test_live_updates.py hold the same rules for the WebSocket door.
    "orderUpdates": None,
}


def schema_doors() -> set[str]:
    found = set()
    for root in ("Query", "Mutation", "Subscription"):
        for name, field in schema._schema.get_type(root).fields.items():  # type: ignore[union-attr]
            if SUBJECT_ARGS & set(field.args):
                found.add(name)
    return found


def test_every_door_is_in_the_matrix() -> None:
    assert schema_doors() == set(DOORS)


def test_every_door_is_declared_once_as_design_says() -> None:
    """The declarations the use cases pass through (app/security/doors.py) say what this
    table says (DESIGN §3): who is entitled, which roles, what the subject is. Subscriptions
    do not go through a declared door (see orderUpdates above)."""
    assert set(DECLARED) == {name for name, spec in DOORS.items() if spec is not None}
    for name, declared in DECLARED.items():
        spec = DOORS[name]
        assert spec is not None
        assert declared.subject.value == spec.subject, name
        assert {role.value for role in declared.roles} == spec.entitled - {OWNER, ANYONE}, name
        owner_may = declared.who in (Who.OWNER, Who.OWNER_OR_STAFF)
        assert owner_may == (OWNER in spec.entitled), name
        assert (declared.who is Who.TOKEN) == (ANYONE in spec.entitled), name
        # which budget staff spend there (DESIGN §4): the support budget at support doors
        support = declared.staff_budget is StaffBudget.SUPPORT
        assert support == (name in SUPPORT_BUDGET_DOORS), name


# Doors where SUPPORT/ADMIN spend the agent's support budget (DESIGN §4).
SUPPORT_BUDGET_DOORS = {"supportOrder", "requestReturn"}


def _answer(body: dict[str, Any]) -> tuple[Any, ...]:
    errors = [(e.get("extensions", {}).get("code"), e["message"]) for e in body.get("errors") or []]
    return body["_status"], errors, body.get("data")


def _door_errors(body: dict[str, Any]) -> set[str]:
    return {e.get("extensions", {}).get("code") for e in body.get("errors") or []} & DOOR_ERRORS


@pytest.fixture
def world(
    services: Services,
    owner: Account,
    other_customer: Account,
    make_account: Callable[..., Account],
    place_order: Callable[..., Any],
    run: Run[Any],
) -> dict[str, Any]:
    """An order delivered and partly returned, an open checkout and a live tracking link,
    all the owner's; and one caller of every other kind."""
    staff = {role.value: make_account(role) for role in (Role.SUPPORT, Role.WAREHOUSE, Role.ADMIN)}
    view = place_order(owner, [("MUG-001", 3)])
    deliver(run, services, staff["WAREHOUSE"], view)
    ret = request(run, services, owner, view)
    checkout = run(services.checkouts.start(owner.viewer, [LineInput("MUG-001", 1)], ADDRESS))
    link = run(services.tracking.create(owner.viewer, view.order.code, "10.0.0.1", 24))
    return {
        "subjects": {
            "order": view.order.code,
            "checkout": checkout.checkout.code,
            "rma": ret.request.rma_code,
            "token": link.token,
        },
        "callers": {
            "anonymous": None,
            OWNER: owner.token,
            "other customer": other_customer.token,
            **{name: account.token for name, account in staff.items()},
        },
        "viewers": {
            OWNER: owner.viewer,
            "other customer": other_customer.viewer,
            **{name: account.viewer for name, account in staff.items()},
        },
    }


@pytest.mark.parametrize("field", sorted(name for name, d in DOORS.items() if d is not None))
def test_only_the_entitled_get_through_and_nobody_else_learns_anything(
    gql: GraphQLClient, world: dict[str, Any], field: str
) -> None:
    spec = DOORS[field]
    assert spec is not None
    real = world["subjects"][spec.subject]
    for caller, token in world["callers"].items():
        entitled = ANYONE in spec.entitled or caller in spec.entitled
        if entitled:
            # given the right caller, the real subject gets through the door
            body = gql(spec.document, spec.variables(caller, real), token=token)
            assert _door_errors(body) == set(), (field, caller, body.get("errors"))
            unknown = gql(spec.document, spec.variables(caller, codes.generate()), token=token)
            assert _door_errors(unknown) == {"ORDER_NOT_FOUND"}, (field, caller)
        else:
            # anyone else: the real subject answers exactly like an unknown one
            theirs = gql(spec.document, spec.variables(caller, real), token=token)
            unknown = gql(spec.document, spec.variables(caller, codes.generate()), token=token)
            assert _door_errors(theirs), (field, caller, theirs)
            assert _answer(theirs) == _answer(unknown), (field, caller)


# Which budget a door spends (DESIGN §4, docs/security.md §3): staff at a staff door, with
# the role, spend the staff budget of their own; support lookups the agent's; everyone else
# the customer lookup budget, whatever their role. Public doors (the token is the
# credential) have budgets per token and address of their own.
STAFF_DOORS = {
    name
    for name, spec in DOORS.items()
    if spec is not None and OWNER not in spec.entitled and ANYONE not in spec.entitled
} | {"returnRequest"}
BUDGETS = ("lookup:user", "staff:user", "support:agent")


def expected_budget(field: str, caller: str) -> str | None:
    spec = DOORS[field]
    assert spec is not None
    if caller == "anonymous" or ANYONE in spec.entitled:
        return None
    if field == "supportOrder":
        return "support:agent" if caller in spec.entitled else None  # role first
    if field == "requestReturn" and caller in ("SUPPORT", "ADMIN"):
        return "support:agent"  # for the customer: like supportOrder (app/returns/on_behalf.py)
    if field in STAFF_DOORS and caller in spec.entitled and caller != OWNER:
        return "staff:user"
    return "lookup:user"


@pytest.mark.parametrize("field", sorted(name for name, d in DOORS.items() if d is not None))
def test_each_door_spends_its_callers_budget_once(
    gql: GraphQLClient, services: Services, world: dict[str, Any], run: Run[Any], field: str
) -> None:
    spec = DOORS[field]
    assert spec is not None
    limiter = services.limiter
    buckets = {
        "lookup:user": limiter.lookups_per_user,
        "staff:user": limiter.staff_lookups_per_user,
        "support:agent": limiter.support_per_agent,
    }
    for caller, token in world["callers"].items():
        viewer = world["viewers"].get(caller)
        key = f"user:{viewer.public_id}" if viewer is not None else "user:-"

        def left() -> dict[str, int]:
            return {name: run(limiter.remaining(bucket, key)) for name, bucket in buckets.items()}  # noqa: B023

        before = left()
        gql(spec.document, spec.variables(caller, world["subjects"][spec.subject]), token=token)
        spent = {name: before[name] - after for name, after in left().items()}
        budget = expected_budget(field, caller)
        expected = {name: int(name == budget) for name in BUDGETS}
        assert spent == expected, (field, caller)


# -- The staff console's fields that take no code (issue 16) -------------------------------------
# Each new field x each caller: exactly who gets through; everyone else UNAUTHENTICATED or
# FORBIDDEN, and the same answer whatever the subject (an email with orders or not, an account
# that exists or not).
@dataclass(frozen=True)
class StaffField:
    document: str
    allowed: frozenset[str]


def staff_field(document: str, *allowed: str) -> StaffField:
    return StaffField(document, frozenset(allowed))


STAFF_FIELDS = {
    "supportSearch": staff_field(
        'query($e:String!){ supportSearch(customerEmail:$e, reason:"T-1"){ code } }',
        "SUPPORT",
        "ADMIN",
    ),
    "returnsQueue": staff_field(
        "{ returnsQueue { edges { node { rma } } } }",
        *STAFF_READ,
    ),
    "staffUsers": staff_field("{ staffUsers { edges { node { email } } } }", "ADMIN"),
    "createStaffUser": staff_field(
        'mutation($e:String!){ createStaffUser(email:$e, name:"N", password:"long-Passw0rd-1",'
        " role: SUPPORT){ userErrors { code } } }",
        "ADMIN",
    ),
    "setUserRole": staff_field(
        "mutation($e:String!){ setUserRole(email:$e, role: SUPPORT){ userErrors { code } } }",
        "ADMIN",
    ),
    "deactivateUser": staff_field(
        "mutation($e:String!){ deactivateUser(email:$e){ userErrors { code } } }", "ADMIN"
    ),
}


def test_every_staff_console_field_is_in_the_schema() -> None:
    query = schema._schema.get_type("Query").fields  # type: ignore[union-attr]
    mutation = schema._schema.get_type("Mutation").fields  # type: ignore[union-attr]
    assert set(STAFF_FIELDS) <= set(query) | set(mutation)
    assert not {"email", "customerEmail"} & SUBJECT_ARGS  # not code doors: matrix below


@pytest.mark.parametrize("field", sorted(STAFF_FIELDS))
def test_each_staff_console_field_lets_exactly_its_roles_through(
    gql: GraphQLClient,
    world: dict[str, Any],
    make_account: Callable[..., Account],
    owner: Account,
    field: str,
) -> None:
    spec = STAFF_FIELDS[field]
    target = make_account(Role.SUPPORT)  # a staff account to change
    # a subject that exists (an email with orders / a staff account) and one that does not
    real = {"supportSearch": owner.email}.get(field, target.email)
    unknown = "nobody-" + real
    if field == "createStaffUser":
        real, unknown = "new-" + real, "other-new-" + real
    for caller, token in world["callers"].items():
        if caller in spec.allowed:
            body = gql(spec.document, {"e": real}, token=token)
            assert body.get("errors") is None, (field, caller, body.get("errors"))
            assert body["data"][field] is not None
            continue
        expected = "UNAUTHENTICATED" if token is None else "FORBIDDEN"
        theirs = gql(spec.document, {"e": real}, token=token)
        nobody = gql(spec.document, {"e": unknown}, token=token)
        assert _door_errors(theirs) == {expected}, (field, caller)
        assert _answer(theirs) == _answer(nobody), (field, caller)


def test_support_search_not_found_is_no_orders(
    gql: GraphQLClient, world: dict[str, Any], make_account: Callable[..., Account]
) -> None:
    """For the agents: an unknown email answers exactly like a customer without orders."""
    never_ordered = make_account(Role.CUSTOMER)
    document = STAFF_FIELDS["supportSearch"].document
    for caller in ("SUPPORT", "ADMIN"):
        token = world["callers"][caller]
        none = gql(document, {"e": never_ordered.email}, token=token)
        unknown = gql(document, {"e": "nobody-" + never_ordered.email}, token=token)
        assert _answer(none) == _answer(unknown) == (200, [], {"supportSearch": []})

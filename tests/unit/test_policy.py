"""Who may see what, as pure functions (app/security/policy.py, DESIGN §3): anonymous is
unauthenticated, a caller without one of the roles is forbidden, payment is masked. The
role table is written out here, not read from the module."""

from __future__ import annotations

import pytest

from app.errors import Forbidden, Unauthenticated
from app.security.policy import (
    FULFILMENT_ROLES,
    SUPPORT_ROLES,
    Viewer,
    mask_payment,
    require_role,
    require_viewer,
)
from app.security.roles import Role


def viewer(role: Role) -> Viewer:
    return Viewer(user_id=7, public_id="pub-7", role=role, session_id=3, email="a@example.com")


def test_anonymous_is_unauthenticated_everywhere() -> None:
    with pytest.raises(Unauthenticated):
        require_viewer(None)
    with pytest.raises(Unauthenticated):
        require_role(None, Role.ADMIN)


def test_a_viewer_is_returned_as_it_is() -> None:
    who = viewer(Role.CUSTOMER)
    assert require_viewer(who) is who


# DESIGN §3: SUPPORT reads and supports; WAREHOUSE packs and ships; ADMIN does both.
MAY_SUPPORT = {Role.CUSTOMER: False, Role.SUPPORT: True, Role.WAREHOUSE: False, Role.ADMIN: True}
MAY_FULFIL = {Role.CUSTOMER: False, Role.SUPPORT: False, Role.WAREHOUSE: True, Role.ADMIN: True}


@pytest.mark.parametrize("role", list(Role))
def test_support_and_fulfilment_roles_follow_the_access_table(role: Role) -> None:
    for roles, table in ((SUPPORT_ROLES, MAY_SUPPORT), (FULFILMENT_ROLES, MAY_FULFIL)):
        who = viewer(role)
        if table[role]:
            assert require_role(who, *roles) is who
        else:
            with pytest.raises(Forbidden):
                require_role(who, *roles)


def test_no_role_listed_means_nobody() -> None:
    with pytest.raises(Forbidden):
        require_role(viewer(Role.ADMIN))


def test_payment_is_masked_to_brand_and_last_four() -> None:
    assert mask_payment("VISA", "4242") == "VISA •••• 4242"

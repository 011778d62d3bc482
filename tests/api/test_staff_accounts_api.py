"""Staff accounts through the API (issue 16): staffUsers, createStaffUser, setUserRole,
deactivateUser — ADMIN only, audited; a deactivated account's access token is refused on
its very next request, its refresh token too, and its login fails like a wrong password.
The first admin still comes from `orders-api create-user`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from app.security.roles import Role
from app.settings import Settings
from tests.conftest import PASSWORD, Account, GraphQLClient, error_codes, sql_count

CREATE = """
mutation C($email: String!, $name: String!, $password: String!, $role: Role!) {
  createStaffUser(email: $email, name: $name, password: $password, role: $role) {
    user { email name role active createdAt }
    userErrors { field message code }
  }
}
"""
SET_ROLE = """
mutation R($email: String!, $role: Role!) {
  setUserRole(email: $email, role: $role) {
    user { email role active } userErrors { field message code }
  }
}
"""
DEACTIVATE = """
mutation D($email: String!) {
  deactivateUser(email: $email) { user { email active } userErrors { field message code } }
}
"""
STAFF = """
query S($first: Int, $after: String) {
  staffUsers(first: $first, after: $after) {
    edges { cursor node { email name role active } }
    pageInfo { hasNextPage endCursor }
  }
}
"""
LOGIN = """
mutation L($email: String!, $password: String!) {
  login(email: $email, password: $password) {
    tokens { accessToken refreshToken } userErrors { field message code }
  }
}
"""
REFRESH = """
mutation F($t: String!) {
  refreshToken(refreshToken: $t) { tokens { accessToken } userErrors { field message code } }
}
"""
QUEUE = "{ fulfillmentQueue { edges { node { code } } } }"
ME = "{ me { email role } }"
SEARCH = '{ supportSearch(customerEmail: "a@example.com", reason: "T-1") { code } }'
AUDIT = """
query A($action: [String!]) {
  auditLog(filter: {action: $action}) {
    edges { node { actorEmail action outcome reason subject } }
  }
}
"""
NEW_PASSWORD = "picker-Passw0rd-long"


def audit(gql: GraphQLClient, admin: Account, *actions: str) -> list[dict[str, Any]]:
    body = gql.data(AUDIT, {"action": list(actions)}, token=admin.token)
    return [edge["node"] for edge in body["auditLog"]["edges"]]


@pytest.fixture
def admin(make_account: Callable[..., Account]) -> Account:
    return make_account(Role.ADMIN)


def create(gql: GraphQLClient, admin: Account, email: str, role: str = "WAREHOUSE") -> Any:
    return gql.data(
        CREATE,
        {"email": email, "name": "Pia Picker", "password": NEW_PASSWORD, "role": role},
        token=admin.token,
    )["createStaffUser"]


def login(gql: GraphQLClient, email: str, password: str = NEW_PASSWORD) -> Any:
    return gql.data(LOGIN, {"email": email, "password": password})["login"]


def test_an_admin_creates_a_picker_who_logs_in_and_works_then_is_deactivated_at_once(
    gql: GraphQLClient, services: Any, admin: Account
) -> None:
    made = create(gql, admin, " Pia@Example.com ")
    assert made["userErrors"] == []
    assert made["user"] | {"createdAt": None} == {
        "email": "pia@example.com",
        "name": "Pia Picker",
        "role": "WAREHOUSE",
        "active": True,
        "createdAt": None,
    }
    # the password was hashed (argon2), never stored as given
    stored = sql_count(services, "SELECT count(*) FROM users WHERE password_hash LIKE '$argon2%'")
    assert stored >= 2
    tokens = login(gql, "pia@example.com")["tokens"]
    access, refresh = tokens["accessToken"], tokens["refreshToken"]
    assert gql(QUEUE, token=access).get("errors") is None  # the picker works
    second_device = login(gql, "pia@example.com")["tokens"]["accessToken"]

    gone = gql.data(DEACTIVATE, {"email": "pia@example.com"}, token=admin.token)
    assert gone["deactivateUser"] == {
        "user": {"email": "pia@example.com", "active": False},
        "userErrors": [],
    }
    # the very next request with the still-unexpired access token is refused, on every device
    for token in (access, second_device):
        refused = gql(QUEUE, token=token)
        assert error_codes(refused) == ["UNAUTHENTICATED"]
    assert error_codes(gql(ME, token=access)) == ["UNAUTHENTICATED"]
    assert gql.data(REFRESH, {"t": refresh})["refreshToken"]["tokens"] is None
    assert error_codes_of(gql.data(REFRESH, {"t": refresh})["refreshToken"]) == ["UNAUTHENTICATED"]
    # login fails exactly like a wrong password
    deactivated = login(gql, "pia@example.com")
    wrong = login(gql, admin.email, "not-the-Passw0rd-at-all")
    assert deactivated == wrong
    assert deactivated["tokens"] is None
    assert (
        sql_count(
            services,
            "SELECT count(*) FROM auth_sessions s JOIN users u ON u.id = s.user_id "
            "WHERE u.email = 'pia@example.com' AND s.revoked_at IS NULL",
        )
        == 0
    )
    # listed, inactive; both changes audited with the admin, the account and the role
    listed = gql.data(STAFF, {}, token=admin.token)["staffUsers"]["edges"]
    assert {
        "email": "pia@example.com",
        "name": "Pia Picker",
        "role": "WAREHOUSE",
        "active": False,
    } in [edge["node"] for edge in listed]
    entries = audit(gql, admin, "staff_user_created", "staff_user_deactivated")
    assert [(e["action"], e["outcome"], e["subject"], e["actorEmail"]) for e in entries] == [
        ("staff_user_deactivated", "deactivated", "pia@example.com", admin.email),
        ("staff_user_created", "created", "pia@example.com", admin.email),
    ]
    assert entries[1]["reason"] == "role WAREHOUSE"
    assert entries[0]["reason"] == "role WAREHOUSE, 2 sessions ended"


def error_codes_of(payload: dict[str, Any]) -> list[str]:
    return [error["code"] for error in payload["userErrors"]]


def test_create_refuses_a_customer_role_a_taken_email_and_a_weak_password(
    gql: GraphQLClient, services: Any, admin: Account, owner: Account
) -> None:
    customer = create(gql, admin, "c@example.com", role="CUSTOMER")
    assert [(e["field"], e["code"]) for e in customer["userErrors"]] == [("role", "BAD_USER_INPUT")]
    taken = create(gql, admin, owner.email.upper())
    assert [(e["field"], e["code"]) for e in taken["userErrors"]] == [("email", "CONFLICT")]
    weak = gql.data(
        CREATE,
        {"email": "w@example.com", "name": "W", "password": "short", "role": "SUPPORT"},
        token=admin.token,
    )["createStaffUser"]
    assert [(e["field"], e["code"]) for e in weak["userErrors"]] == [("password", "BAD_USER_INPUT")]
    assert (
        sql_count(
            services, "SELECT count(*) FROM users WHERE email IN ('c@example.com', 'w@example.com')"
        )
        == 0
    )
    assert audit(gql, admin, "staff_user_created") == []


def test_a_role_change_takes_effect_on_the_next_request_and_is_audited(
    gql: GraphQLClient, admin: Account, make_account: Callable[..., Account]
) -> None:
    agent = make_account(Role.SUPPORT)
    assert gql(SEARCH, token=agent.token).get("errors") is None
    moved = gql.data(SET_ROLE, {"email": agent.email, "role": "WAREHOUSE"}, token=admin.token)
    assert moved["setUserRole"]["user"]["role"] == "WAREHOUSE"
    assert error_codes(gql(SEARCH, token=agent.token)) == ["FORBIDDEN"]  # the same token
    assert gql.data(ME, token=agent.token)["me"]["role"] == "WAREHOUSE"
    entry = audit(gql, admin, "staff_role_changed")[0]
    assert (entry["subject"], entry["reason"], entry["outcome"]) == (
        agent.email,
        "SUPPORT -> WAREHOUSE",
        "changed",
    )


def test_an_admin_cannot_demote_or_deactivate_themself_nor_touch_customers(
    gql: GraphQLClient, admin: Account, owner: Account
) -> None:
    demote = gql.data(SET_ROLE, {"email": admin.email, "role": "SUPPORT"}, token=admin.token)
    assert [e["field"] for e in demote["setUserRole"]["userErrors"]] == ["email"]
    myself = gql.data(DEACTIVATE, {"email": admin.email}, token=admin.token)
    assert [e["field"] for e in myself["deactivateUser"]["userErrors"]] == ["email"]
    assert gql.data(ME, token=admin.token)["me"]["role"] == "ADMIN"
    for document, variables in (
        (DEACTIVATE, {"email": owner.email}),
        (SET_ROLE, {"email": owner.email, "role": "SUPPORT"}),
        (SET_ROLE, {"email": "nobody@example.com", "role": "SUPPORT"}),
        (SET_ROLE, {"email": admin.email, "role": "CUSTOMER"}),
    ):
        payload = next(iter(gql.data(document, variables, token=admin.token).values()))
        assert payload["user"] is None and len(payload["userErrors"]) == 1
    assert gql.data(ME, token=owner.token)["me"]["role"] == "CUSTOMER"


def test_staff_users_lists_staff_by_email_page_by_page(
    gql: GraphQLClient, admin: Account, make_account: Callable[..., Account]
) -> None:
    make_account(Role.CUSTOMER)
    staff = sorted(
        [admin.email] + [make_account(role).email for role in (Role.SUPPORT, Role.WAREHOUSE)]
    )
    seen: list[str] = []
    after = None
    while True:
        page = gql.data(STAFF, {"first": 2, "after": after}, token=admin.token)["staffUsers"]
        seen += [edge["node"]["email"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == staff


@pytest.mark.parametrize("role", [None, Role.CUSTOMER, Role.SUPPORT, Role.WAREHOUSE])
def test_only_an_admin_may_see_or_change_staff_accounts(
    gql: GraphQLClient, services: Any, make_account: Callable[..., Account], role: Role | None
) -> None:
    target = make_account(Role.WAREHOUSE)
    token = make_account(role).token if role else None
    expected = ["UNAUTHENTICATED" if role is None else "FORBIDDEN"]
    for document, variables in (
        (STAFF, {}),
        (
            CREATE,
            {"email": "x@example.com", "name": "X", "password": NEW_PASSWORD, "role": "ADMIN"},
        ),
        (SET_ROLE, {"email": target.email, "role": "ADMIN"}),
        (DEACTIVATE, {"email": target.email}),
        (DEACTIVATE, {"email": "nobody@example.com"}),
    ):
        body = gql(document, variables, token=token)
        assert error_codes(body) == expected, document
        assert body["data"] is None
    assert gql(QUEUE, token=target.token).get("errors") is None
    assert sql_count(services, "SELECT count(*) FROM users WHERE role = 'ADMIN'") == 0


def test_the_first_admin_still_comes_from_the_command_line(
    gql: GraphQLClient, settings: Settings
) -> None:
    env = {**os.environ, "DATABASE_URL": settings.database_url, "NEW_USER_PASSWORD": PASSWORD}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "create-user",
            "--email",
            "first@example.com",
            "--role",
            "ADMIN",
            "--name",
            "First Admin",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    token = login(gql, "first@example.com", PASSWORD)["tokens"]["accessToken"]
    made = gql.data(
        CREATE,
        {
            "email": "second@example.com",
            "name": "Second",
            "password": NEW_PASSWORD,
            "role": "SUPPORT",
        },
        token=token,
    )["createStaffUser"]
    assert made["user"]["role"] == "SUPPORT" and made["user"]["active"] is True

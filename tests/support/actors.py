"""The cast of callers: one account per row of the access table (DESIGN §3)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from app.security.roles import Role
from tests.conftest import Account


@dataclass
class Cast:
    """One caller per row of the access table (DESIGN §3)."""

    owner: Account
    other_customer: Account
    support: Account
    warehouse: Account
    admin: Account

    def tokens(self) -> dict[str, str | None]:
        return {
            "anonymous": None,
            "owner": self.owner.token,
            "other customer": self.other_customer.token,
            "SUPPORT": self.support.token,
            "WAREHOUSE": self.warehouse.token,
            "ADMIN": self.admin.token,
        }


def make_cast(owner: Account, other: Account, make_account: Callable[..., Account]) -> Cast:
    """The owner and another customer as given, and one new account per staff role."""
    return Cast(
        owner=owner,
        other_customer=other,
        support=make_account(Role.SUPPORT),
        warehouse=make_account(Role.WAREHOUSE),
        admin=make_account(Role.ADMIN),
    )

"""Account roles (DESIGN §5)."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    CUSTOMER = "CUSTOMER"
    SUPPORT = "SUPPORT"
    WAREHOUSE = "WAREHOUSE"
    ADMIN = "ADMIN"

    @property
    def is_staff(self) -> bool:
        return self is not Role.CUSTOMER

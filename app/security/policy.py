"""Who may see what (DESIGN §3), as pure functions over a Viewer. No I/O, no framework."""

from __future__ import annotations

from dataclasses import dataclass

from app.errors import Forbidden, Unauthenticated
from app.security.roles import Role


@dataclass(frozen=True)
class Viewer:
    """An authenticated caller, resolved from a live (not revoked) session."""

    user_id: int
    public_id: str
    role: Role
    session_id: int
    email: str


def require_viewer(viewer: Viewer | None) -> Viewer:
    if viewer is None:
        raise Unauthenticated()
    return viewer


def require_role(viewer: Viewer | None, *roles: Role) -> Viewer:
    who = require_viewer(viewer)
    if who.role not in roles:
        raise Forbidden()
    return who


SUPPORT_ROLES = (Role.SUPPORT, Role.ADMIN)
FULFILMENT_ROLES = (Role.WAREHOUSE, Role.ADMIN)


def mask_payment(brand: str, last4: str) -> str:
    """Payment is always shown masked: brand and last four digits only."""
    return f"{brand} •••• {last4}"

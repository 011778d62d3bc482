"""staff accounts: users.active and the audit entry's subject

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30

`users.active`: false once an admin deactivates the account (deactivateUser); its sessions
are revoked in the same transaction, and login, refresh and every access token refuse it.
Existing accounts stay active. `audit_entries.subject`: who or what an entry is about when
that is not an order: the staff account an admin changed, or the customer email a support
agent searched for, masked like order codes are (docs/security.md).
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ADD/DROP COLUMN, not batch mode: on SQLite batch mode copies the table and drops the
# old one, which the foreign keys of every order and session refuse once the shop has any
# (SQLite has ADD COLUMN with a constant default, and DROP COLUMN since 3.35).
def upgrade() -> None:
    op.add_column(
        "users", sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true())
    )
    op.add_column(
        "audit_entries",
        sa.Column("subject", sqlmodel.sql.sqltypes.AutoString(length=254), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("audit_entries", "subject")
    op.drop_column("users", "active")

"""tracking events: the recognised town a public tracking link shows

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30

Events recorded before this revision get no town (""): their free-text location stays the
owner's to see, and a public link shows no place for them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tracking_events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "town",
                sqlmodel.sql.sqltypes.AutoString(length=100),
                nullable=False,
                server_default="",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("tracking_events", schema=None) as batch_op:
        batch_op.drop_column("town")

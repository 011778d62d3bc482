"""outbox emails: the template and data they were rendered from (for the HTML part)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30

Emails queued before this revision keep no template: the sender gives them an HTML part
made of their text, escaped, inside the shop's frame.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox_emails", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("template", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=True)
        )
        batch_op.add_column(sa.Column("template_data", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox_emails", schema=None) as batch_op:
        batch_op.drop_column("template_data")
        batch_op.drop_column("template")

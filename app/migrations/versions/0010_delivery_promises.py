"""orders: the delivery promised at placement, and when the order was delivered

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30

`promised_delivery` is the estimate given at checkout and never moved afterwards
(`estimated_delivery` follows the carriers). Orders placed before this revision get their
current estimate as the promise (the original one was not kept); `delivered_at` of an order
already delivered is its latest parcel's delivery time.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("promised_delivery", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("delivered_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    op.execute("UPDATE orders SET promised_delivery = estimated_delivery")
    op.execute(
        "UPDATE orders SET delivered_at = (SELECT max(s.delivered_at) FROM shipments s "
        "WHERE s.order_id = orders.id) "
        "WHERE status IN ('DELIVERED', 'PARTIALLY_RETURNED', 'RETURNED')"
    )


def downgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_column("delivered_at")
        batch_op.drop_column("promised_delivery")

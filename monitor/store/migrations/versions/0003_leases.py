"""The leases several daemons on one PostgreSQL store share the work with (monitor/store/leases.py): a name
("rss:feed:URL", "job:deliver", "alert:42", "daemon:HOLDER"), who holds it, until when, and when its work was
last done. Created on SQLite too, so both backends have one schema; only a shared store uses it.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("holder", sa.Text, nullable=True),
        sa.Column("expires_at", sa.Float, nullable=False, server_default=sa.text("0")),
        sa.Column("done_at", sa.Float, nullable=True),
    )
    op.create_index("leases_holder", "leases", ["holder"])


def downgrade() -> None:
    raise NotImplementedError("the store is never downgraded")

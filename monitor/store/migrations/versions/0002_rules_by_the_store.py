"""The store writes ``mentions.rules`` with the reasons (every writer goes through it), on every backend;
SQLite's triggers of migration 11, which did it inside SQLite, go. ``user_version`` 12 makes a release that
still relies on them refuse the store rather than write mentions without their rule names.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS mentions_rules_insert")
        op.execute("DROP TRIGGER IF EXISTS mentions_rules_update")
        op.execute("PRAGMA user_version = 12")


def downgrade() -> None:
    raise NotImplementedError("the store is never downgraded")

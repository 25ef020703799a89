"""Baseline: the schema of release 11 (SQLite ``user_version`` 11), on any backend.

An SQLite store made before Alembic is brought to 11 by the frozen raw migrations (``store.legacy``) and
stamped with this revision; every other store (PostgreSQL) starts here.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('failures',
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('since', sa.Float(), nullable=False),
    sa.Column('last_at', sa.Float(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=False),
    sa.Column('notified', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.PrimaryKeyConstraint('subject')
    )
    op.create_table('poll_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('started_at', sa.Float(), nullable=False),
    sa.Column('finished_at', sa.Float(), nullable=False),
    sa.Column('items', sa.Integer(), nullable=False),
    sa.Column('stored', sa.Integer(), nullable=False),
    sa.Column('errors', sa.Text(), nullable=False),
    sa.Column('interval', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('poll_runs_source', 'poll_runs', ['source', 'started_at'], unique=False)
    op.create_table('source_state',
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('key', sa.Text(), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('source', 'key')
    )
    op.create_table('stories',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('brand', sa.Text(), nullable=True),
    sa.Column('key', sa.Text(), nullable=False),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('first_seen', sa.Float(), nullable=False),
    sa.Column('last_seen', sa.Float(), nullable=False),
    sa.Column('sightings', sa.Integer(), server_default=sa.text('1'), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key')
    )
    op.create_index('stories_brand_seen', 'stories', ['brand', 'last_seen'], unique=False)
    op.create_table('mentions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('source_id', sa.Text(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('author', sa.Text(), nullable=True),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('place', sa.Text(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('fetched_at', sa.Float(), nullable=False),
    sa.Column('brand', sa.Text(), nullable=True),
    sa.Column('quote', sa.Text(), nullable=False),
    sa.Column('score', sa.Integer(), nullable=True),
    sa.Column('comments', sa.Integer(), nullable=True),
    sa.Column('upvote_ratio', sa.Float(), nullable=True),
    sa.Column('awards', sa.Integer(), nullable=True),
    sa.Column('reach', sa.Float(), nullable=True),
    sa.Column('extra', sa.Text(), nullable=False),
    sa.Column('compound', sa.Float(), nullable=True),
    sa.Column('negative', sa.Float(), nullable=True),
    sa.Column('neutral', sa.Float(), nullable=True),
    sa.Column('positive', sa.Float(), nullable=True),
    sa.Column('min_sentence', sa.Float(), nullable=True),
    sa.Column('negative_share', sa.Float(), nullable=True),
    sa.Column('brand_compound', sa.Float(), nullable=True),
    sa.Column('title_compound', sa.Float(), nullable=True),
    sa.Column('urgency', sa.Float(), nullable=True),
    sa.Column('virality', sa.Float(), nullable=True),
    sa.Column('priority', sa.Text(), nullable=True),
    sa.Column('reasons', sa.Text(), nullable=True),
    sa.Column('tags', sa.Text(), nullable=True),
    sa.Column('signals', sa.Text(), nullable=True),
    sa.Column('suppressed', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('story_id', sa.Integer(), nullable=True),
    sa.Column('peak_priority', sa.Text(), nullable=True),
    sa.Column('complaint', sa.Float(), nullable=True),
    sa.Column('is_complaint', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('rules', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['story_id'], ['stories.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('source', 'source_id')
    )
    op.create_index('mentions_brand_created', 'mentions', ['brand', 'created_at'], unique=False)
    op.create_index('mentions_created', 'mentions', ['created_at'], unique=False)
    op.create_index('mentions_fetched', 'mentions', ['fetched_at'], unique=False)
    op.create_index('mentions_story', 'mentions', ['story_id'], unique=False)
    op.create_index('mentions_story_place', 'mentions', ['story_id', 'source', 'place'], unique=False)
    op.create_table('story_keys',
    sa.Column('key', sa.Text(), nullable=False),
    sa.Column('story_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['story_id'], ['stories.id'], ),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_index('story_keys_story', 'story_keys', ['story_id'], unique=False)
    op.create_table('alerts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('mention_id', sa.Integer(), nullable=False),
    sa.Column('recipient', sa.Text(), nullable=False),
    sa.Column('priority', sa.Text(), nullable=False),
    sa.Column('status', sa.Text(), server_default=sa.text("'pending'"), nullable=False),
    sa.Column('attempts', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('next_attempt_at', sa.Float(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('message_id', sa.Text(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('sent_at', sa.Float(), nullable=True),
    sa.Column('urgency', sa.Float(), nullable=True),
    sa.Column('virality', sa.Float(), nullable=True),
    sa.Column('score', sa.Integer(), nullable=True),
    sa.Column('comments', sa.Integer(), nullable=True),
    sa.Column('digest', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('kind', sa.Text(), server_default=sa.text("'alert'"), nullable=False),
    sa.Column('subject', sa.Text(), nullable=True),
    sa.Column('held_until', sa.Float(), nullable=True),
    sa.Column('about', sa.Text(), server_default=sa.text("'complaint'"), nullable=False),
    sa.ForeignKeyConstraint(['mention_id'], ['mentions.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('alerts_once_per_level', 'alerts', ['mention_id', 'recipient', 'priority'], unique=True,
                    sqlite_where=sa.text("kind = 'alert'"), postgresql_where=sa.text("kind = 'alert'"))
    op.create_index('alerts_pending', 'alerts', ['status', 'next_attempt_at'], unique=False)
    op.create_index('alerts_recipient_mention', 'alerts', ['recipient', 'mention_id'], unique=False)
    op.create_table('labels',
    sa.Column('mention_id', sa.Integer(), nullable=False),
    sa.Column('label', sa.Integer(), nullable=False),
    sa.Column('labelled_at', sa.Float(), nullable=False),
    sa.Column('labelled_by', sa.Text(), server_default=sa.text("''"), nullable=False),
    sa.ForeignKeyConstraint(['mention_id'], ['mentions.id'], ),
    sa.PrimaryKeyConstraint('mention_id')
    )
    op.create_table('snapshots',
    sa.Column('mention_id', sa.Integer(), nullable=False),
    sa.Column('taken_at', sa.Float(), nullable=False),
    sa.Column('score', sa.Integer(), nullable=True),
    sa.Column('comments', sa.Integer(), nullable=True),
    sa.Column('upvote_ratio', sa.Float(), nullable=True),
    sa.Column('awards', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['mention_id'], ['mentions.id'], ),
    sa.PrimaryKeyConstraint('mention_id', 'taken_at')
    )


def downgrade() -> None:
    raise NotImplementedError("the store is never downgraded")

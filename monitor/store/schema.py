"""The schema as it is now, one definition for SQLite and PostgreSQL (SQLAlchemy Core).

Migrations (``migrations/versions``) bring a store to it; queries are built on these tables. Times are
unix seconds (UTC) as floats; JSON columns hold JSON text, decoded by the store (``records``), so both
backends store the same bytes and the loaders read the same columns.
"""

from __future__ import annotations

from sqlalchemy import (Column, Float, ForeignKey, Index, Integer, MetaData, Table, Text, UniqueConstraint,
                        text)

metadata = MetaData()

mentions = Table(
    "mentions", metadata,
    Column("id", Integer, primary_key=True),
    Column("source", Text, nullable=False),
    Column("source_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("url", Text, nullable=False),
    Column("author", Text),
    Column("title", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("place", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("fetched_at", Float, nullable=False),
    Column("brand", Text),
    Column("quote", Text, nullable=False),
    Column("score", Integer), Column("comments", Integer), Column("upvote_ratio", Float), Column("awards", Integer),
    Column("reach", Float),
    Column("extra", Text, nullable=False),  # JSON object
    Column("compound", Float), Column("negative", Float), Column("neutral", Float), Column("positive", Float),
    Column("min_sentence", Float), Column("negative_share", Float), Column("brand_compound", Float),
    Column("title_compound", Float),
    Column("urgency", Float), Column("virality", Float), Column("priority", Text),
    Column("reasons", Text),  # JSON list of {kind, name, urgency, virality, detail}
    Column("tags", Text),  # JSON list
    Column("signals", Text),  # JSON object
    Column("suppressed", Integer, nullable=False, server_default=text("0")),
    Column("story_id", Integer, ForeignKey("stories.id")),
    Column("peak_priority", Text),
    Column("complaint", Float),
    Column("is_complaint", Integer, nullable=False, server_default=text("0")),
    # The names of the rules that fired (JSON list), written by the store with the reasons: analysts load a
    # million rows without decoding a million reasons (analysis.load_mentions).
    Column("rules", Text),
    UniqueConstraint("source", "source_id"),
    Index("mentions_brand_created", "brand", "created_at"),
    Index("mentions_fetched", "fetched_at"),
    Index("mentions_story", "story_id"),
    Index("mentions_created", "created_at"),
    # "has this story been seen in this place before?" without scanning the story's mentions
    Index("mentions_story_place", "story_id", "source", "place"),
)

alerts = Table(
    "alerts", metadata,
    Column("id", Integer, primary_key=True),
    Column("mention_id", Integer, ForeignKey("mentions.id"), nullable=False),
    Column("recipient", Text, nullable=False),
    Column("priority", Text, nullable=False),
    Column("status", Text, nullable=False, server_default=text("'pending'")),  # pending, sent, failed, superseded
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", Float, nullable=False),
    Column("last_error", Text),
    Column("message_id", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("sent_at", Float),
    Column("urgency", Float), Column("virality", Float), Column("score", Integer), Column("comments", Integer),
    Column("digest", Integer, nullable=False, server_default=text("0")),
    Column("kind", Text, nullable=False, server_default=text("'alert'")),  # alert (first at its level), follow_up
    Column("subject", Text),  # the subject it was sent with: its thread keeps the words
    Column("held_until", Float),  # held on purpose (quiet hours, follow-up spacing) until then
    Column("about", Text, nullable=False, server_default=text("'complaint'")),  # complaint, or viral
    Index("alerts_pending", "status", "next_attempt_at"),
    # One first alert per mention, recipient and level; follow-ups at a level are not limited by it.
    Index("alerts_once_per_level", "mention_id", "recipient", "priority", unique=True,
          sqlite_where=text("kind = 'alert'"), postgresql_where=text("kind = 'alert'")),
    Index("alerts_recipient_mention", "recipient", "mention_id"),
)

source_state = Table(
    "source_state", metadata,
    Column("source", Text, primary_key=True),
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),  # JSON
)

snapshots = Table(
    "snapshots", metadata,
    Column("mention_id", Integer, ForeignKey("mentions.id"), primary_key=True),
    Column("taken_at", Float, primary_key=True),
    Column("score", Integer), Column("comments", Integer), Column("upvote_ratio", Float), Column("awards", Integer),
)

stories = Table(
    "stories", metadata,
    Column("id", Integer, primary_key=True),
    Column("brand", Text),
    Column("key", Text, nullable=False, unique=True),  # normalised link or title fingerprint
    Column("title", Text, nullable=False),
    Column("url", Text, nullable=False),
    Column("first_seen", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("sightings", Integer, nullable=False, server_default=text("1")),
    Index("stories_brand_seen", "brand", "last_seen"),
)

story_keys = Table(
    "story_keys", metadata,
    Column("key", Text, primary_key=True),  # "url:host/path?query" or "title:brand:sorted words"
    Column("story_id", Integer, ForeignKey("stories.id"), nullable=False),
    Index("story_keys_story", "story_id"),
)

poll_runs = Table(
    "poll_runs", metadata,
    Column("id", Integer, primary_key=True),
    Column("source", Text, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float, nullable=False),
    Column("items", Integer, nullable=False),
    Column("stored", Integer, nullable=False),
    Column("errors", Text, nullable=False),  # JSON list of reasons
    Column("interval", Float),
    Index("poll_runs_source", "source", "started_at"),
)

failures = Table(
    "failures", metadata,
    Column("subject", Text, primary_key=True),  # "source:reddit", "feed:https://...", "smtp"
    Column("since", Float, nullable=False),
    Column("last_at", Float, nullable=False),
    Column("count", Integer, nullable=False),
    Column("last_error", Text, nullable=False),
    Column("notified", Integer, nullable=False, server_default=text("0")),
)

labels = Table(
    "labels", metadata,
    Column("mention_id", Integer, ForeignKey("mentions.id"), primary_key=True),
    Column("label", Integer, nullable=False),  # 1 complaint, 0 not
    Column("labelled_at", Float, nullable=False),
    Column("labelled_by", Text, nullable=False, server_default=text("''")),
)

# Several daemons on one PostgreSQL store: who does which work, until when (monitor/store/leases.py).
leases = Table(
    "leases", metadata,
    Column("name", Text, primary_key=True),  # "rss:feed:URL", "job:deliver", "alert:42", "daemon:HOLDER"
    Column("holder", Text),  # None: free
    Column("expires_at", Float, nullable=False, server_default=text("0")),  # the database's clock
    Column("done_at", Float),  # when its work was last finished: who goes first, jobs' periods, alerts sent
    Index("leases_holder", "holder"),
)

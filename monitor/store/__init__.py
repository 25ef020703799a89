"""Storage: mentions with their scores, the alert outbox, stories, the daemon's health, source cursors,
in a SQLite file or a PostgreSQL database (SQLAlchemy Core; the schema in ``schema``, its migrations run
by Alembic when a store opens).

Every statement of the program lives in this package, one module per concern; the rest of the program
sees one ``Store`` and the typed records it hands out (``records``), never rows or JSON text.
A mention, its scores and the alerts it causes are written in one transaction, so a crash can never
leave a scored mention without its alerts.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from .alerts import AlertStore
from .database import Database
from .health import HealthStore
from .legacy import RULE_NAMES
from .mentions import MentionStore, from_epoch, to_epoch
from .records import (AlertRecord, FailureRecord, LabelledMention, MentionRecord, PollRunRecord, SnapshotRecord,
                      SourceHealth, StoryPlace)
from .state import StateStore
from .stories import StoryStore

__all__ = ["Store", "StoreError", "to_epoch", "from_epoch", "RULE_NAMES", "AlertRecord", "FailureRecord",
           "LabelledMention", "MentionRecord", "PollRunRecord", "SnapshotRecord", "SourceHealth", "StoryPlace"]


# What the store raises when it cannot read or write: nothing may count as done then.
StoreError = sa.exc.SQLAlchemyError


class Store(Database, MentionStore, AlertStore, StoryStore, HealthStore, StateStore):
    """The one door to the stored data: each concern's methods live in its own module."""

    def __init__(self, where: str | Path):
        """``where``: a SQLite file, or a postgresql://user@host:port/database URL (password in PGPASSWORD)."""
        super().__init__(where)

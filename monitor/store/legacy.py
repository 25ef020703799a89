"""The schema as raw SQLite migrations 1-11, frozen: released migrations are never edited.

A store is versioned by ``PRAGMA user_version``; these bring a store of any earlier release to 11.
"""

from __future__ import annotations

import sqlite3
from typing import Iterator

# The names of the reasons of kind "rule" in a reasons text, in order, as a JSON list; reasons without the
# word "rule" in them are not parsed at all.
RULE_NAMES = ("CASE WHEN instr({reasons}, '\"rule\"') > 0 THEN"
              " (SELECT json_group_array(json_extract(j.value, '$.name')) FROM json_each({reasons}) j"
              " WHERE json_extract(j.value, '$.kind') = 'rule') ELSE '[]' END")

MIGRATIONS: list[str] = [
    # 1: first release
    """
    CREATE TABLE mentions (
        id INTEGER PRIMARY KEY,
        source TEXT NOT NULL,
        source_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        url TEXT NOT NULL,
        author TEXT,
        title TEXT NOT NULL,
        text TEXT NOT NULL,
        place TEXT NOT NULL,
        created_at REAL NOT NULL,      -- unix seconds, UTC
        fetched_at REAL NOT NULL,
        brand TEXT,
        quote TEXT NOT NULL,
        score INTEGER, comments INTEGER, upvote_ratio REAL, awards INTEGER,
        reach REAL,
        extra TEXT NOT NULL,           -- JSON
        compound REAL, negative REAL, neutral REAL, positive REAL,
        min_sentence REAL, negative_share REAL, brand_compound REAL, title_compound REAL,
        urgency REAL, virality REAL, priority TEXT,
        reasons TEXT,                  -- JSON list of {kind, name, urgency, virality, detail}
        tags TEXT,                     -- JSON list
        signals TEXT,                  -- JSON object
        suppressed INTEGER NOT NULL DEFAULT 0,
        UNIQUE (source, source_id)
    );
    CREATE INDEX mentions_brand_created ON mentions (brand, created_at);
    CREATE INDEX mentions_fetched ON mentions (fetched_at);
    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY,
        mention_id INTEGER NOT NULL REFERENCES mentions (id),
        recipient TEXT NOT NULL,
        priority TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',   -- pending, sent, failed
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        last_error TEXT,
        message_id TEXT NOT NULL,
        created_at REAL NOT NULL,
        sent_at REAL,
        UNIQUE (mention_id, recipient, priority)
    );
    CREATE INDEX alerts_pending ON alerts (status, next_attempt_at);
    CREATE TABLE source_state (
        source TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,           -- JSON
        PRIMARY KEY (source, key)
    );
    CREATE TABLE snapshots (
        mention_id INTEGER NOT NULL REFERENCES mentions (id),
        taken_at REAL NOT NULL,
        score INTEGER, comments INTEGER, upvote_ratio REAL, awards INTEGER,
        PRIMARY KEY (mention_id, taken_at)
    );
    """,
    # 2: stories -- the same story seen in several places (same link, near-identical title)
    """
    CREATE TABLE stories (
        id INTEGER PRIMARY KEY,
        brand TEXT,
        key TEXT NOT NULL UNIQUE,      -- normalised link or title fingerprint
        title TEXT NOT NULL,
        url TEXT NOT NULL,
        first_seen REAL NOT NULL,
        last_seen REAL NOT NULL,
        sightings INTEGER NOT NULL DEFAULT 1
    );
    ALTER TABLE mentions ADD COLUMN story_id INTEGER REFERENCES stories (id);
    CREATE INDEX mentions_story ON mentions (story_id);
    """,
    # 3: what each alert reported (for "what changed" in escalations), and digest alerts
    """
    ALTER TABLE alerts ADD COLUMN urgency REAL;
    ALTER TABLE alerts ADD COLUMN virality REAL;
    ALTER TABLE alerts ADD COLUMN score INTEGER;
    ALTER TABLE alerts ADD COLUMN comments INTEGER;
    ALTER TABLE alerts ADD COLUMN digest INTEGER NOT NULL DEFAULT 0;
    """,
    # 4: the daemon's own health: one row per poll, and failures that repeat
    """
    CREATE TABLE poll_runs (
        id INTEGER PRIMARY KEY,
        source TEXT NOT NULL,
        started_at REAL NOT NULL,
        finished_at REAL NOT NULL,
        items INTEGER NOT NULL,
        stored INTEGER NOT NULL,
        errors TEXT NOT NULL           -- JSON list of reasons
    );
    CREATE INDEX poll_runs_source ON poll_runs (source, started_at);
    CREATE TABLE failures (
        subject TEXT PRIMARY KEY,      -- "source:reddit", "feed:https://...", "smtp"
        since REAL NOT NULL,
        last_at REAL NOT NULL,
        count INTEGER NOT NULL,
        last_error TEXT NOT NULL,
        notified INTEGER NOT NULL DEFAULT 0
    );
    """,
    # 5: every link and title fingerprint a story was seen under; recent stories of a brand
    """
    CREATE TABLE story_keys (
        key TEXT PRIMARY KEY,          -- "url:host/path?query" or "title:brand:sorted words"
        story_id INTEGER NOT NULL REFERENCES stories (id)
    );
    CREATE INDEX story_keys_story ON story_keys (story_id);
    CREATE INDEX stories_brand_seen ON stories (brand, last_seen);
    """,
    # 6: analysts filter by time alone (``since``/``until`` without a brand)
    """
    CREATE INDEX mentions_created ON mentions (created_at);
    """,
    # 7: the interval a source actually ran at (an RSS feed may be due sooner than the source's default)
    """
    ALTER TABLE poll_runs ADD COLUMN interval REAL;
    """,
    # 8: "has this story been seen in this place before?" without scanning the story's mentions
    """
    CREATE INDEX mentions_story_place ON mentions (story_id, source, place);
    """,
    # 9: follow-ups at a level already alerted (a story that grew a lot or reached a new place), so the
    #    one-per-level rule becomes a partial index on first alerts; the subject a thread keeps; the
    #    highest priority a mention reached (its priority decays once the growth stops)
    """
    CREATE TABLE alerts_9 (
        id INTEGER PRIMARY KEY,
        mention_id INTEGER NOT NULL REFERENCES mentions (id),
        recipient TEXT NOT NULL,
        priority TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',   -- pending, sent, failed, superseded
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        last_error TEXT,
        message_id TEXT NOT NULL,
        created_at REAL NOT NULL,
        sent_at REAL,
        urgency REAL, virality REAL, score INTEGER, comments INTEGER,
        digest INTEGER NOT NULL DEFAULT 0,
        kind TEXT NOT NULL DEFAULT 'alert',       -- alert (first at its level) or follow_up
        subject TEXT,                             -- the subject it was sent with: its thread keeps the words
        held_until REAL                           -- held on purpose (quiet hours, follow-up spacing) until then
    );
    INSERT INTO alerts_9 (id, mention_id, recipient, priority, status, attempts, next_attempt_at, last_error,
                          message_id, created_at, sent_at, urgency, virality, score, comments, digest)
        SELECT id, mention_id, recipient, priority, status, attempts, next_attempt_at, last_error, message_id,
               created_at, sent_at, urgency, virality, score, comments, digest FROM alerts;
    DROP TABLE alerts;
    ALTER TABLE alerts_9 RENAME TO alerts;
    CREATE INDEX alerts_pending ON alerts (status, next_attempt_at);
    CREATE UNIQUE INDEX alerts_once_per_level ON alerts (mention_id, recipient, priority) WHERE kind = 'alert';
    CREATE INDEX alerts_recipient_mention ON alerts (recipient, mention_id);
    ALTER TABLE mentions ADD COLUMN peak_priority TEXT;
    UPDATE mentions SET peak_priority = min(priority, coalesce(
        (SELECT min(a.priority) FROM alerts a WHERE a.mention_id = mentions.id), priority));
    """,
    # 10: the complaint model's reading, what kind of alert was sent, and people's labels to learn from
    """
    ALTER TABLE mentions ADD COLUMN complaint REAL;
    ALTER TABLE mentions ADD COLUMN is_complaint INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE alerts ADD COLUMN about TEXT NOT NULL DEFAULT 'complaint';  -- complaint, or viral (not a complaint)
    CREATE TABLE labels (
        mention_id INTEGER PRIMARY KEY REFERENCES mentions (id),
        label INTEGER NOT NULL,        -- 1 complaint, 0 not
        labelled_at REAL NOT NULL,
        labelled_by TEXT NOT NULL DEFAULT ''
    );
    """,
    # 11: the names of the rules that fired (JSON list), kept from the reasons by SQLite itself whoever writes
    #     them: analysts load a million rows without decoding a million reasons (analysis.load_mentions)
    f"""
    ALTER TABLE mentions ADD COLUMN rules TEXT;
    UPDATE mentions SET rules = {RULE_NAMES.format(reasons="reasons")};
    CREATE TRIGGER mentions_rules_insert AFTER INSERT ON mentions BEGIN
        UPDATE mentions SET rules = {RULE_NAMES.format(reasons="NEW.reasons")} WHERE id = NEW.id;
    END;
    CREATE TRIGGER mentions_rules_update AFTER UPDATE OF reasons ON mentions BEGIN
        UPDATE mentions SET rules = {RULE_NAMES.format(reasons="NEW.reasons")} WHERE id = NEW.id;
    END;
    """,
]


def _statements(script: str) -> Iterator[str]:
    """The statements of a migration, one by one: split at each ";" that ends one (not at those inside a
    trigger's BEGIN ... END)."""
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \t\n;"):
                yield pending
            pending = ""


def migrate(db: sqlite3.Connection, where: object) -> None:
    """Bring the SQLite store on ``db`` (autocommit mode) to the last migration here, one transaction each."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise RuntimeError(f"{where}: store schema {version} is newer than this program ({len(MIGRATIONS)})")
    for number in range(version, len(MIGRATIONS)):
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(MIGRATIONS[number]):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {number + 1}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

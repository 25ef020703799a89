"""SQLite storage: mentions with their scores, the alert outbox, source cursors.

One file, WAL mode, schema versioned by ``PRAGMA user_version`` with the
migrations below (append only: a released migration is never edited).
A mention, its scores and the alerts it causes are written in one
transaction, so a crash can never leave a scored mention without its alerts.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from .mention import Engagement, Mention

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


def to_epoch(dt: datetime) -> float:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def from_epoch(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, timezone.utc)


class Store:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection shared by the scheduler's threads, serialised by a lock:
        # SQLite writes are serialised anyway, and this keeps transactions whole.
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._depth = 0
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    def _migrate(self) -> None:
        with self._lock:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > len(MIGRATIONS):
                raise RuntimeError(f"{self.path}: store schema {version} is newer than this program ({len(MIGRATIONS)})")
            for number in range(version, len(MIGRATIONS)):
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for statement in _statements(MIGRATIONS[number]):
                        self._db.execute(statement)
                    self._db.execute(f"PRAGMA user_version = {number + 1}")
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise

    @property
    def schema_version(self) -> int:
        return self._db.execute("PRAGMA user_version").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Nested uses join the outer transaction."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self._db
                finally:
                    self._depth -= 1
                return
            self._db.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")
            finally:
                self._depth = 0

    def query(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # -- mentions -------------------------------------------------------

    def known(self, source: str, source_ids: list[str]) -> set[str]:
        """Which of these ids are already stored (so they are not scored again)."""
        found: set[str] = set()
        for i in range(0, len(source_ids), 500):
            chunk = source_ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.query(f"SELECT source_id FROM mentions WHERE source = ? AND source_id IN ({marks})",
                              [source, *chunk])
            found.update(r[0] for r in rows)
        return found

    def add_mention(self, mention: Mention, scores) -> int | None:
        """Store a scored mention; None when it was stored before."""
        s = scores.sentiment
        e = mention.engagement
        row = {
            "source": mention.source, "source_id": mention.source_id, "kind": mention.kind,
            "url": mention.url, "author": mention.author, "title": mention.title, "text": mention.text,
            "place": mention.place, "created_at": to_epoch(mention.created_at),
            "fetched_at": to_epoch(mention.fetched_at), "brand": mention.brand, "quote": mention.quote,
            "score": e.score, "comments": e.comments, "upvote_ratio": e.upvote_ratio, "awards": e.awards,
            "reach": mention.reach, "extra": json.dumps(mention.extra, default=str),
            "compound": s.compound, "negative": s.negative, "neutral": s.neutral, "positive": s.positive,
            "min_sentence": s.min_sentence, "negative_share": s.negative_share,
            "brand_compound": s.brand_compound, "title_compound": scores.title_compound,
            "urgency": scores.urgency, "virality": scores.virality, "priority": scores.priority,
            "complaint": scores.complaint, "is_complaint": int(scores.is_complaint),
            "peak_priority": scores.priority,
            "reasons": json.dumps([r.as_dict() for r in scores.reasons]),
            "tags": json.dumps(scores.verdict.tags), "signals": json.dumps(scores.signals.as_dict()),
            "suppressed": int(scores.verdict.suppressed),
        }
        cols = ",".join(row)
        marks = ",".join(f":{c}" for c in row)
        with self.transaction() as db:
            cur = db.execute(f"INSERT OR IGNORE INTO mentions ({cols}) VALUES ({marks})", row)
            if cur.rowcount == 0:
                return None
            mention_id = cur.lastrowid
            if e.score is not None or e.comments is not None:
                db.execute("INSERT OR IGNORE INTO snapshots VALUES (?,?,?,?,?,?)",
                           (mention_id, row["fetched_at"], e.score, e.comments, e.upvote_ratio, e.awards))
            return mention_id

    def find_mention(self, source: str, source_id: str) -> sqlite3.Row | None:
        rows = self.query("SELECT * FROM mentions WHERE source = ? AND source_id = ?", (source, source_id))
        return rows[0] if rows else None

    def add_snapshot(self, mention_id: int, engagement: Engagement, taken_at: float) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO snapshots VALUES (?,?,?,?,?,?)",
                       (mention_id, taken_at, engagement.score, engagement.comments, engagement.upvote_ratio,
                        engagement.awards))
            db.execute("UPDATE mentions SET score = ?, comments = ?, upvote_ratio = ?, awards = ? WHERE id = ?",
                       (engagement.score, engagement.comments, engagement.upvote_ratio, engagement.awards,
                        mention_id))

    def snapshots(self, mention_id: int) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM snapshots WHERE mention_id = ? ORDER BY taken_at", (mention_id,))

    def update_scores(self, mention_id: int, scores) -> None:
        s = scores.sentiment
        with self.transaction() as db:
            db.execute(
                # peak_priority keeps the highest level reached ("P1" < "P2" as text): what was alerted.
                "UPDATE mentions SET urgency = ?, virality = ?, priority = ?, peak_priority = min(coalesce("
                " peak_priority, ?3), ?3), reasons = ?, tags = ?, signals = ?,"
                " suppressed = ?, compound = ?, negative = ?, neutral = ?, positive = ?, min_sentence = ?,"
                " negative_share = ?, brand_compound = ?, title_compound = ?, complaint = ?, is_complaint = ?"
                " WHERE id = ?",
                (scores.urgency, scores.virality, scores.priority, json.dumps([r.as_dict() for r in scores.reasons]),
                 json.dumps(scores.verdict.tags), json.dumps(scores.signals.as_dict()),
                 int(scores.verdict.suppressed), s.compound, s.negative, s.neutral, s.positive, s.min_sentence,
                 s.negative_share, s.brand_compound, scores.title_compound, scores.complaint,
                 int(scores.is_complaint), mention_id))

    def update_text(self, mention_id: int, mention: Mention) -> None:
        """An edited mention's text, quote and extra (which keeps the text first read)."""
        with self.transaction() as db:
            db.execute("UPDATE mentions SET text = ?, quote = ?, extra = ? WHERE id = ?",
                       (mention.text, mention.quote, json.dumps(mention.extra, default=str), mention_id))

    def mention(self, mention_id: int) -> sqlite3.Row | None:
        rows = self.query("SELECT * FROM mentions WHERE id = ?", (mention_id,))
        return rows[0] if rows else None

    @staticmethod
    def row_to_mention(row: sqlite3.Row) -> Mention:
        return Mention(
            source=row["source"], source_id=row["source_id"], kind=row["kind"], url=row["url"],
            author=row["author"], title=row["title"], text=row["text"], place=row["place"],
            created_at=from_epoch(row["created_at"]), fetched_at=from_epoch(row["fetched_at"]),
            engagement=Engagement(row["score"], row["comments"], row["upvote_ratio"], row["awards"]),
            reach=row["reach"], extra=json.loads(row["extra"]), brand=row["brand"], quote=row["quote"],
        )

    # -- people's labels -------------------------------------------------

    def set_label(self, mention_id: int, label: bool, *, now: float, by: str = "") -> bool:
        """Record that a mention is (or is not) a complaint; the latest word counts. False: no such mention."""
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM mentions WHERE id = ?", (mention_id,)).fetchone() is None:
                return False
            db.execute("INSERT OR REPLACE INTO labels (mention_id, label, labelled_at, labelled_by) VALUES (?,?,?,?)",
                       (mention_id, int(label), now, by))
            return True

    def labelled(self) -> list[sqlite3.Row]:
        """Labelled mentions with the words the complaint model reads, in the order labelled."""
        return self.query("SELECT m.id, m.title, m.text, l.label, l.labelled_at, l.labelled_by FROM labels l"
                          " JOIN mentions m ON m.id = l.mention_id ORDER BY l.labelled_at, m.id")

    # -- alert outbox ---------------------------------------------------

    def enqueue_alert(self, *, mention_id: int, recipient: str, priority: str, now: float, urgency: float = 0,
                      virality: float = 0, score: int | None = None, comments: int | None = None,
                      digest: bool = False, kind: str = "alert", not_before: float | None = None,
                      about: str = "complaint") -> int | None:
        """``kind`` "alert" is the first at its level (once per mention, recipient and level);
        "follow_up" is news at a level already alerted, sent from ``not_before`` on. ``about``: a complaint,
        or a mention that spreads without being one ("viral")."""
        with self.transaction() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO alerts (mention_id, recipient, priority, next_attempt_at, message_id,"
                " created_at, urgency, virality, score, comments, digest, kind, held_until, about)"
                " VALUES (?, ?, ?, ?, '', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (mention_id, recipient, priority, max(now, not_before or now), now, urgency, virality, score, comments,
                 int(digest), kind, not_before if not_before and not_before > now else None, about))
            if cur.rowcount == 0:
                return None
            alert_id = cur.lastrowid
            # Fixed before the first attempt, so a resend after a crash carries
            # the same Message-ID and the recipient's mail client folds it.
            db.execute("UPDATE alerts SET message_id = ? WHERE id = ?",
                       (f"<alert-{alert_id}-m{mention_id}@complaint-monitor>", alert_id))
            # A lower level still waiting (SMTP down, a restart) would arrive beside this one as a
            # second, unthreaded email about the same story with old news: this one replaces it.
            db.execute("UPDATE alerts SET status = 'superseded' WHERE mention_id = ? AND recipient = ?"
                       " AND status = 'pending' AND priority > ?", (mention_id, recipient, priority))
            return alert_id

    def supersede(self, alert_ids: list[int]) -> None:
        """Pending alerts replaced by a later one that tells the same news."""
        with self.transaction() as db:
            db.executemany("UPDATE alerts SET status = 'superseded' WHERE id = ? AND status = 'pending'",
                           [(i,) for i in alert_ids])

    def due_alerts(self, now: float, limit: int = 200) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM alerts WHERE status = 'pending' AND digest = 0 AND next_attempt_at <= ?"
                          " ORDER BY priority, id LIMIT ?", (now, limit))

    def pending_digest_alerts(self) -> list[sqlite3.Row]:
        # Highest priority first ('P3' < 'P4'): the top of a digest is what most deserves a look.
        return self.query("SELECT * FROM alerts WHERE status = 'pending' AND digest = 1"
                          " ORDER BY recipient, priority, id")

    # The mention and, when it belongs to a story, every mention of that story: one incident, one thread.
    _THREAD = ("recipient = ? AND mention_id IN (SELECT ? UNION SELECT id FROM mentions WHERE story_id ="
               " (SELECT story_id FROM mentions WHERE id = ?))")

    def earlier_alerts(self, alert: sqlite3.Row) -> list[sqlite3.Row]:
        """Alerts already sent to the same recipient about the same mention or its story: the thread to reply in."""
        return self.query(f"SELECT * FROM alerts WHERE {self._THREAD} AND status = 'sent' AND id < ? ORDER BY id",
                          (alert["recipient"], alert["mention_id"], alert["mention_id"], alert["id"]))

    def thread_alerts(self, mention_id: int, recipient: str) -> list[sqlite3.Row]:
        """Every alert (any status) queued for the recipient about the mention or its story, oldest first."""
        return self.query(f"SELECT * FROM alerts WHERE {self._THREAD} ORDER BY id", (recipient, mention_id, mention_id))

    def postpone(self, alert_id: int, until: float) -> None:
        """Held on purpose (quiet hours): analysts tell that wait from a delay by ``held_until``."""
        with self.transaction() as db:
            db.execute("UPDATE alerts SET next_attempt_at = ?, held_until = ? WHERE id = ?", (until, until, alert_id))

    def mark_sent(self, alert_ids: int | list[int], now: float, *, subject: str | None = None) -> None:
        """``subject``: the subject the email carried; the rest of its thread keeps its words."""
        ids = [alert_ids] if isinstance(alert_ids, int) else alert_ids
        with self.transaction() as db:
            db.executemany("UPDATE alerts SET status = 'sent', sent_at = ?, attempts = attempts + 1,"
                           " last_error = NULL, subject = coalesce(?, subject) WHERE id = ?",
                           [(now, subject, i) for i in ids])

    def mark_failed(self, alert_id: int, error: str, *, retry_at: float | None) -> None:
        with self.transaction() as db:
            if retry_at is None:
                db.execute("UPDATE alerts SET status = 'failed', attempts = attempts + 1, last_error = ?"
                           " WHERE id = ?", (error, alert_id))
            else:
                db.execute("UPDATE alerts SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?"
                           " WHERE id = ?", (error, retry_at, alert_id))

    def pending_alerts(self) -> list[sqlite3.Row]:
        return self.query("SELECT * FROM alerts WHERE status = 'pending' ORDER BY recipient, priority, id")

    def pending_count(self) -> int:
        return self.query("SELECT count(*) FROM alerts WHERE status = 'pending'")[0][0]

    def oldest_pending(self) -> float | None:
        return self.query("SELECT min(created_at) FROM alerts WHERE status = 'pending'")[0][0]

    # -- health ---------------------------------------------------------

    def record_poll(self, *, source: str, started_at: float, finished_at: float, items: int, stored: int,
                    errors: list[str], interval: float | None = None) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO poll_runs (source, started_at, finished_at, items, stored, errors, interval)"
                       " VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (source, started_at, finished_at, items, stored, json.dumps(errors), interval))

    def record_failure(self, subject: str, error: str, now: float) -> sqlite3.Row:
        with self.transaction() as db:
            db.execute("INSERT INTO failures (subject, since, last_at, count, last_error) VALUES (?, ?, ?, 1, ?)"
                       " ON CONFLICT (subject) DO UPDATE SET last_at = excluded.last_at, count = count + 1,"
                       " last_error = excluded.last_error", (subject, now, now, error))
            return db.execute("SELECT * FROM failures WHERE subject = ?", (subject,)).fetchone()

    def clear_failure(self, subject: str) -> sqlite3.Row | None:
        with self.transaction() as db:
            row = db.execute("SELECT * FROM failures WHERE subject = ?", (subject,)).fetchone()
            db.execute("DELETE FROM failures WHERE subject = ?", (subject,))
            return row

    def mark_failure_notified(self, subject: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE failures SET notified = 1 WHERE subject = ?", (subject,))

    def prune(self, *, snapshots_before: float, poll_runs_before: float) -> tuple[int, int]:
        """Drop old growth snapshots and poll records; mentions and alerts are kept for good."""
        with self.transaction() as db:
            snaps = db.execute("DELETE FROM snapshots WHERE taken_at < ?", (snapshots_before,)).rowcount
            runs = db.execute("DELETE FROM poll_runs WHERE started_at < ?", (poll_runs_before,)).rowcount
        return snaps, runs

    # -- source state (cursors, ETags) ----------------------------------

    def source_state(self, source: str) -> dict[str, Any]:
        return {r["key"]: json.loads(r["value"]) for r in
                self.query("SELECT key, value FROM source_state WHERE source = ?", (source,))}

    def save_source_state(self, source: str, state: dict[str, Any]) -> None:
        """Upsert each key; a key whose value is None is forgotten."""
        with self.transaction() as db:
            db.executemany("INSERT INTO source_state (source, key, value) VALUES (?, ?, ?)"
                           " ON CONFLICT (source, key) DO UPDATE SET value = excluded.value",
                           [(source, k, json.dumps(v)) for k, v in state.items() if v is not None])
            db.executemany("DELETE FROM source_state WHERE source = ? AND key = ?",
                           [(source, k) for k, v in state.items() if v is None])

"""Mentions with their scores, their engagement snapshots, and people's labels."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from ..mention import Engagement, Mention
from .records import LabelledMention, MentionRecord, SnapshotRecord, record


def to_epoch(dt: datetime) -> float:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def from_epoch(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, timezone.utc)


def _score_columns(scores) -> dict[str, Any]:
    s = scores.sentiment
    return {
        "compound": s.compound, "negative": s.negative, "neutral": s.neutral, "positive": s.positive,
        "min_sentence": s.min_sentence, "negative_share": s.negative_share,
        "brand_compound": s.brand_compound, "title_compound": scores.title_compound,
        "urgency": scores.urgency, "virality": scores.virality, "priority": scores.priority,
        "complaint": scores.complaint, "is_complaint": int(scores.is_complaint),
        "reasons": json.dumps([r.as_dict() for r in scores.reasons]),
        "tags": json.dumps(scores.verdict.tags), "signals": json.dumps(scores.signals.as_dict()),
        "suppressed": int(scores.verdict.suppressed),
    }


class MentionStore:
    def known(self, source: str, source_ids: list[str]) -> set[str]:
        """Which of these ids are already stored (so they are not scored again)."""
        found: set[str] = set()
        for i in range(0, len(source_ids), 500):
            chunk = source_ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._rows(f"SELECT source_id FROM mentions WHERE source = ? AND source_id IN ({marks})",
                              [source, *chunk])
            found.update(r[0] for r in rows)
        return found

    def add_mention(self, mention: Mention, scores) -> int | None:
        """Store a scored mention; None when it was stored before."""
        e = mention.engagement
        row = {
            "source": mention.source, "source_id": mention.source_id, "kind": mention.kind,
            "url": mention.url, "author": mention.author, "title": mention.title, "text": mention.text,
            "place": mention.place, "created_at": to_epoch(mention.created_at),
            "fetched_at": to_epoch(mention.fetched_at), "brand": mention.brand, "quote": mention.quote,
            "score": e.score, "comments": e.comments, "upvote_ratio": e.upvote_ratio, "awards": e.awards,
            "reach": mention.reach, "extra": json.dumps(mention.extra, default=str),
            **_score_columns(scores), "peak_priority": scores.priority,
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

    def find_mention(self, source: str, source_id: str) -> MentionRecord | None:
        rows = self._rows("SELECT * FROM mentions WHERE source = ? AND source_id = ?", (source, source_id))
        return MentionRecord.from_row(rows[0]) if rows else None

    def mention(self, mention_id: int) -> MentionRecord | None:
        rows = self._rows("SELECT * FROM mentions WHERE id = ?", (mention_id,))
        return MentionRecord.from_row(rows[0]) if rows else None

    def add_snapshot(self, mention_id: int, engagement: Engagement, taken_at: float) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO snapshots VALUES (?,?,?,?,?,?)",
                       (mention_id, taken_at, engagement.score, engagement.comments, engagement.upvote_ratio,
                        engagement.awards))
            db.execute("UPDATE mentions SET score = ?, comments = ?, upvote_ratio = ?, awards = ? WHERE id = ?",
                       (engagement.score, engagement.comments, engagement.upvote_ratio, engagement.awards,
                        mention_id))

    def snapshots(self, mention_id: int) -> list[SnapshotRecord]:
        return [record(SnapshotRecord, r) for r in
                self._rows("SELECT * FROM snapshots WHERE mention_id = ? ORDER BY taken_at", (mention_id,))]

    def update_scores(self, mention_id: int, scores) -> None:
        columns = _score_columns(scores)
        with self.transaction() as db:
            db.execute(
                # peak_priority keeps the highest level reached ("P1" < "P2" as text): what was alerted.
                "UPDATE mentions SET peak_priority = min(coalesce(peak_priority, :priority), :priority), "
                + ", ".join(f"{c} = :{c}" for c in columns) + " WHERE id = :id", {**columns, "id": mention_id})

    def update_text(self, mention_id: int, mention: Mention) -> None:
        """An edited mention's text, quote and extra (which keeps the text first read)."""
        with self.transaction() as db:
            db.execute("UPDATE mentions SET text = ?, quote = ?, extra = ? WHERE id = ?",
                       (mention.text, mention.quote, json.dumps(mention.extra, default=str), mention_id))

    @staticmethod
    def row_to_mention(row: MentionRecord) -> Mention:
        return Mention(
            source=row.source, source_id=row.source_id, kind=row.kind, url=row.url, author=row.author,
            title=row.title, text=row.text, place=row.place, created_at=from_epoch(row.created_at),
            fetched_at=from_epoch(row.fetched_at),
            engagement=Engagement(row.score, row.comments, row.upvote_ratio, row.awards),
            reach=row.reach, extra=dict(row.extra), brand=row.brand, quote=row.quote,
        )

    # -- what the spike detector counts ------------------------------------

    def count_mentions(self, brand: str, *, after: float, until: float) -> int:
        """The brand's mentions posted in (after, until]."""
        return self._value("SELECT count(*) FROM mentions WHERE brand = ? AND created_at > ? AND created_at <= ?",
                           (brand, after, until))

    def watched_since(self) -> float | None:
        """When the first mention was fetched: the history a baseline can be computed over."""
        return self._value("SELECT min(fetched_at) FROM mentions")

    def spike_candidates(self, brand: str, *, after: float, until: float) -> list[tuple[int, dict[str, Any]]]:
        """The brand's unsuppressed mentions posted in (after, until], most pressing first: (id, signals)."""
        return [(r["id"], json.loads(r["signals"] or "{}")) for r in self._rows(
            "SELECT id, signals FROM mentions WHERE brand = ? AND created_at > ? AND created_at <= ?"
            " AND suppressed = 0 ORDER BY max(urgency, virality) DESC, created_at DESC", (brand, after, until))]

    # -- people's labels -------------------------------------------------

    def set_label(self, mention_id: int, label: bool, *, now: float, by: str = "") -> bool:
        """Record that a mention is (or is not) a complaint; the latest word counts. False: no such mention."""
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM mentions WHERE id = ?", (mention_id,)).fetchone() is None:
                return False
            db.execute("INSERT OR REPLACE INTO labels (mention_id, label, labelled_at, labelled_by) VALUES (?,?,?,?)",
                       (mention_id, int(label), now, by))
            return True

    def labelled(self) -> list[LabelledMention]:
        """Labelled mentions with the words the complaint model reads, in the order labelled."""
        return [record(LabelledMention, r) for r in self._rows(
            "SELECT m.id, m.title, m.text, l.label, l.labelled_at, l.labelled_by FROM labels l"
            " JOIN mentions m ON m.id = l.mention_id ORDER BY l.labelled_at, m.id")]

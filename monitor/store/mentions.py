"""Mentions with their scores, their engagement snapshots, and people's labels."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import bindparam, case, func, select

from ..mention import Engagement, Mention
from .records import LabelledMention, MentionRecord, SnapshotRecord, record
from .schema import labels, mentions, snapshots


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
        # Beside the reasons, whoever writes them (every writer goes through the store): analysts load the
        # names without decoding a million reasons.
        "rules": json.dumps([r.name for r in scores.reasons if r.kind == "rule"], separators=(",", ":")),
        "tags": json.dumps(scores.verdict.tags), "signals": json.dumps(scores.signals.as_dict()),
        "suppressed": int(scores.verdict.suppressed),
    }


_SCORE_NAMES = ("compound", "negative", "neutral", "positive", "min_sentence", "negative_share", "brand_compound",
                "title_compound", "urgency", "virality", "priority", "complaint", "is_complaint", "reasons", "rules",
                "tags", "signals", "suppressed")
m = mentions.c
# Built once: SQLAlchemy caches each statement's compiled form by its structure.
_KNOWN = select(m.source_id).where(m.source == bindparam("source"), m.source_id.in_(bindparam("ids", expanding=True)))
_BY_SOURCE_ID = select(mentions).where(m.source == bindparam("source"), m.source_id == bindparam("source_id"))
_BY_ID = select(mentions).where(m.id == bindparam("id"))
_BY_IDS = select(mentions).where(m.id.in_(bindparam("ids", expanding=True)))
_SNAPSHOTS_OF = (select(snapshots).where(snapshots.c.mention_id.in_(bindparam("ids", expanding=True)))
                 .order_by(snapshots.c.mention_id, snapshots.c.taken_at))
_SNAPSHOTS = select(snapshots).where(snapshots.c.mention_id == bindparam("id")).order_by(snapshots.c.taken_at)
# A re-read's reach replaces the stored one when the source read one (a subreddit's or an author's audience grows).
_SET_ENGAGEMENT = (mentions.update().where(m.id == bindparam("mention_id"))
                   .values(score=bindparam("score"), comments=bindparam("comments"),
                           upvote_ratio=bindparam("upvote_ratio"), awards=bindparam("awards"),
                           reach=func.coalesce(bindparam("reach", type_=m.reach.type), m.reach)))
# peak_priority keeps the highest level reached ("P1" < "P2" as text): what was alerted.
_SET_SCORES = mentions.update().where(m.id == bindparam("mention_id")).values(
    peak_priority=case((m.peak_priority.is_(None) | (m.peak_priority > bindparam("priority")), bindparam("priority")),
                       else_=m.peak_priority),
    **{c: bindparam(c) for c in _SCORE_NAMES})
_SET_TEXT = mentions.update().where(m.id == bindparam("mention_id")).values(
    text=bindparam("text"), quote=bindparam("quote"), extra=bindparam("extra"))
_MENTION_COLUMNS = ("source", "source_id", "kind", "url", "author", "title", "text", "place", "created_at",
                    "fetched_at", "brand", "quote", "score", "comments", "upvote_ratio", "awards", "reach", "extra",
                    *_SCORE_NAMES, "peak_priority")
_SNAPSHOT_COLUMNS = ("mention_id", "taken_at", "score", "comments", "upvote_ratio", "awards")


def _add_mention(insert):
    return (insert(mentions).values({c: bindparam(c) for c in _MENTION_COLUMNS}).on_conflict_do_nothing()
            .returning(m.id))


def _first_snapshot(insert):
    return insert(snapshots).values({c: bindparam(c) for c in _SNAPSHOT_COLUMNS}).on_conflict_do_nothing()


def _snapshot(insert):
    upsert = insert(snapshots).values({c: bindparam(c) for c in _SNAPSHOT_COLUMNS})
    return upsert.on_conflict_do_update(index_elements=["mention_id", "taken_at"],
                                        set_={c: upsert.excluded[c] for c in _SNAPSHOT_COLUMNS[2:]})


_COUNT = select(func.count()).select_from(mentions).where(
    m.brand == bindparam("brand"), m.created_at > bindparam("after"), m.created_at <= bindparam("until"))
_WATCHED_SINCE = select(func.min(m.fetched_at))


class MentionStore:
    def known(self, source: str, source_ids: list[str]) -> set[str]:
        """Which of these ids are already stored (so they are not scored again)."""
        found: set[str] = set()
        for i in range(0, len(source_ids), 500):
            found.update(r[0] for r in self._rows(_KNOWN, {"source": source, "ids": source_ids[i : i + 500]}))
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
        with self.transaction() as db:
            mention_id = db.execute(self._prepared(_add_mention), row).scalar()
            if mention_id is None:
                return None
            if e.score is not None or e.comments is not None:
                db.execute(self._prepared(_first_snapshot), {
                    "mention_id": mention_id, "taken_at": row["fetched_at"], "score": e.score,
                    "comments": e.comments, "upvote_ratio": e.upvote_ratio, "awards": e.awards})
            return mention_id

    def find_mention(self, source: str, source_id: str) -> MentionRecord | None:
        rows = self._rows(_BY_SOURCE_ID, {"source": source, "source_id": source_id})
        return MentionRecord.from_row(rows[0]) if rows else None

    def mention(self, mention_id: int) -> MentionRecord | None:
        rows = self._rows(_BY_ID, {"id": mention_id})
        return MentionRecord.from_row(rows[0]) if rows else None

    def mentions_by_id(self, mention_ids) -> dict[int, MentionRecord]:
        """Several mentions in one query (an alert round's), by id; an id not stored is left out."""
        ids = sorted(set(mention_ids))
        if not ids:
            return {}
        return {r.id: r for r in map(MentionRecord.from_row, self._rows(_BY_IDS, {"ids": ids}))}

    def snapshots_of(self, mention_ids) -> dict[int, list[SnapshotRecord]]:
        """``snapshots`` of several mentions in one query, by mention id (a mention without any is left out)."""
        ids = sorted(set(mention_ids))
        taken: dict[int, list[SnapshotRecord]] = {}
        for row in self._rows(_SNAPSHOTS_OF, {"ids": ids}) if ids else ():
            taken.setdefault(row.mention_id, []).append(record(SnapshotRecord, row))
        return taken

    def add_snapshot(self, mention_id: int, engagement: Engagement, taken_at: float, *,
                     reach: float | None = None) -> None:
        """A re-read's numbers: kept as a snapshot and as the mention's current numbers, with its ``reach`` when
        the re-read gave one (None keeps the stored reach)."""
        numbers = {"score": engagement.score, "comments": engagement.comments,
                   "upvote_ratio": engagement.upvote_ratio, "awards": engagement.awards}
        with self.transaction() as db:
            db.execute(self._prepared(_snapshot), {"mention_id": mention_id, "taken_at": taken_at, **numbers})
            db.execute(_SET_ENGAGEMENT, {"mention_id": mention_id, "reach": reach, **numbers})

    def snapshots(self, mention_id: int) -> list[SnapshotRecord]:
        return [record(SnapshotRecord, r) for r in self._rows(_SNAPSHOTS, {"id": mention_id})]

    def update_scores(self, mention_id: int, scores) -> None:
        with self.transaction() as db:
            db.execute(_SET_SCORES, {**_score_columns(scores), "mention_id": mention_id})

    def update_text(self, mention_id: int, mention: Mention) -> None:
        """An edited mention's text, quote and extra (which keeps the text first read)."""
        with self.transaction() as db:
            db.execute(_SET_TEXT, {"mention_id": mention_id, "text": mention.text, "quote": mention.quote,
                                   "extra": json.dumps(mention.extra, default=str)})

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
        return self._value(_COUNT, {"brand": brand, "after": after, "until": until})

    def watched_since(self) -> float | None:
        """When the first mention was fetched: the history a baseline can be computed over."""
        return self._value(_WATCHED_SINCE)

    def spike_candidates(self, brand: str, *, after: float, until: float) -> list[tuple[int, dict[str, Any]]]:
        """The brand's unsuppressed mentions posted in (after, until], most pressing first: (id, signals)."""
        pressing = case((m.urgency >= m.virality, m.urgency), else_=m.virality)
        return [(r.id, json.loads(r.signals or "{}")) for r in self._rows(
            select(m.id, m.signals).where(m.brand == brand, m.created_at > after, m.created_at <= until,
                                          m.suppressed == 0).order_by(pressing.desc(), m.created_at.desc()))]

    # -- people's labels -------------------------------------------------

    def set_label(self, mention_id: int, label: bool, *, now: float, by: str = "") -> bool:
        """Record that a mention is (or is not) a complaint; the latest word counts. False: no such mention."""
        word = {"label": int(label), "labelled_at": now, "labelled_by": by}
        with self.transaction() as db:
            if db.execute(select(m.id).where(m.id == mention_id)).first() is None:
                return False
            db.execute(self._insert(labels).values(mention_id=mention_id, **word)
                       .on_conflict_do_update(index_elements=["mention_id"], set_=word))
            return True

    def labelled(self) -> list[LabelledMention]:
        """Labelled mentions with the words the complaint model reads, in the order labelled."""
        return [record(LabelledMention, r) for r in self._rows(
            select(m.id, m.title, m.text, labels.c.label, labels.c.labelled_at, labels.c.labelled_by)
            .join(labels, labels.c.mention_id == m.id).order_by(labels.c.labelled_at, m.id))]

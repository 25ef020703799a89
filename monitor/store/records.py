"""What the store hands out: frozen records with the JSON columns already decoded.

Times are unix seconds (UTC), as stored; ``from_epoch`` turns one into a datetime. A record is built from
a result row by its column names, so a column added to a table reaches only the records that name it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any, Mapping, TypeVar

R = TypeVar("R")


def _json(text: str | None, empty: Any) -> Any:
    return empty if text is None or text == "" else json.loads(text)


def _columns(row: Any) -> dict[str, Any]:
    """A result row (SQLAlchemy's Row, sqlite3.Row, or a mapping) as a dict of its columns. Zipped from the
    row's names and values: looking each column up by name cost more than the query."""
    if isinstance(row, Mapping):
        return dict(row)
    return dict(zip(row._fields if hasattr(row, "_fields") else row.keys(), row))


def _fields(cls: type, columns: dict[str, Any]) -> dict[str, Any]:
    return {f: columns[f] for f in _NAMES[cls] if f in columns}


@dataclass(frozen=True, slots=True)
class MentionRecord:
    id: int
    source: str
    source_id: str
    kind: str
    url: str
    author: str | None
    title: str
    text: str
    place: str
    created_at: float
    fetched_at: float
    brand: str | None
    quote: str
    score: int | None
    comments: int | None
    upvote_ratio: float | None
    awards: int | None
    reach: float | None
    extra: dict[str, Any]
    compound: float | None
    negative: float | None
    neutral: float | None
    positive: float | None
    min_sentence: float | None
    negative_share: float | None
    brand_compound: float | None
    title_compound: float | None
    urgency: float | None
    virality: float | None
    priority: str | None
    reasons: list[dict[str, Any]]
    tags: list[str]
    signals: dict[str, Any]
    suppressed: bool
    story_id: int | None
    peak_priority: str | None
    complaint: float | None
    is_complaint: bool
    rules: list[str] = field(default_factory=list)

    @classmethod
    def from_row(cls, row: Any) -> "MentionRecord":
        c = _columns(row)
        return cls(**{**_fields(cls, c), "extra": _json(c["extra"], {}), "reasons": _json(c["reasons"], []),
                      "tags": _json(c["tags"], []), "signals": _json(c["signals"], {}),
                      "rules": _json(c.get("rules"), []), "suppressed": bool(c["suppressed"]),
                      "is_complaint": bool(c["is_complaint"])})


@dataclass(frozen=True, slots=True)
class ThreadSummary:
    """What deciding a new alert needs of a recipient's thread about a mention and its story, superseded alerts
    left out: the mention's own alerts, and of the whole thread only aggregates. A story that went viral has
    thousands of alerts, and reading all of them for every new mention made storing a poll's mentions
    quadratic in the story's size."""
    own: tuple["AlertRecord", ...]  # the mention's own alerts to the recipient, oldest first
    best: str | None  # the highest priority in the thread ("P1" < "P2"), None for an empty thread
    latest: float | None  # when the thread's last alert was queued
    pending: int  # alerts of the thread still waiting to go out

    def after(self, *, priority: str, queued_at: float, superseded: int) -> "ThreadSummary":
        """The thread's aggregates once an alert was queued in it at ``priority`` and ``superseded`` of its
        pending alerts were superseded; the mention's own alerts are left out (each mention reads its own)."""
        return ThreadSummary(own=(), best=priority if self.best is None else min(self.best, priority),
                             latest=queued_at if self.latest is None else max(self.latest, queued_at),
                             pending=self.pending + 1 - superseded)


@dataclass(frozen=True, slots=True)
class AlertRecord:
    id: int
    mention_id: int
    recipient: str
    priority: str
    status: str  # pending, sent, failed, superseded
    attempts: int
    next_attempt_at: float
    last_error: str | None
    message_id: str
    created_at: float
    sent_at: float | None
    urgency: float | None
    virality: float | None
    score: int | None
    comments: int | None
    digest: bool
    kind: str  # alert (first at its level) or follow_up
    subject: str | None
    held_until: float | None
    about: str  # complaint, or viral

    @classmethod
    def from_row(cls, row: Any) -> "AlertRecord":
        return cls.from_rows([row])[0]

    @classmethod
    def from_rows(cls, rows: list[Any]) -> list["AlertRecord"]:
        """``from_row`` for each row of one result, its column names looked up once: a thread's alerts are read
        for every alert rendered and every one queued, and naming each row's columns again cost more than the
        query (bench/bench_alerts.py)."""
        if not rows:
            return []
        wanted = _NAMES[cls]
        picks = [(name, index) for index, name in enumerate(_columns(rows[0])) if name in wanted]
        records = []
        for row in rows:
            values = {name: row[index] for name, index in picks} if not isinstance(row, Mapping) else \
                {name: row[name] for name, _ in picks}
            values["digest"] = bool(values["digest"])
            records.append(cls(**values))
        return records


@dataclass(frozen=True, slots=True)
class SnapshotRecord:
    mention_id: int
    taken_at: float
    score: int | None
    comments: int | None
    upvote_ratio: float | None
    awards: int | None


@dataclass(frozen=True, slots=True)
class FailureRecord:
    subject: str  # "source:reddit", "feed:https://...", "smtp"
    since: float
    last_at: float
    count: int
    last_error: str
    notified: bool

    @classmethod
    def from_row(cls, row: Any) -> "FailureRecord":
        c = _columns(row)
        return cls(**{**_fields(cls, c), "notified": bool(c["notified"])})


@dataclass(frozen=True, slots=True)
class PollRunRecord:
    source: str
    started_at: float
    finished_at: float
    items: int
    stored: int
    errors: list[str]
    interval: float | None

    @classmethod
    def from_row(cls, row: Any) -> "PollRunRecord":
        c = _columns(row)
        return cls(**{**_fields(cls, c), "errors": _json(c["errors"], [])})


@dataclass(frozen=True, slots=True)
class SourceHealth:
    """What ``status`` shows of one source, from its poll records and mentions."""
    last: PollRunRecord | None  # the latest poll
    last_success: float | None  # when the latest poll without errors finished
    last_error: PollRunRecord | None  # the latest poll with errors
    items_since: int  # items its polls read since the time asked about
    mentions_since: int  # mentions of it stored since then
    mentions_by: dict[str, int]  # of those, per value of the extra key asked for (a source's status_key)


@dataclass(frozen=True, slots=True)
class StoryPlace:
    """Where one of a story's mentions was seen."""
    place: str
    source: str
    url: str = ""


@dataclass(frozen=True, slots=True)
class LabelledMention:
    id: int
    title: str
    text: str
    label: int  # 1 complaint, 0 not
    labelled_at: float
    labelled_by: str


_NAMES: dict[type, tuple[str, ...]] = {}


def record(cls: type[R], row: Any) -> R:
    """The record of a result row, decoding what the class decodes."""
    from_row = getattr(cls, "from_row", None)
    if from_row is not None:
        return from_row(row)
    return cls(**_fields(cls, _columns(row)))


for _cls in (MentionRecord, AlertRecord, SnapshotRecord, FailureRecord, PollRunRecord, StoryPlace, LabelledMention):
    _NAMES[_cls] = tuple(f.name for f in fields(_cls))

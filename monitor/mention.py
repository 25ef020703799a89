"""The one record that flows through the whole pipeline.

A source adapter creates a ``Mention`` for every item it sees; the matcher
fills in ``brand`` and ``quote``; the scorer attaches ``Scores``; the store
keeps it; the alerter quotes it. Stages add to it, none replaces it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .links import public_url


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def encodable(value: Any) -> Any:
    """``value`` (a string, or strings inside dicts and lists) with every lone surrogate replaced by U+FFFD;
    a surrogate pair that arrived as two halves becomes the character it encodes."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return value
    if isinstance(value, dict):
        return {encodable(k): encodable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [encodable(v) for v in value]
    return value


@dataclass(slots=True)
class Engagement:
    """Public numbers of a post at one moment; None where a source has no such number."""

    score: int | None = None
    comments: int | None = None
    upvote_ratio: float | None = None
    awards: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(slots=True, kw_only=True)
class Mention:
    source: str  # adapter name, e.g. "reddit" or "rss"
    source_id: str  # stable id inside that source (Reddit fullname, feed entry id)
    url: str
    title: str
    text: str
    author: str | None = None
    created_at: datetime = field(default_factory=utcnow)
    fetched_at: datetime = field(default_factory=utcnow)
    # Where it was said, for a human: "r/espresso", "Hacker News feed".
    place: str = ""
    kind: str = "post"  # post, comment, entry
    engagement: Engagement = field(default_factory=Engagement)
    # How many people can see it: subreddit subscribers, or a feed's weight.
    reach: float | None = None
    # Source-specific facts that rules may read (subreddit, feed name, nsfw, ...).
    extra: dict[str, Any] = field(default_factory=dict)
    # Filled in by the matcher.
    brand: str | None = None
    quote: str = ""
    # Found by a source's first look but older than its backfill window (RSS's first poll of a feed):
    # stored and scored for the record, never alerted as news.
    backfill: bool = False

    def __post_init__(self) -> None:
        # Every stage (the store, json, the email) needs text that is valid Unicode: a lone surrogate
        # (a truncated emoji, "\\ud83d" in Reddit's JSON) would fail the store insert and lose the mention.
        self.source_id, self.title, self.text = encodable(self.source_id), encodable(self.title), encodable(self.text)
        # Credentials in a link (a private feed's user:password@ or ?token=) stay in the config: never stored or
        # emailed, whichever adapter made the mention.
        self.url, self.place = public_url(encodable(self.url)), encodable(self.place)
        if self.author is not None:
            self.author = encodable(self.author)
        self.extra = encodable(self.extra)

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.source_id)

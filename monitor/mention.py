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


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


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

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.source_id)

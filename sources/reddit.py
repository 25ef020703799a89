"""Reddit through praw: new posts and comments in subreddits, and brand searches.

Each listing keeps a cursor (the newest item's creation time and fullname)
in the store, so a poll reads only what is new and a restart resumes where
the last poll stopped. A first start reads back ``backfill_hours`` only.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import Any, Iterable

import praw
import prawcore
from pydantic import BaseModel, ConfigDict, Field

from monitor.mention import Engagement, Mention, utcnow
from monitor.source import Poll, SourceContext

log = logging.getLogger("complaint_monitor.sources.reddit")

PERMALINK_BASE = "https://www.reddit.com"
MULTIREDDIT_BATCH = 50  # subreddit names per combined r/a+b+c listing
MAX_ITEMS_PER_LISTING = 1000  # Reddit's listings stop here anyway


class RedditSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    client_id: str = ""
    client_secret: str = Field(default="", repr=False)
    user_agent: str = "complaint-monitor/0.1"
    subreddits: list[str] = Field(default_factory=list)
    search: bool = False
    comments: bool = True
    interval: float = Field(default=120, gt=0)
    backfill_hours: float = Field(default=1.0, ge=0)
    timeout: float = Field(default=16, gt=0)
    oauth_url: str = "https://oauth.reddit.com"
    reddit_url: str = "https://www.reddit.com"

    def missing_credentials(self) -> list[str]:
        return [k for k in ("client_id", "client_secret") if not getattr(self, k).strip()]


def _field(thing: Any, name: str, default: Any = None) -> Any:
    """An attribute Reddit sent, without praw's lazy fetch of the whole object when it is absent."""
    return vars(thing).get(name, default)


def _created(thing: Any) -> datetime:
    return datetime.fromtimestamp(float(thing.created_utc), timezone.utc)


def _author(thing: Any) -> str:
    author = _field(thing, "author")
    return "[deleted]" if author is None else str(author)


def mention_from_submission(source: str, post: Any, *, now: datetime) -> Mention:
    sub = post.subreddit.display_name
    return Mention(
        source=source, source_id=post.fullname, kind="post", url=PERMALINK_BASE + post.permalink,
        title=post.title or "", text=post.selftext or "", author=_author(post), created_at=_created(post),
        fetched_at=now, place=f"r/{sub}",
        engagement=Engagement(score=post.score, comments=post.num_comments,
                              upvote_ratio=_field(post, "upvote_ratio"),
                              awards=_field(post, "total_awards_received")),
        extra={"subreddit": sub, "link_url": _field(post, "url"), "nsfw": bool(_field(post, "over_18", False)),
               "crosspost_parent": _field(post, "crosspost_parent")},
    )


def mention_from_comment(source: str, comment: Any, *, now: datetime) -> Mention:
    sub = comment.subreddit.display_name
    return Mention(
        source=source, source_id=comment.fullname, kind="comment", url=PERMALINK_BASE + comment.permalink,
        title="", text=comment.body or "", author=_author(comment), created_at=_created(comment),
        fetched_at=now, place=f"r/{sub} (comment)", engagement=Engagement(score=comment.score),
        extra={"subreddit": sub, "link_id": comment.link_id},
    )


def search_query(terms: list[str]) -> str:
    return " OR ".join(f'"{t}"' if " " in t else t for t in terms)


class RedditSource:
    Settings = RedditSettings

    def __init__(self, *, name: str = "reddit", settings: RedditSettings, reddit: praw.Reddit | None,
                 search_terms: dict[str, list[str]] | None = None):
        self.name = name
        self.settings = settings
        self.interval = settings.interval
        self._reddit = reddit
        self._search_terms = search_terms or {}

    @classmethod
    def from_settings(cls, settings: RedditSettings, *, context: SourceContext) -> "RedditSource":
        missing = settings.missing_credentials()
        if missing:
            # Said once, here; the source then stays idle instead of failing every poll.
            context.log.error("reddit: no %s configured (set them in config.yaml, e.g. from ${REDDIT_CLIENT_ID} and"
                              " ${REDDIT_CLIENT_SECRET}); the Reddit source stays idle", " and ".join(missing))
            return cls(name=context.name, settings=settings, reddit=None)
        reddit = praw.Reddit(client_id=settings.client_id, client_secret=settings.client_secret,
                             user_agent=settings.user_agent, oauth_url=settings.oauth_url,
                             reddit_url=settings.reddit_url, timeout=settings.timeout,
                             check_for_updates=False, check_for_async=False)
        reddit.read_only = True
        return cls(name=context.name, settings=settings, reddit=reddit, search_terms=context.search_terms)

    def close(self) -> None:
        pass

    def listings(self) -> list[tuple[str, Any]]:
        """(cursor key, callable returning a fresh listing generator) for every listing this source reads."""
        assert self._reddit is not None
        found = []
        subs = self.settings.subreddits
        for i in range(0, len(subs), MULTIREDDIT_BATCH):
            multi = "+".join(subs[i : i + MULTIREDDIT_BATCH])
            subreddit = self._reddit.subreddit(multi)
            found.append((f"new:{multi}", lambda s=subreddit: s.new(limit=MAX_ITEMS_PER_LISTING)))
            if self.settings.comments:
                found.append((f"comments:{multi}", lambda s=subreddit: s.comments(limit=MAX_ITEMS_PER_LISTING)))
        if self.settings.search:
            for brand, terms in self._search_terms.items():
                query = search_query(terms)
                found.append((f"search:{brand}", lambda q=query: self._reddit.subreddit("all").search(
                    q, sort="new", time_filter="week", limit=MAX_ITEMS_PER_LISTING)))
        return found

    def poll(self, state: dict[str, Any]) -> Poll:
        poll = Poll()
        if self._reddit is None:
            poll.failed["credentials"] = f"no {' and '.join(self.settings.missing_credentials())} configured"
            return poll
        now = utcnow()
        for key, listing in self.listings():
            try:
                self._read_listing(key, listing, state.get(key), poll, now)
                poll.succeeded.append(f"listing:{key}")
            except (prawcore.exceptions.PrawcoreException, praw.exceptions.PRAWException) as err:
                poll.failed[f"listing:{key}"] = f"{type(err).__name__}: {err}"
                log.warning("reddit listing %s failed: %s: %s", key, type(err).__name__, err)
        return poll

    def _read_listing(self, key: str, listing, cursor: dict | None, poll: Poll, now: datetime) -> None:
        if cursor:
            since, seen = cursor["created"], set(cursor.get("ids", []))
        else:
            since, seen = now.timestamp() - self.settings.backfill_hours * 3600, set()
        newest_created, newest_ids = since, set(seen)
        for thing in listing():
            created = float(thing.created_utc)
            if created < since:
                break  # listings are newest first: everything after this was read before
            if thing.fullname in seen:
                continue
            if isinstance(thing, praw.models.Comment):
                mention = mention_from_comment(self.name, thing, now=now)
            else:
                mention = mention_from_submission(self.name, thing, now=now)
            poll.mentions.append(mention)
            if created > newest_created:
                newest_created, newest_ids = created, {thing.fullname}
            elif created == newest_created:
                newest_ids.add(thing.fullname)
        # Items created in the same second as the cursor are told apart by id.
        poll.state[key] = {"created": newest_created, "ids": sorted(newest_ids)}

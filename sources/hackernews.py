"""Hacker News through the public Algolia search API: every new story and comment, and growth re-reads.

Why Algolia and not the official Firebase API: Firebase gives one item per
request (``/v0/maxitem``, then ``/v0/item/ID`` for each id since the last),
so a poll costs as many requests as items were posted (Hacker News posts
about 10 a minute, mostly comments). Algolia's ``search_by_date`` with
``tags=(story,comment)`` and ``numericFilters=created_at_i>CURSOR`` returns
all of them, newest first, up to 1,000 per request: one request per poll,
and one more per 100 stories re-read for growth (``tags=story,(story_1,...)``).

Every item is handed to the pipeline, whose matcher decides which name a
brand (Algolia's own text search matches prefixes and typos, ours is the
same for every source). Algolia indexes an item a little after it was made,
so each poll asks again ``index_lag`` seconds before its cursor and skips the
ids it already read there. Faults are handled by ``api_poll.run_step``.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import Any, Callable

import httpx
from pydantic import ConfigDict, Field

from monitor.links import canonical_url
from monitor.mention import Mention
from monitor.source import (EngagementMap, Poll, SourceContext, SourceField, StatusSection, StatusView,
                            also_rule_fields)

from .api_poll import (LINK_KEYS, BrandTerms, PollSteps, TrackingSettings, endpoint_line, endpoint_status, get_json,
                       make_client, tracked_count)
from .feed_entries import html_to_text

log = logging.getLogger("complaint_monitor.sources.hackernews")

ITEM_URL = "https://news.ycombinator.com/item?id={}"
PAGE_SIZE = 1000  # Algolia's most hits per request
REREAD_BATCH = 100  # stories re-read per request (tags=story,(story_1,...,story_100))
CURSOR_KEY, TRACKED_KEY = "cursor", "tracked"

# Points are the score, a story's comments the comments; reach is what the config says an appearance is worth.
ENGAGEMENT = EngagementMap(
    numbers={"points": SourceField("integer", "an item's points"),
             "num_comments": SourceField("integer", "a story's comments (comments have none)"),
             "reach": SourceField("float", "the configured `sources.hackernews.reach` (0: unknown)")},
    score=("points",), comments=("num_comments",), reach=("reach",))


class HackerNewsSettings(TrackingSettings):
    model_config = ConfigDict(extra="forbid")
    interval: float = Field(default=60, gt=0)
    api_url: str = Field(default="https://hn.algolia.com/api/v1", pattern=r"^https?://")
    timeout: float = Field(default=20, gt=0)
    user_agent: str = "complaint-monitor/0.1"
    # A first start reads back this far; later polls read from the cursor.
    backfill_hours: float = Field(default=1, ge=0)
    # Algolia indexes an item up to a few minutes after it was made: each poll asks again this far back.
    index_lag: float = Field(default=300, ge=0)
    # Most items read in one poll (after a long outage), newest first.
    max_items: int = Field(default=10_000, ge=1)
    # Longest wait between tries while the API fails (the wait doubles up to this), in seconds.
    max_backoff: float = Field(default=3600, gt=0)
    # What a story's appearance counts toward reach (Hacker News publishes no audience size); 0 = unknown.
    reach: float = Field(default=0, ge=0)


def mention_from_hit(source: str, hit: dict[str, Any], *, now: datetime, reach: float | None) -> Mention:
    """One Algolia hit (a story or a comment) as a Mention; raises KeyError/ValueError for a hit without an id."""
    item_id = str(hit["objectID"])
    created = hit.get("created_at_i")
    created_at = datetime.fromtimestamp(min(float(created), now.timestamp()), timezone.utc) \
        if isinstance(created, (int, float)) else now
    tags = hit.get("_tags") or []
    is_comment = "comment" in tags or hit.get("comment_text") is not None
    link = hit.get("url") or hit.get("story_url") or ""
    extra: dict[str, Any] = {"hn_id": item_id}
    if link:
        extra["link_url"] = link
        extra["canonical_url"] = canonical_url(link)
    if is_comment:
        extra.update(story_id=str(hit.get("story_id") or ""), parent_id=str(hit.get("parent_id") or ""),
                     story_title=hit.get("story_title") or "")
        text, title = html_to_text(hit.get("comment_text") or ""), ""
    else:
        text, title = html_to_text(hit.get("story_text") or ""), hit.get("title") or ""
    numbers = {"points": _count(hit.get("points")), "reach": reach or None,
               "num_comments": None if is_comment else _count(hit.get("num_comments"))}
    return Mention(source=source, source_id=item_id, url=ITEM_URL.format(item_id), title=title, text=text,
                   author=hit.get("author"), created_at=created_at, fetched_at=now, place="Hacker News",
                   kind="comment" if is_comment else "post", reach=ENGAGEMENT.reach_of(numbers), extra=extra,
                   engagement=ENGAGEMENT.engagement(numbers))


def _count(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class HackerNewsSource:
    Settings = HackerNewsSettings
    engagement = ENGAGEMENT
    extra_keys = {
        "hn_id": SourceField("string", "the Hacker News item id"),
        **LINK_KEYS,
        "story_id": SourceField("string", "a comment's story (its thread)"),
        "parent_id": SourceField("string", "the item a comment answers"),
        "story_title": SourceField("string", "the title of a comment's story"),
    }
    # A comment's thread, for rules: ``story_title =~~ "(?i)acme"``; empty for stories and outside Hacker News.
    rule_fields = also_rule_fields(extra_keys, "story_title")

    def __init__(self, *, name: str = "hackernews", settings: HackerNewsSettings, client: httpx.Client,
                 search_terms: dict[str, list[str]] | None = None, clock: Callable[[], float] = time.time):
        self.name = name
        self.settings = settings
        self.interval = settings.interval
        self._client = client
        self._brands = BrandTerms(search_terms)
        self._clock = clock
        self._api = settings.api_url.rstrip("/")

    @staticmethod
    def status_section(view: StatusView) -> StatusSection:
        """The API's health, the newest item read and how far behind now it is, the stories tracked for growth."""
        cursor = view.state.get(CURSOR_KEY) if isinstance(view.state.get(CURSOR_KEY), dict) else {}
        newest = cursor.get("created") if isinstance(cursor.get("created"), (int, float)) else None
        data = {"api": endpoint_status(view, "api"), "newest_item": view.time(newest),
                "lag_seconds": round(view.now - newest, 1) if newest else None,
                "tracked": tracked_count(view, TRACKED_KEY)}
        read = f"newest item read {data['newest_item']} ({data['lag_seconds']:g} s before now)" if newest \
            else "nothing read yet"
        return StatusSection(data={"hackernews": data}, lines=[
            f"  {endpoint_line('api', data['api'])}; {read}; {data['tracked']} stories tracked for growth"])

    @classmethod
    def from_settings(cls, settings: HackerNewsSettings, *, context: SourceContext) -> "HackerNewsSource":
        return cls(name=context.name, settings=settings, search_terms=context.search_terms,
                   client=make_client(timeout=settings.timeout, user_agent=settings.user_agent))

    def close(self) -> None:
        self._client.close()

    def poll(self, state: dict[str, Any]) -> Poll:
        steps = PollSteps(state, settings=self.settings, clock=self._clock, log=log)
        # One step, one backoff for the API: after a 429 neither new items nor re-reads may ask, and a step
        # that fails keeps nothing (its cursor and growth schedule stay as stored; the next poll reads again).
        steps.run("api", lambda: self._read(state, steps.poll, steps.now, steps.when))
        return steps.poll

    def _read(self, state: dict[str, Any], poll: Poll, now: float, when: datetime) -> None:
        s = self.settings
        schedule = s.schedule(state.get(TRACKED_KEY))
        mentions, cursor = self._read_new(state.get(CURSOR_KEY), now, when)
        for mention in mentions:
            if mention.kind == "post" and self._brands.named_in(mention):
                schedule.track(mention.source_id, mention.created_at.timestamp(), now)
        updates = self._reread(schedule, now, when)
        schedule.prune(now)
        poll.mentions.extend(mentions)
        poll.updates.extend(updates)
        poll.state.update({CURSOR_KEY: cursor, TRACKED_KEY: schedule.tracked})

    def _read_new(self, cursor: Any, now: float, when: datetime) -> tuple[list[Mention], dict[str, Any]]:
        s = self.settings
        if isinstance(cursor, dict) and isinstance(cursor.get("created"), (int, float)):
            newest, recent = float(cursor["created"]), dict(cursor.get("ids") or {})
        else:
            newest, recent = now - s.backfill_hours * 3600, {}
        mentions = []
        for hit in self._hits_since(int(newest - s.index_lag)):
            try:
                mention = mention_from_hit(self.name, hit, now=when, reach=s.reach)
            except (KeyError, TypeError, ValueError) as err:
                log.warning("hackernews: skipped a hit without a usable id: %s: %s", type(err).__name__, err)
                continue
            if mention.source_id in recent:
                continue  # read by an earlier poll, inside the index_lag overlap
            created = mention.created_at.timestamp()
            recent[mention.source_id] = created
            newest = max(newest, created)
            mentions.append(mention)
        # An id is remembered only as long as a later poll may see it again.
        recent = {i: c for i, c in recent.items() if c > newest - s.index_lag}
        return mentions, {"created": newest, "ids": recent}

    def _hits_since(self, since: int) -> list[dict[str, Any]]:
        """Every story and comment created after ``since``, newest first. Algolia pages no further than 1,000
        hits, so a burst larger than a page is read in windows: each next request asks for what is older than
        the oldest hit so far (items of that same second are asked again, and told apart by id)."""
        hits: list[dict[str, Any]] = []
        seen: set[str] = set()
        upper = None
        while len(hits) < self.settings.max_items:
            filters = f"created_at_i>{since}" + (f",created_at_i<={upper}" if upper is not None else "")
            page = get_json(self._client, f"{self._api}/search_by_date",
                            params={"tags": "(story,comment)", "numericFilters": filters, "hitsPerPage": PAGE_SIZE})
            batch = page.get("hits") or []
            fresh = [h for h in batch if str(h.get("objectID")) not in seen]
            seen.update(str(h.get("objectID")) for h in fresh)
            hits.extend(fresh)
            if len(batch) < int(page.get("hitsPerPage") or PAGE_SIZE) or not fresh:
                break
            upper = min(int(h.get("created_at_i") or since) for h in batch)
        return hits[: self.settings.max_items]

    def _reread(self, schedule, now: float, when: datetime) -> list[Mention]:
        """Fresh points and comment counts of the tracked stories that are due, 100 per request."""
        due = schedule.due(now)
        fresh = []
        for i in range(0, len(due), REREAD_BATCH):
            batch = due[i : i + REREAD_BATCH]
            tags = "story,(" + ",".join(f"story_{item}" for item in batch) + ")"
            page = get_json(self._client, f"{self._api}/search", params={"tags": tags, "hitsPerPage": len(batch)})
            returned = set()
            for hit in page.get("hits") or []:
                mention = mention_from_hit(self.name, hit, now=when, reach=self.settings.reach)
                returned.add(mention.source_id)
                fresh.append(mention)
                schedule.reread(mention.source_id, now)
            for item in set(batch) - returned:
                schedule.forget(item)  # deleted, or flagged off the index: nothing more to read
        return fresh

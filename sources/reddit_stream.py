"""All of Reddit: every new post (``r/all/new``) and comment (``r/all/comments``), matched here, none missed.

Reddit's ids are base-36 numbers that grow with time, one sequence for posts
(t3) and one for comments (t1). Each read takes the newest page (100 items);
when it holds no item read before, the stream outran us and the ids between
the last item read and the page's oldest are a gap. Gaps are read back
through ``/api/info`` (100 fullnames a request), newest first, with what the
request budget leaves after the listings; ids Reddit does not return are
private, removed or spam, counted as invisible, not missing. The cursor (the
newest id read) and the gaps live in the stored state, so after a restart the
first page opens a gap over the downtime and the same fill covers it, back to
``backfill_hours`` and no further; a first start reads back as far.

Items are read as Reddit's raw JSON and matched against every brand's
keywords (one Aho-Corasick pass) before anything else is made of them: an
item nobody matched costs its match and nothing more.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace
from typing import Any, Callable

from monitor.match import BrandMatcher
from monitor.source import Poll, StatusSection, StatusView

from .reddit_growth import INFO_BATCH
from .reddit_items import mention_from_thing
from .reddit_pace import PAGE_SIZE, ListingPace, RequestBudget

log = logging.getLogger("complaint_monitor.sources.reddit")

# listing -> (fullname prefix of its ids, path); comments first: most complaints are comments.
LISTINGS = {"comments": ("t1", "r/all/comments"), "new": ("t3", "r/all/new")}
STATE_PREFIX = "stream:"
# Fills keep this many requests in hand, so a listing that falls due next is never kept waiting.
KEEP_FOR_LISTINGS = 2
FILL_SECONDS = 0.5  # fills stop for this poll after this long; the next poll goes on


def id_number(base36: str) -> int:
    return int(base36, 36)


def base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if not number:
            return out


@dataclass
class StreamCursor:
    """One listing's stored position: the newest id read, its gaps ``[low, high, created just above high,
    oldest time wanted]`` (ids inclusive, newest gap last; the oldest time is ``backfill_hours`` before the gap
    was found), its pace, and what it counted."""

    newest: int | None = None
    newest_created: float | None = None
    read_at: float | None = None
    rate: float | None = None  # visible items per second
    share: float = 1.0  # visible share of ids
    gaps: list[list[float]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: {"read": 0, "filled": 0, "invisible": 0, "dropped": 0})

    @classmethod
    def from_state(cls, value: dict | None) -> "StreamCursor":
        return cls(**{k: v for k, v in (value or {}).items() if k in cls.__dataclass_fields__})

    def as_state(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def unfilled(self) -> int:
        return int(sum(gap[1] - gap[0] + 1 for gap in self.gaps))

    def drop_too_old(self) -> None:
        """Gaps wholly before their backfill horizon are given up (counted, not read)."""
        for gap in [g for g in self.gaps if g[2] < g[3]]:
            self.counts["dropped"] += int(gap[1] - gap[0] + 1)
            self.gaps.remove(gap)


class SiteStream:
    """Reads both site-wide listings when each is due, then fills gaps with the budget left."""

    def __init__(self, *, reddit, source: str, matcher: BrandMatcher, budget: RequestBudget, max_wait: float,
                 backfill_hours: float, listings: tuple[str, ...] = tuple(LISTINGS)):
        self._listings = listings
        self._reddit = reddit
        self._source = source
        self._matcher = matcher
        self._budget = budget
        self._max_wait = max_wait
        self._backfill = backfill_hours * 3600

    def read(self, state: dict[str, Any], poll: Poll, *, now: float, when: datetime,
             on_post: Callable[[str, float], None]) -> int:
        """Due listings first, then fills; each request's mentions and cursor go into ``poll`` together, so
        a failure mid-way (a 429) keeps what was read. Returns the requests made."""
        cursors = {name: StreamCursor.from_state(state.get(STATE_PREFIX + name)) for name in self._listings}
        made = 0
        for name, cursor in cursors.items():
            pace = ListingPace(max_wait=self._max_wait, rate=cursor.rate, read_at=cursor.read_at)
            if pace.due(now) and self._budget.available(now) >= 1:
                self._read_page(name, cursor, pace, poll, now=now, when=when, on_post=on_post)
                poll.state[STATE_PREFIX + name] = cursor.as_state()
                made += 1
        for cursor in cursors.values():
            cursor.drop_too_old()
        started = time.monotonic()
        # Bounded in real time too: the daemon asks every second, and a poll still running then is skipped.
        while self._budget.available(now) > KEEP_FOR_LISTINGS and time.monotonic() - started < FILL_SECONDS:
            waiting = [(c.gaps[-1][2], name) for name, c in cursors.items() if c.gaps]
            if not waiting:
                break
            name = max(waiting)[1]  # newest gap first, across both listings
            self._fill(name, cursors[name], poll, when=when, on_post=on_post)
            poll.state[STATE_PREFIX + name] = cursors[name].as_state()
            made += 1
        for name, cursor in cursors.items():
            poll.state[STATE_PREFIX + name] = cursor.as_state()
        return made

    def _take(self, thing: dict, poll: Poll, *, when: datetime, on_post) -> None:
        """Match the raw item; only a match becomes a Mention."""
        data = thing.get("data") or {}
        if self._matcher.match(_haystack(data)) is None:
            return
        try:
            mention = mention_from_thing(self._source, SimpleNamespace(**data), now=when)
        except Exception as err:  # noqa: BLE001 - one odd item must not cost the page
            log.warning("reddit: skipped %s in the site-wide stream: %s: %s", data.get("name"),
                        type(err).__name__, err)
            return
        poll.mentions.append(mention)
        if mention.kind == "post":
            on_post(mention.source_id, mention.created_at.timestamp())

    def _read_page(self, name: str, cursor: StreamCursor, pace: ListingPace, poll: Poll, *, now: float,
                   when: datetime, on_post) -> None:
        prefix, path = LISTINGS[name]
        page = _numbered(self._reddit.request(method="GET", path=path,
                                              params={"limit": PAGE_SIZE, "raw_json": 1}), prefix)
        self._budget.charge()
        if not page:
            pace.read(now, new_items=0, overflowed=False)
            cursor.read_at, cursor.rate = pace.read_at, pace.rate
            return
        top, top_created = page[0][0], page[0][2]
        if cursor.newest is None:  # first start
            new, overlap = page, True
            cursor.newest = page[-1][0] - 1
            if len(page) == PAGE_SIZE and self._backfill:
                # The newest 100 of many: what came before, back to backfill_hours, is a gap like any other.
                # Its lower end is guessed from the page's own pace, generously (the fill stops at the horizon).
                bottom, bottom_created = page[-1][0], page[-1][2]
                ids_per_second = (top - bottom) / max(1.0, top_created - bottom_created)
                low = max(0, bottom - 1 - int(1.5 * ids_per_second * self._backfill))
                cursor.gaps.append([low, bottom - 1, bottom_created, now - self._backfill])
        else:
            new = [item for item in page if item[0] > cursor.newest]
            overlap = len(new) < len(page) or len(page) < PAGE_SIZE
        for _, thing, _ in reversed(new):  # oldest first, the order they were written in
            self._take(thing, poll, when=when, on_post=on_post)
        if new:
            span = top - cursor.newest
            bottom = cursor.newest + 1
            if not overlap:
                # Nothing on the page was read before: the ids between are read back by the fill.
                bottom = new[-1][0]
                cursor.gaps.append([cursor.newest + 1, bottom - 1, new[-1][2], now - self._backfill])
            covered = top - bottom + 1
            cursor.counts["invisible"] += covered - len(new)
            if overlap and span > 0:
                cursor.share = len(new) / span
            cursor.counts["read"] += len(new)
            estimate = len(new) if overlap else span * cursor.share
            cursor.newest, cursor.newest_created = top, top_created
        else:
            estimate = 0
        pace.read(now, new_items=estimate, overflowed=not overlap)
        cursor.read_at, cursor.rate = pace.read_at, pace.rate

    def _fill(self, name: str, cursor: StreamCursor, poll: Poll, *, when: datetime, on_post) -> None:
        """Read back the newest 100 ids of the listing's newest gap."""
        prefix, _ = LISTINGS[name]
        gap = cursor.gaps[-1]
        low, high, horizon = int(gap[0]), int(gap[1]), gap[3]
        batch_low = max(low, high - INFO_BATCH + 1)
        names = [f"{prefix}_{base36(n)}" for n in range(high, batch_low - 1, -1)]
        found = _numbered(self._reddit.request(method="GET", path="api/info",
                                               params={"id": ",".join(names), "raw_json": 1}), prefix)
        self._budget.charge()
        cursor.counts["invisible"] += len(names) - len(found)
        reached_horizon = False
        for _, thing, created in reversed(found):
            if created < horizon:
                reached_horizon = True
                continue
            self._take(thing, poll, when=when, on_post=on_post)
            cursor.counts["filled"] += 1
        gap[1] = batch_low - 1
        if found:
            gap[2] = found[-1][2]
        if reached_horizon and gap[1] >= gap[0]:
            cursor.counts["dropped"] += int(gap[1] - gap[0] + 1)
            gap[1] = gap[0] - 1
        if gap[1] < gap[0]:
            cursor.gaps.pop()


def _numbered(listing: Any, prefix: str) -> list[tuple[int, dict, float]]:
    """``(id number, thing, created)`` of each item of the wanted kind, newest first; unreadable ones are
    logged and left out (their id then counts as invisible)."""
    out = []
    for thing in (listing or {}).get("data", {}).get("children", []) or []:
        data = thing.get("data") if isinstance(thing, dict) else None
        try:
            if thing.get("kind") != prefix:
                continue
            out.append((id_number(str(data["id"])), thing, float(data["created_utc"])))
        except (AttributeError, KeyError, TypeError, ValueError) as err:
            log.warning("reddit: skipped an unreadable item in the site-wide stream: %s: %s",
                        type(err).__name__, err)
    return sorted(out, key=lambda item: -item[0])


def _haystack(data: dict) -> str:
    """What the matcher reads: the title and the text (a crosspost's is its original's)."""
    parts = [data.get("title"), data.get("selftext"), data.get("body")]
    parents = data.get("crosspost_parent_list")
    if parents and isinstance(parents[0], dict):
        parts.append(parents[0].get("selftext"))
    return "\n".join(p for p in parts if isinstance(p, str) and p)


def stream_status(view: StatusView) -> StatusSection:
    """The Reddit source's part of ``status``: per site-wide listing (``stream:comments``, ``stream:new`` in its
    state), its rate, how far behind real time it read, and the ids of gaps not yet read back."""
    streams, lines = {}, []
    for key, value in view.state.items():
        if not key.startswith("stream:") or not isinstance(value, dict):
            continue
        gaps = value.get("gaps") or []
        read_at, newest = value.get("read_at"), value.get("newest_created")
        st = streams[key[7:]] = {
            "rate": round(value.get("rate") or 0.0, 1), "last_read": view.time(read_at) or "never",
            "lag_seconds": round(read_at - newest, 1) if read_at and newest else None,
            "unfilled_ids": int(sum(gap[1] - gap[0] + 1 for gap in gaps)),
            "unfilled_since": view.time(min(gap[2] for gap in gaps)) or "never" if gaps else None,
            **(value.get("counts") or {}),
        }
        gap = (f"{st['unfilled_ids']} ids not read back yet (the oldest gap ends {st['unfilled_since']})"
               if st["unfilled_ids"] else "none")
        lines.append(f"  stream {key[7:]}: {st['rate']} items/s; lag {st['lag_seconds']} s at the last read"
                     f" ({st['last_read']}); unfilled gap: {gap}; read {st.get('read', 0)},"
                     f" read back {st.get('filled', 0)}, invisible {st.get('invisible', 0)},"
                     f" given up (older than backfill_hours) {st.get('dropped', 0)}")
    return StatusSection(data={"stream": streams}, lines=lines)

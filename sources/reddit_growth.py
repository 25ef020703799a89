"""Growth tracking for Reddit posts, and subreddit sizes as reach.

A post that names a brand is re-read on a schedule that starts often and
slows down (a story either takes off in its first hours or not at all), for
``track_hours`` after it was posted. Re-reads go 100 fullnames per request
through ``/api/info``. Both the schedule and the subscriber counts live in
the source's stored state, so a restart keeps them.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Iterable

from monitor.mention import Mention

from .reddit_items import BadItem, mention_from_submission

log = logging.getLogger("complaint_monitor.sources.reddit")

INFO_BATCH = 100  # Reddit's /api/info takes at most 100 ids or names per call


class GrowthSchedule:
    """Which posts to re-read when: ``{fullname: [created, next_due, reads]}``, bounded in age and count."""

    def __init__(self, tracked: dict[str, list] | None, *, hours: float, first_interval: float,
                 max_interval: float, max_posts: int):
        self.tracked: dict[str, list] = {k: list(v) for k, v in (tracked or {}).items()}
        self.hours = hours
        self.first_interval = first_interval
        self.max_interval = max_interval
        self.max_posts = max_posts
        # What this poll changed, to merge into the stored schedule (``merged``), which other daemons
        # holding other listings of the source may have changed meanwhile.
        self._added: dict[str, list] = {}
        self._reread: dict[str, list] = {}
        self._forgotten: set[str] = set()

    @property
    def changed(self) -> bool:
        return bool(self._added or self._reread or self._forgotten)

    def _interval(self, reads: int) -> float:
        # 5, 10, 20, 40 minutes, then hourly (with the defaults).
        return min(self.max_interval, self.first_interval * 2 ** reads)

    def track(self, fullname: str, created: float, now: float) -> None:
        if self.hours <= 0 or fullname in self.tracked or created < now - self.hours * 3600:
            return
        self.tracked[fullname] = self._added[fullname] = [created, now + self._interval(0), 0]

    def due(self, now: float) -> list[str]:
        return sorted((k for k, (_, next_due, _) in self.tracked.items() if next_due <= now),
                      key=lambda k: self.tracked[k][1])

    def reread(self, fullname: str, now: float) -> None:
        if fullname in self.tracked:
            created, _, reads = self.tracked[fullname]
            self.tracked[fullname] = self._reread[fullname] = [created, now + self._interval(reads + 1), reads + 1]

    def forget(self, fullname: str) -> None:
        self.tracked.pop(fullname, None)
        self._forgotten.add(fullname)

    def prune(self, now: float) -> None:
        """Drop posts past their tracking window; past the cap, the oldest go first."""
        self.tracked = self._pruned(self.tracked, now)

    def _pruned(self, tracked: dict[str, list], now: float) -> dict[str, list]:
        horizon = now - self.hours * 3600
        keep = sorted(((k, v) for k, v in tracked.items() if v[0] >= horizon), key=lambda kv: -kv[1][0])
        return dict(keep[: self.max_posts])

    def merged(self, stored: dict[str, list] | None, now: float) -> dict[str, list]:
        """This poll's changes applied to the schedule stored now: posts first seen here are added unless
        another daemon's listing added them first, re-reads and forgotten posts apply to what is still there
        (a post pruned meanwhile is not brought back), then the window and the cap."""
        tracked = {k: list(v) for k, v in (stored or {}).items()}
        for name, entry in self._added.items():
            tracked.setdefault(name, entry)
        for name, entry in self._reread.items():
            if name in tracked:
                tracked[name] = entry
        for name in self._forgotten:
            tracked.pop(name, None)
        return self._pruned(tracked, now)


class SubscriberCache:
    """Subreddit subscriber counts, ``{name_lower: [subscribers or None, fetched_at]}``, refreshed after ``max_age``."""

    def __init__(self, known: dict[str, list] | None, *, max_age: float):
        self.known: dict[str, list] = {k: list(v) for k, v in (known or {}).items()}
        self.max_age = max_age
        self._learned: dict[str, list] = {}  # what this poll learned, to merge into the stored counts

    @property
    def changed(self) -> bool:
        return bool(self._learned)

    def get(self, subreddit: str) -> float | None:
        entry = self.known.get(subreddit.lower())
        return None if entry is None or entry[0] is None else float(entry[0])

    def learn(self, subreddit: str, subscribers: int | None, now: float) -> None:
        self.known[subreddit.lower()] = self._learned[subreddit.lower()] = [subscribers, now]

    def prune(self, now: float) -> None:
        self.known = self._pruned(self.known, now)

    def _pruned(self, known: dict[str, list], now: float) -> dict[str, list]:
        return {k: v for k, v in known.items() if v[1] >= now - self.max_age}

    def merged(self, stored: dict[str, list] | None, now: float) -> dict[str, list]:
        """What this poll learned applied to the counts stored now; the later reading of a subreddit wins."""
        known = {k: list(v) for k, v in (stored or {}).items()}
        for name, entry in self._learned.items():
            if name not in known or known[name][1] <= entry[1]:
                known[name] = entry
        return self._pruned(known, now)

    def stale(self, subreddits: Iterable[str]) -> list[str]:
        """Those not known, or known too long ago (call ``prune`` first)."""
        return sorted({s.lower() for s in subreddits} - set(self.known))

    def fetch(self, reddit, subreddits: list[str], now: float) -> None:
        """Ask Reddit for these subreddits' sizes, 100 per request (``/api/info?sr_name=``)."""
        for i in range(0, len(subreddits), INFO_BATCH):
            batch = subreddits[i : i + INFO_BATCH]
            found = {}
            for sub in reddit.info(subreddits=batch):
                found[str(vars(sub).get("display_name", sub)).lower()] = vars(sub).get("subscribers")
            for name in batch:
                # Private, banned or unknown subreddits are remembered as unknown, not asked again every poll.
                self.learn(name, found.get(name), now)


def reread_posts(reddit, schedule: GrowthSchedule, source: str, *, now: float, when: datetime) -> list[Mention]:
    """Fresh numbers for the posts that are due; a post Reddit no longer returns stops being tracked."""
    due = schedule.due(now)
    if not due:
        return []
    fresh = []
    returned = set()
    for post in reddit.info(fullnames=due):
        name = vars(post).get("name")
        returned.add(name)
        try:
            fresh.append(mention_from_submission(source, post, now=when))
        except BadItem as err:
            log.warning("reddit: could not re-read %s: %s", name, err)
        schedule.reread(name, now)
    for name in set(due) - returned:
        schedule.forget(name)
    return fresh

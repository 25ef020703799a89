"""How fast the site-wide stream may ask Reddit: a request budget, and when each listing is worth reading.

Reddit lets one OAuth client make about 100 requests a minute (counted over
ten minutes and reported in the ``X-Ratelimit-*`` headers). Every request
the Reddit source makes, listing pages, gap fills, growth re-reads, subreddit
sizes, retries, is counted by ``RateWindow`` (the requestor sees them all)
and charged to one ``RequestBudget``; the stream spends only what is left, so
growth re-reads are never starved. ``ListingPace`` turns a listing's observed
rate into the time its next page is worth asking for.
"""

from __future__ import annotations

from typing import Mapping

# A listing page holds at most 100 items; asking when about 60 are new keeps consecutive pages
# overlapping (no gap to fill) while every request still brings a useful page.
PAGE_SIZE = 100
PAGE_TARGET = 60
# Never asked more often than this (two listings at once would otherwise share the budget badly).
MIN_WAIT = 1.0
# How many requests the budget may save up: a few at once, never a minute's worth in a burst.
BUDGET_BURST = 5.0


class RateWindow:
    """What Reddit's ``X-Ratelimit-*`` headers said last, and how many API requests were made (token
    requests do not count against the budget). Filled by the requestor on every response."""

    def __init__(self):
        self.sent = 0
        self.remaining: float | None = None
        self.reset: float | None = None  # seconds until Reddit's window resets, as of the last response

    def saw(self, url: str, headers: Mapping[str, str]) -> None:
        if "/api/v1/access_token" in url:
            return
        self.sent += 1
        try:
            self.remaining = float(headers["x-ratelimit-remaining"])
            self.reset = float(headers["x-ratelimit-reset"])
        except (KeyError, TypeError, ValueError):
            pass  # a response without the headers (an error page) leaves the last known window

    def allowed_rate(self) -> float | None:
        """Requests per second the rest of Reddit's window allows, when the headers said so (every request
        brings fresh headers, so the last ones are current)."""
        if self.remaining is None or self.reset is None:
            return None
        return max(0.0, self.remaining) / max(1.0, self.reset)


class RequestBudget:
    """A token bucket: ``per_minute`` requests a minute, at most ``BUDGET_BURST`` saved up.

    Requests already made are charged after the fact (``charge``), so one may
    go below zero; the stream then waits until the bucket refills. When
    Reddit's headers say fewer requests remain than our rate would use before
    the window resets, the bucket refills at Reddit's pace instead.
    """

    def __init__(self, *, per_minute: float, window: RateWindow | None, now: float):
        self.rate = per_minute / 60
        self.window = window
        self.tokens = BUDGET_BURST
        self._at = now
        self._charged = window.sent if window else 0

    def _refill(self, now: float) -> None:
        rate = self.rate
        allowed = self.window.allowed_rate() if self.window else None
        if allowed is not None:
            rate = min(rate, allowed)
        self.tokens = min(BUDGET_BURST, self.tokens + max(0.0, now - self._at) * rate)
        self._at = now

    def charge(self, requests: int | None = None) -> None:
        """Count requests made; by default every one the requestor saw since the last charge."""
        if requests is None:
            if self.window is None:
                return
            requests, self._charged = self.window.sent - self._charged, self.window.sent
        self.tokens -= requests

    def available(self, now: float) -> int:
        self.charge()
        self._refill(now)
        return max(0, int(self.tokens))


class ListingPace:
    """When one listing (r/all/comments, r/all/new) is next worth reading, from its observed rate.

    The rate is items per second seen by the last reads (new ids between two
    reads, times the share of ids that are visible), smoothed; the next read
    is due when about ``PAGE_TARGET`` new items are expected, but never later
    than ``max_wait`` (a quiet stream still reaches the store within seconds)
    nor sooner than ``MIN_WAIT``.
    """

    def __init__(self, *, max_wait: float, rate: float | None = None, read_at: float | None = None):
        self.max_wait = max_wait
        self.rate = rate  # visible items per second
        self.read_at = read_at

    def wait(self) -> float:
        if self.rate is None:
            return MIN_WAIT  # not known yet: soon, so the second page can still overlap the first
        if not self.rate:
            return self.max_wait
        return min(self.max_wait, max(MIN_WAIT, PAGE_TARGET / self.rate))

    def due(self, now: float) -> bool:
        return self.read_at is None or now - self.read_at >= self.wait()

    def read(self, now: float, *, new_items: int, overflowed: bool) -> None:
        """A page was read: ``new_items`` were new; ``overflowed`` when the page held no item seen before, so
        the true count is higher (the caller passes the id span times the visible share)."""
        if self.read_at is not None and now > self.read_at:
            observed = new_items / (now - self.read_at)
            # Smoothed, but a page that overflowed is believed at once: a burst must speed the pace now.
            self.rate = observed if self.rate is None or overflowed else 0.5 * self.rate + 0.5 * observed
        self.read_at = now

"""What the API sources (Hacker News, Mastodon, Bluesky) share: faults, backoff, growth and brand pre-checks.

Each of them polls one or more endpoints (an API, an instance, a firehose). A
poll of one endpoint is a *step*: it either finishes, and its cursor moves on,
or it fails, and nothing of it is kept (the next try reads the same items
again; the pipeline stores each item once). ``run_step`` turns every way a
step fails into one ``Poll.failed`` entry and a wait kept in the source's
state, so a restart keeps waiting too:

- a 429 (or a 503 with ``Retry-After``): nothing is asked of that endpoint
  before the time it gave (``DEFAULT_RETRY_AFTER`` when it gave none);
- any other failure (5xx, a timeout, a refused connection, an answer we
  cannot read): the endpoint is tried again after ``interval``, then 2x,
  4x, ... up to ``max_backoff``, as a failing feed is;
- a success resets the wait.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from http import HTTPStatus
from typing import Any, Callable

import httpx
from pydantic import BaseModel, Field

from monitor.mention import Mention
from monitor.source import Poll, SourceField, StatusView

from .feed_fetch import retry_after_seconds
from .reddit_growth import GrowthSchedule

# The extra keys stories read (monitor/stories.py): a post's outbound link, and the same without tracking noise.
LINK_KEYS = {
    "link_url": SourceField("string", "the page the post links to, where it links one"),
    "canonical_url": SourceField("string", "that link without tracking parameters, fragment or credentials"),
}

DEFAULT_RETRY_AFTER = 60.0  # a 429 that does not say how long to wait
MAX_RETRY_AFTER = 7 * 86400  # further away than this is taken as a mistake, not as "never come back"


class ApiFault(Exception):
    """An endpoint answered, but not with what we asked for; ``retry_after`` when it said when to come back."""

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(ApiFault):
    """429 Too Many Requests: nothing more is asked of the endpoint before ``retry_after``."""


def http_fault(response: httpx.Response) -> ApiFault | None:
    """The fault an HTTP answer means, or None for a success."""
    code = response.status_code
    if code < 400:
        return None
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = ""
    message = f"HTTP {code} {phrase}".strip()
    retry_after = retry_after_seconds(response.headers) if code in (429, 503) else None
    return (RateLimited if code == 429 else ApiFault)(message, retry_after=retry_after)


def get_json(client: httpx.Client, url: str, *, params: Any = None) -> Any:
    """GET ``url`` and decode its JSON; an HTTP error becomes an ``ApiFault`` (timeouts stay httpx's)."""
    response = client.get(url, params=params)
    fault = http_fault(response)
    if fault is not None:
        raise fault
    try:
        return response.json()
    except ValueError as err:
        raise ApiFault(f"not JSON ({response.headers.get('content-type', 'no content type')}): {err}") from err


def make_client(*, timeout: float, user_agent: str) -> httpx.Client:
    return httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=True, headers={"User-Agent": user_agent})


@dataclass(kw_only=True)
class Backoff:
    """One endpoint's wait after failures, stored as a plain dict in the source's state."""

    failures: int = 0
    next_try: float = 0.0  # epoch seconds; nothing is asked before
    last_error: str | None = None

    @classmethod
    def from_dict(cls, raw: Any) -> "Backoff":
        if not isinstance(raw, dict):
            return cls()  # never stored, or unreadable: the endpoint is simply due
        try:
            return cls(**{f.name: raw[f.name] for f in fields(cls) if f.name in raw})
        except TypeError:
            return cls()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def due(self, now: float) -> bool:
        return self.next_try <= now

    def failed(self, now: float, reason: str, *, interval: float, max_backoff: float,
               retry_after: float | None = None) -> float:
        """Back off exponentially, never before ``retry_after``; returns the delay until the next try."""
        self.failures += 1
        self.last_error = reason
        delay = min(interval * 2 ** (self.failures - 1), max(max_backoff, interval))
        if retry_after is not None:
            delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
        self.next_try = now + delay
        return delay

    def succeeded(self) -> None:
        self.failures, self.next_try, self.last_error = 0, 0.0, None


def _clock_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%H:%M:%S UTC")


def run_step(poll: Poll, subject: str, step: Callable[[], None], *, state: dict[str, Any], now: float,
             interval: float, max_backoff: float, log: logging.Logger) -> bool:
    """Run one endpoint's step unless it is still waiting; its backoff lives in ``state`` under
    ``backoff:<subject>``, its failure in ``poll.failed[subject]``. True when the step ran and finished."""
    key = f"backoff:{subject}"
    backoff = Backoff.from_dict(state.get(key))
    if not backoff.due(now):
        poll.failed[subject] = f"{backoff.last_error}; waiting until {_clock_time(backoff.next_try)}"
        return False
    try:
        step()
    except RateLimited as err:
        wait = backoff.failed(now, f"{err}", interval=interval, max_backoff=max_backoff,
                              retry_after=DEFAULT_RETRY_AFTER if err.retry_after is None else err.retry_after)
        poll.failed[subject] = f"{err}; no requests for {wait:.0f}s"
        log.warning("%s: %s: no requests before %s", subject, err, _clock_time(now + wait))
    except (ApiFault, httpx.HTTPError, OSError, ValueError) as err:
        # 5xx, timeouts, refused connections, answers we cannot read: the endpoint's turn, not the poll's.
        reason = f"{type(err).__name__}: {err}"
        wait = backoff.failed(now, reason, interval=interval, max_backoff=max_backoff,
                              retry_after=getattr(err, "retry_after", None))
        poll.failed[subject] = reason
        log.warning("%s failed (%d in a row): %s; next try in %.0fs", subject, backoff.failures, reason, wait)
    except Exception as err:  # noqa: BLE001 - an adapter bug costs this endpoint, not the other endpoints
        reason = f"{type(err).__name__}: {err}"
        wait = backoff.failed(now, reason, interval=interval, max_backoff=max_backoff)
        poll.failed[subject] = reason
        log.exception("%s failed; next try in %.0fs", subject, wait)
    else:
        backoff.succeeded()
        poll.succeeded.append(subject)
        poll.state[key] = None  # nothing to remember once it works
        return True
    poll.state[key] = backoff.as_dict()
    return False


class PollSteps:
    """One poll of an API source: its ``Poll``, the time it started, and ``run(subject, step)`` (``run_step`` with
    the source's interval and ``max_backoff``)."""

    def __init__(self, state: dict[str, Any], *, settings: Any, clock: Callable[[], float], log: logging.Logger):
        self.poll = Poll()
        self.state = state
        self.now = clock()
        self.when = datetime.fromtimestamp(self.now, timezone.utc)
        self._settings, self._log = settings, log

    def run(self, subject: str, step: Callable[[], None]) -> bool:
        return run_step(self.poll, subject, step, state=self.state, now=self.now, interval=self._settings.interval,
                        max_backoff=self._settings.max_backoff, log=self._log)


class TrackingSettings(BaseModel):
    """Growth re-reads, as Reddit's: posts naming a brand are read again ``track_first_minutes`` after they were
    found, the gap doubling up to ``track_max_minutes``, for ``track_hours`` after posting (0 turns it off)."""

    track_hours: float = Field(default=24, ge=0)
    track_first_minutes: float = Field(default=5, gt=0)
    track_max_minutes: float = Field(default=60, gt=0)
    track_max_posts: int = Field(default=2000, ge=0)

    def schedule(self, tracked: dict[str, list] | None) -> GrowthSchedule:
        return GrowthSchedule(tracked, hours=self.track_hours, first_interval=self.track_first_minutes * 60,
                              max_interval=self.track_max_minutes * 60, max_posts=self.track_max_posts)


class BrandTerms:
    """A cheap pre-check of the brands' keywords (the pipeline's matcher decides): only posts that pass are worth
    re-reading for growth or looking up for reach."""

    def __init__(self, search_terms: dict[str, list[str]] | None):
        self._terms = sorted({t.strip().lower() for terms in (search_terms or {}).values() for t in terms
                              if t.strip()})

    def named_in(self, mention: Mention) -> bool:
        if not self._terms:
            return True
        haystack = f"{mention.title}\n{mention.text}".lower()
        return any(term in haystack for term in self._terms)


def endpoint_status(view: StatusView, subject: str) -> dict[str, Any]:
    """One endpoint's health for ``status``, from its stored backoff (and an ongoing failure row)."""
    backoff = Backoff.from_dict(view.state.get(f"backoff:{subject}"))
    failure = view.failures.get(subject)
    if not backoff.failures and failure is None:
        return {"state": "ok"}
    return {"state": "failing", "failures": backoff.failures or (failure or {}).get("count"),
            "last_error": backoff.last_error or (failure or {}).get("last_error"),
            "next_try": view.time(backoff.next_try) if backoff.next_try > view.now else None}


def endpoint_line(name: str, health: dict[str, Any]) -> str:
    if health["state"] == "ok":
        return f"{name}: ok"
    wait = f"; next try {health['next_try']}" if health.get("next_try") else ""
    return f"{name}: failing ({health['failures']} in a row): {health['last_error']}{wait}"


def tracked_count(view: StatusView, key: str = "tracked") -> int:
    tracked = view.state.get(key)
    return len(tracked) if isinstance(tracked, dict) else 0

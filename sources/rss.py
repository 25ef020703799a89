"""RSS and Atom feeds: many at once, politely, and unbroken by bad feeds.

This module decides what happens to each feed in a poll (due or not, what
an HTTP answer means for its schedule) and gathers the results into one
``Poll``. Fetching lives in ``feed_fetch``, reading entries in
``feed_entries``, both together in ``feed_exchange`` (made in worker
processes, ``feed_workers``), each feed's schedule and backoff in
``feed_schedule``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property, partial
from http import HTTPStatus
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from monitor.links import public_url, with_credentials_of
from monitor.mention import Mention, utcnow
from monitor.source import EngagementMap, Poll, SourceContext, SourceField, also_rule_fields

from .feed_exchange import Exchange, FeedRead, FeedRequest
from .feed_fetch import FeedClient, conditional_headers, host_of, retry_after_seconds
from .feed_schedule import FeedState
from .feed_workers import ClientFactory, FeedWorkers
from .rss_status import feeds_status

log = logging.getLogger("complaint_monitor.sources.rss")

# A Retry-After further away than this is taken as a mistake, not as "never come back".
MAX_RETRY_AFTER = 7 * 86400
# After this many timeouts in a row from one host, its other feeds wait for the next poll.
HOST_TIMEOUTS_BEFORE_SKIP = 2


class FeedSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(pattern=r"^https?://")
    name: str = ""
    # How much an appearance here counts toward reach (1 = an ordinary feed).
    weight: float = Field(default=1.0, ge=0)
    # This feed's own interval in seconds (default: the source's `interval`).
    interval: float | None = Field(default=None, gt=0)

    @cached_property
    def identity(self) -> str:
        """The configured URL without its credentials: what the store, the logs and emails know it by."""
        return public_url(self.url)


class RssSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    interval: float = Field(default=300, gt=0)
    # Seconds for each network step (connect, each read); `deadline` bounds one feed's whole fetch
    # once its headers are in (each header read is bounded by `timeout`).
    timeout: float = Field(default=20, gt=0)
    deadline: float = Field(default=60, gt=0)
    max_bytes: int = Field(default=10_000_000, gt=0)
    user_agent: str = "complaint-monitor/0.1 (+https://github.com/complaint-monitor)"
    # Feeds fetched at once, and at once from one host (politeness).
    workers: int = Field(default=16, ge=1, le=256)
    per_host: int = Field(default=2, ge=1, le=16)
    # Longest wait between tries of a failing feed (the backoff doubles up to this), in seconds.
    max_backoff: float = Field(default=6 * 3600, gt=0)
    # A feed's first poll stores what it finds but alerts only on entries younger than this.
    backfill_hours: float = Field(default=24, ge=0)
    # Entries read per feed per poll, newest first: a 100,000-entry feed costs no more than this.
    max_entries: int = Field(default=200, ge=1)
    feeds: list[FeedSettings] = Field(default_factory=list)

    @field_validator("feeds")
    @classmethod
    def _one_entry_per_url(cls, feeds: list[FeedSettings]) -> list[FeedSettings]:
        # The URL is a feed's identity (its stored state, its mentions' ids): twice would be polled twice.
        seen = set()
        for feed in feeds:
            if feed.identity in seen:
                raise ValueError(f"{feed.identity} is listed twice")
            seen.add(feed.identity)
        return feeds


def status_phrase(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return ""


def make_client(*, timeout: float, user_agent: str, connections: int) -> httpx.Client:
    """A process's client for every feed it fetches: thread-safe, with a connection pool as large as the
    worker pool."""
    return FeedClient(timeout=httpx.Timeout(timeout), follow_redirects=True, headers={"User-Agent": user_agent},
                      limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections))


def client_factory(settings: RssSettings) -> ClientFactory:
    """``make_client`` for these settings, as a worker process is sent it: a module-level function and three
    values, not the settings with every feed (a worker's start-up data must stay small, or starting it waits
    for the worker to read it)."""
    return partial(make_client, timeout=settings.timeout, user_agent=settings.user_agent,
                   connections=settings.workers)


@dataclass
class FeedJob:
    feed: FeedSettings
    key: str  # "feed:<configured URL without credentials>": the feed's identity, even after it moves
    state: FeedState
    mentions: list[Mention] = field(default_factory=list)
    error: str | None = None

    @property
    def url(self) -> str:
        # A feed that moved is asked at its new place with its configured credentials (kept in the config only).
        return with_credentials_of(self.state.current_url, self.feed.url) if self.state.current_url else self.feed.url

    @property
    def label(self) -> str:
        return f"{self.feed.name} ({self.feed.identity})" if self.feed.name else self.feed.identity


class RssSource:
    Settings = RssSettings
    # status: a line per feed (sources/rss_status.py), its mentions counted by feed_url.
    status_key = "feed_url"
    status_section = staticmethod(feeds_status)
    # Feeds carry no votes: an appearance counts its feed's configured weight, a thousand readers per 1.
    engagement = EngagementMap(numbers={"weight": SourceField("float", "the feed's configured `weight`")},
                               reach=("weight",), reach_scale=1000)
    extra_keys = {
        "feed": SourceField("string", "the feed's configured name"),
        "feed_url": SourceField("string", "the feed's URL without credentials: its identity in the store"),
        "canonical_url": SourceField("string", "the entry's link without tracking parameters, fragment or credentials"),
    }
    rule_fields = also_rule_fields(extra_keys, "feed", "feed_url")

    def __init__(self, *, name: str = "rss", settings: RssSettings, client_factory: ClientFactory,
                 processes: int | None = None):
        """``client_factory``: makes an ``httpx.Client`` for a process (each worker process calls it once, so it
        must pickle); ``processes``: worker processes, one per core by default, 1 for none."""
        self.name = name
        self.settings = settings
        # The job runs as often as the most eager feed wants; the others wait until they are due.
        self.interval = min([settings.interval, *(f.interval for f in settings.feeds if f.interval)])
        # Feeds are fetched and read in worker processes (httpx, feedparser and html2text are pure Python).
        self.workers = FeedWorkers(client_factory, processes=processes, capacity=len(settings.feeds))
        if settings.feeds:
            # Now, not at the first poll: they import their modules (about a second) while the daemon starts up.
            self.workers.start()

    @classmethod
    def from_settings(cls, settings: RssSettings, *, context: SourceContext) -> "RssSource":
        return cls(name=context.name, settings=settings, client_factory=client_factory(settings))

    def close(self) -> None:
        self.workers.close()

    def work_units(self) -> list[str]:
        """Each feed is a unit of work that daemons sharing a PostgreSQL store lease (monitor/sharing.py)."""
        return [f"feed:{feed.identity}" for feed in self.settings.feeds]

    def poll(self, state: dict[str, Any], *, units: set[str] | None = None) -> Poll:
        """``units``: only these feeds (the ones this daemon holds), not every configured one."""
        now = utcnow()
        # Runs come every `interval` give or take the scheduler's jitter: a feed due before
        # the midpoint to the next run is polled now, so a run that fires a little early does
        # not make it wait a whole extra interval.
        slack = max(1.0, 0.5 * self.interval)
        jobs = []
        for feed in self.settings.feeds:
            key = f"feed:{feed.identity}"
            if units is not None and key not in units:
                continue
            feed_state = FeedState.from_dict(state.get(key))
            if feed_state.is_due(now, slack=slack):
                jobs.append(FeedJob(feed=feed, key=key, state=feed_state))
        if jobs:
            self.workers.start()  # unless they run (one died at the last poll)
            self.workers.run([self._request(job, now) for job in jobs], [host_of(job.url) for job in jobs],
                             per_host=self.settings.per_host, workers=self.settings.workers,
                             skip_after=HOST_TIMEOUTS_BEFORE_SKIP,
                             answered=lambda index, answer: self._poll_feed(jobs[index], answer, now))
        poll = Poll()
        configured = {f"feed:{feed.identity}" for feed in self.settings.feeds}
        for key in state:
            if key.startswith("feed:") and key not in configured:
                poll.state[key] = None  # a feed taken out of the config leaves status and the store
        for job in jobs:
            poll.mentions.extend(job.mentions)
            poll.state[job.key] = job.state.as_dict()
            if job.error:
                poll.failed[job.key] = job.error
            else:
                poll.succeeded.append(job.key)
        return poll

    def _request(self, job: FeedJob, now: datetime) -> FeedRequest:
        return FeedRequest(url=job.url, headers=conditional_headers(job.state.etag, job.state.last_modified),
                           max_bytes=self.settings.max_bytes, deadline=self.settings.deadline,
                           read={"source": self.name, "feed_id": job.feed.identity, "feed_name": job.feed.name,
                                 "reach": self.engagement.reach_of({"weight": job.feed.weight}), "now": now,
                                 "limit": self.settings.max_entries})

    def _poll_feed(self, job: FeedJob, answer: Exchange, now: datetime) -> None:
        """What one feed's exchange means for it, recorded in ``job``; never raises."""
        interval = job.feed.interval or self.settings.interval
        was_gone = job.state.disabled
        try:
            self._settle(job, answer, now, interval)
        except Exception as err:  # one broken feed never stops the others
            self._fail(job, now, interval, f"{type(err).__name__}: {err}")
        if was_gone and not job.state.disabled:
            log.warning("feed %s is back (it had answered 410 Gone): read again", job.label)

    def _settle(self, job: FeedJob, answer: Exchange, now: datetime, interval: float) -> None:
        """What the feed's answer means for it."""
        if answer.error is not None:
            return self._fail(job, now, interval, answer.error)
        self._follow_move(job, answer)
        if answer.status == 304:  # unchanged: nothing to read
            job.state.succeeded(now, interval=interval, problem=job.state.last_problem)
        elif answer.status == 410:
            self._give_up(job, now, "410 Gone: the feed was removed; remove it from the config or give a new url")
        elif answer.status != 200:
            self._fail(job, now, interval, f"HTTP {answer.status} {status_phrase(answer.status)}".strip(),
                       retry_after=retry_after_seconds(answer.headers) if answer.status in (429, 503) else None)
        elif answer.read_error is not None:  # what reading the feed raised, as "ExceptionName: message"
            self._fail(job, now, interval, answer.read_error)
        else:
            self._read_entries(job, answer, answer.read, now, interval)

    def _read_entries(self, job: FeedJob, answer: Exchange, read: FeedRead, now: datetime, interval: float) -> None:
        problems = []
        if answer.truncated:
            problems.append(f"body cut off at {self.settings.max_bytes} bytes (max_bytes)")
        if read.problem:
            # Not well-formed XML (SAXParseException), a declared encoding that was wrong, ...
            problems.append(read.problem)
        if read.problem and not read.entries and not read.version:
            raise ValueError(f"not a feed ({'; '.join(problems)})")
        if read.entries > self.settings.max_entries:
            # Worded the same every poll, so it is logged once, not at every poll.
            problems.append(f"more than {self.settings.max_entries} entries: read the newest (max_entries)")
        job.mentions = read.mentions
        if job.state.last_success is None:  # the first look at this feed: its archive is no news
            oldest_news = now - timedelta(hours=self.settings.backfill_hours)
            for mention in job.mentions:
                mention.backfill = mention.created_at < oldest_news
        problem = "; ".join(problems) or None
        if problem and problem != job.state.last_problem:  # once per new problem, not every poll
            log.warning("feed %s: %s; kept %d entries", job.label, problem, len(job.mentions))
        job.state.etag = answer.headers.get("etag")
        job.state.last_modified = answer.headers.get("last-modified")
        job.state.succeeded(now, interval=interval, problem=problem)

    def _follow_move(self, job: FeedJob, answer: Exchange) -> None:
        moved_to = public_url(answer.moved_to) if answer.moved_to else None
        if moved_to and moved_to != public_url(job.url):
            log.info("feed %s moved permanently to %s; asking there from now on", job.label, moved_to)
            job.state.current_url = moved_to

    def _fail(self, job: FeedJob, now: datetime, interval: float, reason: str, *,
              retry_after: float | None = None) -> None:
        if retry_after is not None:
            retry_after = min(retry_after, MAX_RETRY_AFTER)
        delay = job.state.failed(now, reason, interval=interval, max_backoff=self.settings.max_backoff,
                                 retry_after=retry_after)
        job.error = reason
        log.warning("feed %s failed (%d in a row): %s; next try in %.0f s", job.label, job.state.failures, reason,
                    delay)

    def _give_up(self, job: FeedJob, now: datetime, reason: str) -> None:
        job.state.disable(now, reason)
        job.error = reason
        log.warning("feed %s disabled: %s", job.label, reason)

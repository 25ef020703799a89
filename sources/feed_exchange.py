"""One feed's exchange: its HTTP request and the reading of its body, in whichever process makes it.

A worker process (``feed_workers``) or the source's own process runs the same
``exchange``: fetch the feed (``feed_fetch``), and for a 200 read its entries
(``feed_entries``) right there, so a body never crosses processes. What comes
back is small and picklable: the status, the few headers the source keeps,
where the feed moved, the mentions read, and any failure as text
("ExceptionName: message", the form the source stores and logs). What the
source decides about the feed (its schedule, backoff, the host's timeouts)
stays in the source, which sees every exchange.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urljoin

import httpx

from monitor.mention import Mention

from .feed_entries import entry_mentions, parse_feed
from .feed_fetch import DeadlineExceeded, fetch

log = logging.getLogger("complaint_monitor.sources.rss")

# The answer's headers the source uses (validators, Retry-After, where relative links point, the body's type).
KEPT_HEADERS = ("etag", "last-modified", "retry-after", "content-location", "content-type")


@dataclass
class FeedRead:
    """What the source needs of a parsed feed."""
    mentions: list[Mention]
    entries: int  # entries in the feed, before ``limit``
    version: str  # feedparser's name of the format, empty when it found none
    problem: str | None = None  # not well-formed XML, a wrong encoding...: "ExceptionName: message"
    logged: list[tuple[int, str]] = field(default_factory=list)  # (level, message) logged while reading


@dataclass(frozen=True, kw_only=True)
class FeedRequest:
    url: str  # with the feed's credentials, if it has any
    headers: dict[str, str]  # the conditional ones (If-None-Match, If-Modified-Since)
    max_bytes: int
    deadline: float
    # ``read_feed``'s keywords but the body's own (source, feed_id, feed_name, reach, now, limit).
    read: dict[str, Any]

    @property
    def feed_id(self) -> str:
        return self.read["feed_id"]  # the URL without credentials: what logs may show


@dataclass(kw_only=True)
class Exchange:
    status: int = 0
    url: str = ""  # where the answer finally came from, after redirects
    headers: dict[str, str] = field(default_factory=dict)  # KEPT_HEADERS present, lower-case names
    moved_to: str | None = None  # where the feed moved for good (301/308 all the way)
    truncated: bool = False  # the body was cut off at max_bytes
    read: FeedRead | None = None  # the entries of a 200
    read_error: str | None = None  # reading the body raised: "ExceptionName: message"
    error: str | None = None  # the fetch raised: "ExceptionName: message"
    timed_out: bool = False  # ... by a timeout or the deadline (it counts against the host)

    @property
    def base_url(self) -> str:
        """What relative links in the body are relative to (Content-Location, else the final URL)."""
        return urljoin(self.url, self.headers.get("content-location", ""))


def exchange(client: httpx.Client, request: FeedRequest) -> Exchange:
    """Fetch the feed and read a 200's body; never raises (a failure comes back as text)."""
    try:
        fetched = fetch(client, request.url, headers=request.headers, max_bytes=request.max_bytes,
                        deadline=request.deadline)
    except Exception as err:
        return Exchange(error=f"{type(err).__name__}: {err}",
                        timed_out=isinstance(err, (httpx.TimeoutException, DeadlineExceeded)))
    answer = Exchange(status=fetched.status, url=fetched.url, moved_to=fetched.moved_to, truncated=fetched.truncated,
                      headers={name: fetched.headers[name] for name in KEPT_HEADERS if name in fetched.headers})
    if fetched.status == 200:
        try:
            answer.read = read_feed(fetched.body, content_type=answer.headers.get("content-type"),
                                    base_url=answer.base_url, **request.read)
        except Exception as err:
            answer.read_error = f"{type(err).__name__}: {err}"
    return answer


def read_feed(body: bytes, *, content_type: str | None, source: str, feed_id: str, feed_name: str,
              base_url: str, reach: float, now: datetime, limit: int | None) -> FeedRead:
    """Parse a feed's bytes into its mentions (``entry_mentions``), keeping what was logged meanwhile."""
    records = _Records()
    log.addHandler(records)
    try:
        parsed = parse_feed(body, content_type=content_type)
        problem = f"{type(parsed.bozo_exception).__name__}: {parsed.bozo_exception}" if parsed.bozo else None
        mentions = entry_mentions(parsed, source=source, feed_id=feed_id, feed_name=feed_name, base_url=base_url,
                                  reach=reach, now=now, limit=limit)
        return FeedRead(mentions, len(parsed.entries), parsed.version or "", problem, records.logged)
    finally:
        log.removeHandler(records)


class _Records(logging.Handler):
    """What this thread logs while it reads one feed (another thread's feed has its own)."""

    def __init__(self):
        super().__init__()
        self.logged: list[tuple[int, str]] = []
        self._thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self._thread:
            self.logged.append((record.levelno, record.getMessage()))

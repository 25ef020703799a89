"""Fetching a feed over HTTP within bounds (many at once, politely: ``feed_lanes``).

One ``httpx.Client`` per process (thread-safe, one connection pool) serves
every fetch thread of that process. Each fetch is bounded in size (``max_bytes``, counted after gzip or
deflate is undone, so a compression bomb is cut off too) and in time: httpx's
timeouts bound every single network step, and a total deadline is checked
between body chunks, so a server that drips its body byte by byte cannot hold
a worker for more than ``deadline`` plus one read timeout.
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Mapping
from urllib.parse import urlsplit

import httpx

PERMANENT_REDIRECTS = (301, 308)


class DeadlineExceeded(Exception):
    """The whole fetch took longer than its deadline (a slow-drip body)."""


@dataclass(frozen=True, kw_only=True)
class Fetched:
    status: int
    url: str  # where the body finally came from, after redirects
    headers: httpx.Headers
    body: bytes = b""
    # Where the feed moved for good (only 301/308 all the way), to ask there next time.
    moved_to: str | None = None
    truncated: bool = False


class _CookiesSetByAnswers(httpx.Cookies):
    """httpx's cookie jar, but an answer is handed to it only when it sets a cookie. httpx gives every answer
    to ``http.cookiejar`` through two adapters (a urllib request, and an email message of all its headers):
    about 0.1 ms of CPU a response, a fifth of what a 304 costs, for feeds that almost never set one."""

    def extract_cookies(self, response: httpx.Response) -> None:
        if "set-cookie" in response.headers or "set-cookie2" in response.headers:
            super().extract_cookies(response)


class FeedClient(httpx.Client):
    """``httpx.Client`` whose ``cookies`` (its public property, overridden) is ``_CookiesSetByAnswers``; all
    else is httpx's."""

    def __init__(self, *, cookies: httpx.Cookies | dict[str, str] | None = None, **settings):
        super().__init__(**settings)
        self.cookies = cookies

    @property
    def cookies(self) -> httpx.Cookies:
        return self._answered_cookies

    @cookies.setter
    def cookies(self, cookies) -> None:
        self._answered_cookies = _CookiesSetByAnswers(cookies)


def conditional_headers(etag: str | None, last_modified: str | None) -> dict[str, str]:
    headers = {}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    return headers


def fetch(client: httpx.Client, url: str, *, headers: dict[str, str], max_bytes: int,
          deadline: float) -> Fetched:
    """GET ``url`` following redirects; the body is read only for a 200, and at most ``max_bytes`` of it."""
    give_up_at = time.monotonic() + deadline
    response = client.send(_request(client, url, headers), stream=True, follow_redirects=True)
    try:
        body = bytearray()
        truncated = False
        if response.status_code == 200:
            for chunk in response.iter_bytes():
                body.extend(chunk)
                if len(body) > max_bytes:
                    del body[max_bytes:]
                    truncated = True
                    break
                if time.monotonic() > give_up_at:
                    raise DeadlineExceeded(f"no complete answer within {deadline:g} s")
        elif response.status_code == 304:
            # No body by definition; reading its (empty) end lets the connection serve the next feed, where
            # closing an unread response would drop it and cost every unchanged feed a new connection.
            response.read()
        return Fetched(status=response.status_code, url=str(response.url), headers=response.headers,
                       body=bytes(body), moved_to=permanent_target(response), truncated=truncated)
    finally:
        response.close()


# Each client's GET of each feed, kept while its validators stay the same (a quiet cycle asks every feed
# again with the same ETag): building the request was a fifth of httpx's CPU for a 304.
_prepared: weakref.WeakKeyDictionary[httpx.Client, dict[str, tuple[dict[str, str], httpx.Request]]] = \
    weakref.WeakKeyDictionary()
_preparing = threading.Lock()
# Requests kept per client (about 2.6 KB each, so 13 MB at most); beyond that the oldest kept goes, and a
# feed asked again after it is built again, as every feed was before.
PREPARED_MOST = 5_000


def _request(client: httpx.Client, url: str, headers: dict[str, str]) -> httpx.Request:
    """``client.build_request("GET", url, headers=headers)``, built once while the client has no cookies (a
    request takes the client's cookies when it is built)."""
    if client.cookies:
        return client.build_request("GET", url, headers=headers)
    built = _prepared.get(client, {}).get(url)
    if built is not None and built[0] == headers:
        return built[1]
    request = client.build_request("GET", url, headers=headers)
    with _preparing:  # the client's fetch threads share what is kept
        kept = _prepared.setdefault(client, {})
        if len(kept) >= PREPARED_MOST:
            del kept[next(iter(kept))]
        kept[url] = (dict(headers), request)
    return request


def permanent_target(response: httpx.Response) -> str | None:
    """The last URL reached through permanent redirects only; a temporary one on the way stops the move."""
    hops = [*response.history, response]
    target = None
    for hop, after in zip(hops, hops[1:]):
        if hop.status_code not in PERMANENT_REDIRECTS:
            break
        target = str(after.url)
    return target


def retry_after_seconds(headers: Mapping[str, str], *, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds from now: either a number of seconds or an HTTP date."""
    value = headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


def host_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or ''}"

"""RSS and Atom feeds: fetched with httpx (conditional GET), parsed by feedparser."""

from __future__ import annotations

import calendar
import hashlib
import logging
from datetime import datetime, timezone
from typing import Any

import feedparser
import html2text
import httpx
from pydantic import BaseModel, ConfigDict, Field

from monitor.mention import Mention, utcnow
from monitor.source import Poll, SourceContext

log = logging.getLogger("complaint_monitor.sources.rss")


class FeedSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(pattern=r"^https?://")
    name: str = ""
    # How much an appearance here counts toward reach (1 = an ordinary feed).
    weight: float = Field(default=1.0, ge=0)


class RssSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    interval: float = Field(default=300, gt=0)
    timeout: float = Field(default=20, gt=0)
    max_bytes: int = Field(default=10_000_000, gt=0)
    user_agent: str = "complaint-monitor/0.1 (+https://github.com/complaint-monitor)"
    feeds: list[FeedSettings] = Field(default_factory=list)


def html_to_text(html: str) -> str:
    if "<" not in html and "&" not in html:
        return html.strip()
    converter = html2text.HTML2Text()
    converter.body_width = 0  # no hard wrapping: the email and the scorer wrap for themselves
    converter.ignore_images = True
    converter.inline_links = True
    return converter.handle(html).strip()


def _entry_time(entry: Any) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = entry.get(key)
        if value:
            return datetime.fromtimestamp(calendar.timegm(value), timezone.utc)
    return None


def entry_id(entry: Any) -> str:
    """guid, else link, else a hash of title and date: stable across polls."""
    if entry.get("id"):
        return str(entry["id"])
    if entry.get("link"):
        return str(entry["link"])
    basis = f"{entry.get('title', '')}|{entry.get('published', entry.get('updated', ''))}"
    return "sha1:" + hashlib.sha1(basis.encode("utf-8", "replace")).hexdigest()


def entry_text(entry: Any) -> str:
    for content in entry.get("content") or []:
        if content.get("value"):
            return html_to_text(content["value"])
    return html_to_text(entry.get("summary") or "")


class RssSource:
    Settings = RssSettings

    def __init__(self, *, name: str = "rss", settings: RssSettings, client: httpx.Client):
        self.name = name
        self.settings = settings
        self.interval = settings.interval
        self._client = client

    @classmethod
    def from_settings(cls, settings: RssSettings, *, context: SourceContext) -> "RssSource":
        client = httpx.Client(timeout=settings.timeout, follow_redirects=True,
                              headers={"User-Agent": settings.user_agent})
        return cls(name=context.name, settings=settings, client=client)

    def close(self) -> None:
        self._client.close()

    def poll(self, state: dict[str, Any]) -> Poll:
        poll = Poll()
        for feed in self.settings.feeds:
            try:
                self._poll_feed(feed, state, poll)
                poll.succeeded.append(f"feed:{feed.url}")
            except Exception as err:  # one broken feed never stops the others
                poll.failed[f"feed:{feed.url}"] = f"{type(err).__name__}: {err}"
                log.warning("feed %s (%s) failed: %s: %s", feed.name or feed.url, feed.url, type(err).__name__, err)
        return poll

    def _poll_feed(self, feed: FeedSettings, state: dict[str, Any], poll: Poll) -> None:
        key = f"feed:{feed.url}"
        previous = state.get(key) or {}
        headers = {}
        if previous.get("etag"):
            headers["If-None-Match"] = previous["etag"]
        if previous.get("last_modified"):
            headers["If-Modified-Since"] = previous["last_modified"]
        with self._client.stream("GET", feed.url, headers=headers) as response:
            if response.status_code == 304:
                return
            response.raise_for_status()
            body = bytearray()
            for chunk in response.iter_bytes():
                body.extend(chunk)
                if len(body) > self.settings.max_bytes:
                    log.warning("feed %s: body cut off at %d bytes", feed.url, self.settings.max_bytes)
                    break
            resp_headers = response.headers
        parsed = feedparser.parse(bytes(body), response_headers={
            k.lower(): v for k, v in resp_headers.items() if k.lower() in ("content-type", "content-location")})
        if parsed.bozo and not parsed.entries:
            raise ValueError(f"not a feed: {parsed.get('bozo_exception')}")
        if parsed.bozo:
            log.info("feed %s is not well-formed (%s); kept %d entries", feed.url, parsed.get("bozo_exception"),
                     len(parsed.entries))
        feed_title = feed.name or parsed.feed.get("title") or feed.url
        now = utcnow()
        for entry in parsed.entries:
            poll.mentions.append(Mention(
                source=self.name, source_id=f"{feed.url}|{entry_id(entry)}", kind="entry",
                url=entry.get("link") or feed.url, title=html_to_text(entry.get("title") or ""),
                text=entry_text(entry), author=entry.get("author"), created_at=_entry_time(entry) or now,
                fetched_at=now, place=feed_title, reach=feed.weight * 1000,
                extra={"feed": feed_title, "feed_url": feed.url},
            ))
        poll.state[key] = {"etag": resp_headers.get("etag"), "last_modified": resp_headers.get("last-modified"),
                           "last_success": now.isoformat()}

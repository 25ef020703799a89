"""Mastodon through Mastodon.py: public and hashtag timelines of several instances at once.

Each configured instance is one endpoint (one backoff: an instance limits
requests per client address, not per timeline) with one cursor per timeline,
``timeline:<instance>/<public|local|tag/x>`` = ``{"since_id": ...}``. A poll
asks each timeline for what came after its cursor with ``min_id``, which
(unlike ``since_id``, which returns the *newest* page above the id and leaves
a gap after a burst) returns the page right after the cursor, so pages are
read forward until one comes back short. A first look reads the newest page
only. Boosts (``reblogs_count``) and favourites are the score, replies the
comments, the author's followers the reach. A post is known by its ActivityPub
``uri``, the same on every instance, so a post seen through two instances is
one mention.

Faults: Mastodon.py is told to raise on a 429 (``ratelimit_method="throw"``)
instead of sleeping in the poll; the wait until its ``X-RateLimit-Reset``, 5xx,
timeouts and refused connections go through ``api_poll.run_step``. It never
asks the instance for its version (``version_check_mode="none"``).
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Callable, Iterator, Literal
from urllib.parse import urlsplit

from mastodon import Mastodon, MastodonAPIError, MastodonRatelimitError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from monitor.links import canonical_url
from monitor.mention import Engagement, Mention
from monitor.source import Poll, SourceContext, SourceField, also_rule_fields

from .api_poll import LINK_KEYS, ApiFault, PollSteps, RateLimited
from .feed_entries import html_to_text

log = logging.getLogger("complaint_monitor.sources.mastodon")

PAGE_SIZE = 40  # Mastodon's most statuses per timeline request


class InstanceSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(pattern=r"^https?://")
    # Which timelines to read: the federated `public` one (everything the instance knows of), and/or `local`.
    timelines: list[Literal["public", "local"]] = Field(default_factory=lambda: ["public"])
    hashtags: list[str] = Field(default_factory=list)
    # Some instances show their timelines only to a logged-in app; most need none.
    access_token: str = Field(default="", repr=False)

    @field_validator("hashtags")
    @classmethod
    def _no_hash(cls, tags: list[str]) -> list[str]:
        return [t.lstrip("#").strip() for t in tags if t.lstrip("#").strip()]

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc

    def timeline_names(self) -> list[str]:
        return [*self.timelines, *(f"tag/{t}" for t in self.hashtags)]


class MastodonSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    interval: float = Field(default=60, gt=0)
    timeout: float = Field(default=20, gt=0)
    user_agent: str = "complaint-monitor/0.1"
    # Most pages read per timeline per poll (40 statuses each); the rest waits for the next poll.
    max_pages: int = Field(default=10, ge=1)
    # Longest wait between tries of a failing instance (doubling up to this), in seconds.
    max_backoff: float = Field(default=3600, gt=0)
    instances: list[InstanceSettings] = Field(default_factory=list)


def mastodon_client(instance: InstanceSettings, settings: MastodonSettings) -> Mastodon:
    return Mastodon(api_base_url=instance.url, access_token=instance.access_token or None,
                    version_check_mode="none", ratelimit_method="throw", request_timeout=settings.timeout,
                    user_agent=settings.user_agent)


def _id_key(status_id: Any) -> tuple[int, str]:
    # Mastodon's ids are numbers in strings (longer is newer); other servers' (GoToSocial's ULIDs) sort as text.
    text = str(status_id)
    return (len(text), text)


def mention_from_status(source: str, status: dict[str, Any], *, instance: InstanceSettings, timeline: str,
                        now: datetime) -> Mention:
    """A status as a Mention (a boost as the post it boosts); raises KeyError for a status without an id."""
    status = status.get("reblog") or status
    account = status.get("account") or {}
    acct = str(account.get("acct") or account.get("username") or "")
    if acct and "@" not in acct:
        # A local account is named without its domain, which is where its profile lives (not always the API's host).
        acct = f"{acct}@{urlsplit(str(account.get('url') or instance.url)).netloc}"
    created = status.get("created_at")
    if isinstance(created, str):
        created = datetime.fromisoformat(created.replace("Z", "+00:00"))
    created = min(created, now) if isinstance(created, datetime) and created.tzinfo else now
    favourites, reblogs = _count(status.get("favourites_count")), _count(status.get("reblogs_count"))
    extra: dict[str, Any] = {"instance": instance.host, "favourites": favourites, "reblogs": reblogs}
    card = status.get("card") or {}
    if card.get("url"):
        extra["link_url"] = card["url"]
        extra["canonical_url"] = canonical_url(card["url"])
    followers = _count(account.get("followers_count"))
    return Mention(source=source, source_id=str(status.get("uri") or status["id"]),
                   url=str(status.get("url") or status.get("uri") or ""), title=status.get("spoiler_text") or "",
                   text=html_to_text(status.get("content") or ""), author=acct or None, created_at=created,
                   fetched_at=now, place=f"{instance.host} {'#' + timeline[4:] if timeline.startswith('tag/') else timeline}",
                   kind="comment" if status.get("in_reply_to_id") else "post",
                   engagement=Engagement(score=(favourites or 0) + (reblogs or 0),
                                         comments=_count(status.get("replies_count"))),
                   reach=float(followers) if followers is not None else None, extra=extra)


def _count(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@contextmanager
def _faults(api: Mastodon) -> Iterator[None]:
    """Mastodon.py's errors as api_poll's faults (its network errors are OSErrors already)."""
    try:
        yield
    except MastodonRatelimitError as err:
        reset = getattr(api, "ratelimit_reset", None)
        # X-RateLimit-Reset is read against the real clock by Mastodon.py.
        wait = max(0.0, reset - time.time()) if isinstance(reset, (int, float)) else None
        raise RateLimited(f"429 Too Many Requests ({err})", retry_after=wait) from err
    except MastodonAPIError as err:
        raise ApiFault(" ".join(str(a) for a in err.args if a is not None)) from err


class MastodonSource:
    Settings = MastodonSettings
    extra_keys = {
        "instance": SourceField("string", "the configured instance the post was read from"),
        "favourites": SourceField("integer", "favourites when read (the score is favourites + boosts)"),
        "reblogs": SourceField("integer", "boosts when read"),
        **LINK_KEYS,
    }
    # Rules read these by name (``instance == "mastodon.social" and reblogs >= 10``); 0 or "" outside Mastodon.
    rule_fields = also_rule_fields(extra_keys, "instance", "favourites", "reblogs")

    def __init__(self, *, name: str = "mastodon", settings: MastodonSettings, clients: dict[str, Mastodon],
                 clock: Callable[[], float] = time.time):
        self.name = name
        self.settings = settings
        self.interval = settings.interval
        self._clients = clients  # instance url -> its Mastodon.py client
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: MastodonSettings, *, context: SourceContext) -> "MastodonSource":
        return cls(name=context.name, settings=settings,
                   clients={i.url: mastodon_client(i, settings) for i in settings.instances})

    def close(self) -> None:
        for api in self._clients.values():
            session = getattr(api, "session", None)
            if session is not None:
                session.close()

    def poll(self, state: dict[str, Any]) -> Poll:
        steps = PollSteps(state, settings=self.settings, clock=self._clock, log=log)
        for instance in self.settings.instances:
            steps.run(f"instance:{instance.host}",
                      lambda i=instance: self._read_instance(i, state, steps.poll, steps.when))
        return steps.poll

    def _read_instance(self, instance: InstanceSettings, state: dict[str, Any], poll: Poll, when: datetime) -> None:
        """Every timeline of one instance; nothing of it is kept unless all were read."""
        api = self._clients[instance.url]
        mentions, cursors = [], {}
        for timeline in instance.timeline_names():
            key = f"timeline:{instance.host}/{timeline}"
            since = (state.get(key) or {}).get("since_id")
            with _faults(api):
                statuses = self._read_timeline(api, timeline, since)
            for status in statuses:
                try:
                    mentions.append(mention_from_status(self.name, status, instance=instance, timeline=timeline,
                                                        now=when))
                except (KeyError, TypeError, ValueError) as err:
                    log.warning("mastodon %s: skipped a status: %s: %s", key, type(err).__name__, err)
            if statuses:
                cursors[key] = {"since_id": str(max((s["id"] for s in statuses), key=_id_key))}
        poll.mentions.extend(mentions)
        poll.state.update(cursors)

    def _read_timeline(self, api: Mastodon, timeline: str, since: str | None) -> list[dict[str, Any]]:
        if since is None:  # a first look: the newest page is the backfill
            return list(self._page(api, timeline, min_id=None))
        statuses: list[dict[str, Any]] = []
        for _ in range(self.settings.max_pages):
            page = list(self._page(api, timeline, min_id=since))
            statuses.extend(page)
            if len(page) < PAGE_SIZE:
                break
            since = str(max((s["id"] for s in page), key=_id_key))
        return statuses

    @staticmethod
    def _page(api: Mastodon, timeline: str, *, min_id: str | None):
        if timeline.startswith("tag/"):
            return api.timeline_hashtag(timeline[4:], min_id=min_id, limit=PAGE_SIZE)
        return api.timeline(timeline, min_id=min_id, limit=PAGE_SIZE)

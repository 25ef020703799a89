"""Mastodon through Mastodon.py: public and hashtag timelines of several instances, streamed where allowed.

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

Streaming: where an instance accepts it, its timelines are also streamed
(``sources/mastodon_stream.py``); a poll then takes what the streams brought
and asks the REST timelines nothing, except after a stream broke (a stream
has no replay, so the timelines are read from their cursors once more). An
instance that refuses the stream is polled, and asked again after
``stream_retry`` seconds; ``instance:<host>`` in the state says which and why.
``complaint-monitor once`` streams nothing: it polls the timelines.

Growth: statuses naming a brand are re-read on Reddit's schedule
(``GET /api/v1/statuses?id[]=``, 20 at a time; one ``/api/v1/statuses/:id``
each on a server without it), per instance (``tracked:<host>`` in the state,
by the instance's own status id), for their favourites, boosts, replies and
the author's followers.

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

from mastodon import Mastodon, MastodonAPIError, MastodonNotFoundError, MastodonRatelimitError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from monitor.links import canonical_url
from monitor.mention import Mention
from monitor.source import (EngagementMap, Poll, SourceContext, SourceField, StatusSection, StatusView,
                            also_rule_fields)

from .api_poll import (LINK_KEYS, ApiFault, BrandTerms, PollSteps, RateLimited, TrackingSettings, endpoint_line,
                       endpoint_status, tracked_count)
from .feed_entries import html_to_text
from .mastodon_stream import InstanceStream, StreamRefused

log = logging.getLogger("complaint_monitor.sources.mastodon")

PAGE_SIZE = 40  # Mastodon's most statuses per timeline request
REREAD_BATCH = 20  # Mastodon's most ids per /api/v1/statuses request

# Favourites and boosts are the score, replies the comments, the author's followers the reach.
ENGAGEMENT = EngagementMap(
    numbers={"favourites": SourceField("integer", "the status's favourites_count when read"),
             "reblogs": SourceField("integer", "its reblogs_count (boosts)"),
             "replies": SourceField("integer", "its replies_count"),
             "followers": SourceField("integer", "the author's followers_count")},
    score=("favourites", "reblogs"), comments=("replies",), reach=("followers",),
    score_unit="favourites + boosts", comment_unit="replies")


class InstanceSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(pattern=r"^https?://")
    # Which timelines to read: the federated `public` one (everything the instance knows of), and/or `local`.
    timelines: list[Literal["public", "local"]] = Field(default_factory=lambda: ["public"])
    hashtags: list[str] = Field(default_factory=list)
    # Some instances show their timelines only to a logged-in app; most need none.
    access_token: str = Field(default="", repr=False)
    # Stream the timelines where the instance allows it (false: poll only).
    stream: bool = True

    @field_validator("hashtags")
    @classmethod
    def _no_hash(cls, tags: list[str]) -> list[str]:
        return [t.lstrip("#").strip() for t in tags if t.lstrip("#").strip()]

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc

    def timeline_names(self) -> list[str]:
        return [*self.timelines, *(f"tag/{t}" for t in self.hashtags)]


class MastodonSettings(TrackingSettings):
    model_config = ConfigDict(extra="forbid")
    interval: float = Field(default=60, gt=0)
    timeout: float = Field(default=20, gt=0)
    user_agent: str = "complaint-monitor/0.1"
    # Most pages read per timeline per poll (40 statuses each); the rest waits for the next poll.
    max_pages: int = Field(default=10, ge=1)
    # Longest wait between tries of a failing instance (doubling up to this), in seconds.
    max_backoff: float = Field(default=3600, gt=0)
    instances: list[InstanceSettings] = Field(default_factory=list)
    # Streaming (where an instance allows it): a refused stream is asked for again after stream_retry seconds,
    # and a stream silent for stream_read_timeout seconds (servers send a heartbeat every 15) is reconnected.
    stream: bool = True
    stream_retry: float = Field(default=3600, gt=0)
    stream_read_timeout: float = Field(default=300, gt=0)


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
    numbers = {"favourites": favourites, "reblogs": reblogs, "replies": _count(status.get("replies_count")),
               "followers": _count(account.get("followers_count"))}
    return Mention(source=source, source_id=str(status.get("uri") or status["id"]),
                   url=str(status.get("url") or status.get("uri") or ""), title=status.get("spoiler_text") or "",
                   text=html_to_text(status.get("content") or ""), author=acct or None, created_at=created,
                   fetched_at=now, place=f"{instance.host} {'#' + timeline[4:] if timeline.startswith('tag/') else timeline}",
                   kind="comment" if status.get("in_reply_to_id") else "post",
                   engagement=ENGAGEMENT.engagement(numbers), reach=ENGAGEMENT.reach_of(numbers), extra=extra)


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
    engagement = ENGAGEMENT
    extra_keys = {
        "instance": SourceField("string", "the configured instance the post was read from"),
        "favourites": SourceField("integer", "favourites when read (the score is favourites + boosts)"),
        "reblogs": SourceField("integer", "boosts when read"),
        **LINK_KEYS,
    }
    # Rules read these by name (``instance == "mastodon.social" and reblogs >= 10``); 0 or "" outside Mastodon.
    rule_fields = also_rule_fields(extra_keys, "instance", "favourites", "reblogs")
    status_key = "instance"  # status counts mentions per instance

    def __init__(self, *, name: str = "mastodon", settings: MastodonSettings, clients: dict[str, Mastodon],
                 search_terms: dict[str, list[str]] | None = None, clock: Callable[[], float] = time.time,
                 once: bool = False):
        self.name = name
        self.settings = settings
        # A one-shot read (``once``) polls the timelines: a stream would cost a health check and a connection
        # wait for a process about to exit, and its statuses would come after the poll that could store them.
        self._once = once
        self.interval = settings.interval
        self._clients = clients  # instance url -> its Mastodon.py client
        self._brands = BrandTerms(search_terms)
        self._clock = clock
        self._streams: dict[str, InstanceStream] = {}  # host -> its open streams
        # host -> its stream's marker when its timelines were last read: a change means statuses may be missed since.
        self._marker_read: dict[str, tuple[int, int]] = {}

    @classmethod
    def from_settings(cls, settings: MastodonSettings, *, context: SourceContext) -> "MastodonSource":
        return cls(name=context.name, settings=settings, search_terms=context.search_terms, once=context.once,
                   clients={i.url: mastodon_client(i, settings) for i in settings.instances})

    def close(self) -> None:
        for stream in self._streams.values():
            stream.close()
        self._streams.clear()
        for api in self._clients.values():
            session = getattr(api, "session", None)
            if session is not None:
                session.close()

    def poll(self, state: dict[str, Any]) -> Poll:
        steps = PollSteps(state, settings=self.settings, clock=self._clock, log=log)
        for instance in self.settings.instances:
            steps.run(f"instance:{instance.host}",
                      lambda i=instance: self._read_instance(i, state, steps.poll, steps.now, steps.when))
        return steps.poll

    def _read_instance(self, instance: InstanceSettings, state: dict[str, Any], poll: Poll, now: float,
                       when: datetime) -> None:
        """New statuses of every timeline of one instance (from its streams, or its timelines), and growth re-reads
        of the tracked ones; nothing of it is kept unless all of it worked."""
        api, host = self._clients[instance.url], instance.host
        info = dict(state.get(f"instance:{host}") or {})
        stream = self._stream(instance, info, now)
        marker = stream.marker() if stream is not None else None
        statuses: dict[str, list[Any]] = {t: [] for t in instance.timeline_names()}
        if stream is None or self._marker_read.get(host) != marker or not stream.receiving():
            # Polling, a stream just started (what came before it), or one that broke since: the timelines from
            # their cursors. A stream's own statuses of the same moments are the same posts: one mention each.
            for timeline in statuses:
                since = (state.get(f"timeline:{host}/{timeline}") or {}).get("since_id")
                with _faults(api):
                    statuses[timeline].extend(self._read_timeline(api, timeline, since))
        schedule = self.settings.schedule(state.get(f"tracked:{host}"))
        updates = self._reread(api, instance, schedule, now, when)
        if stream is not None:  # last: a failure before it leaves what the streams brought for the next poll
            for timeline, got in stream.take().items():
                statuses[timeline].extend(got)
        mentions, cursors, seen = [], {}, set()
        for timeline, found in statuses.items():
            key = f"timeline:{host}/{timeline}"
            for status in found:
                try:
                    mention = mention_from_status(self.name, status, instance=instance, timeline=timeline, now=when)
                except (KeyError, TypeError, ValueError) as err:
                    log.warning("mastodon %s: skipped a status: %s: %s", key, type(err).__name__, err)
                    continue
                if mention.source_id in seen:
                    continue
                seen.add(mention.source_id)
                mentions.append(mention)
                if self._brands.named_in(mention):
                    schedule.track(str((status.get("reblog") or status)["id"]), mention.created_at.timestamp(), now)
            ids = [str(s["id"]) for s in found if s.get("id") is not None]
            if ids:
                since = (state.get(key) or {}).get("since_id")
                cursors[key] = {"since_id": max([*ids, *([since] if since else [])], key=_id_key)}
        schedule.prune(now)
        newest = max((m.created_at.timestamp() for m in mentions), default=None)
        info.update(read_at=now, newest_created=max(newest, info.get("newest_created") or 0) if newest else
                    info.get("newest_created"))
        if stream is not None:
            info.update(received=stream.received, breaks=stream.breaks, last_break=stream.last_break,
                        dropped=stream.dropped)
        poll.mentions.extend(mentions)
        poll.updates.extend(updates)
        poll.state.update({**cursors, f"tracked:{host}": schedule.tracked, f"instance:{host}": info})
        self._marker_read[host] = marker

    def _stream(self, instance: InstanceSettings, info: dict[str, Any], now: float) -> InstanceStream | None:
        """The instance's open streams (started when due), or None while it is polled."""
        if self._once:
            return None  # its stream state (mode, a refusal's retry time) is the daemon's: left as it is
        if not (self.settings.stream and instance.stream):
            info.update(mode="polling", refused=None, retry_at=None)
            return None
        stream = self._streams.get(instance.host)
        if stream is not None:
            return stream
        if (info.get("retry_at") or 0) > now:
            return None  # refused not long ago (this process or the one before)
        try:
            stream = InstanceStream(self._clients[instance.url], instance.timeline_names(),
                                    read_timeout=self.settings.stream_read_timeout,
                                    connect_timeout=self.settings.timeout).start()
        except StreamRefused as err:
            log.warning("mastodon %s: %s; polling it, and asking again in %.0f s", instance.host, err,
                        self.settings.stream_retry)
            info.update(mode="polling", refused=str(err), retry_at=now + self.settings.stream_retry)
            return None
        log.info("mastodon %s: streaming %s", instance.host, ", ".join(instance.timeline_names()))
        self._streams[instance.host] = stream
        info.update(mode="streaming", refused=None, retry_at=None, streaming_since=now)
        return stream

    def _reread(self, api: Mastodon, instance: InstanceSettings, schedule, now: float,
                when: datetime) -> list[Mention]:
        """Fresh numbers of the instance's tracked statuses that are due, 20 per request."""
        due = schedule.due(now)
        fresh, returned = [], set()
        for i in range(0, len(due), REREAD_BATCH):
            with _faults(api):
                found = self._statuses(api, due[i : i + REREAD_BATCH])
            for status in found:
                fresh.append(mention_from_status(self.name, status, instance=instance, timeline="public", now=when))
                returned.add(str(status["id"]))
        for status_id in due:
            if status_id in returned:
                schedule.reread(status_id, now)
            else:
                schedule.forget(status_id)  # deleted since, or no longer visible: nothing more to read
        return fresh

    @staticmethod
    def _statuses(api: Mastodon, ids: list[str]) -> list[Any]:
        try:
            return list(api.statuses(ids))
        except MastodonNotFoundError:  # a server before Mastodon 4.3: one request per status
            found = []
            for status_id in ids:
                try:
                    found.append(api.status(status_id))
                except MastodonNotFoundError:
                    continue
            return found

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

    @staticmethod
    def status_section(view: StatusView) -> StatusSection:
        """Per instance: its health, streaming or polling (and why), how far behind now its newest status is, its
        timelines' cursors, the statuses tracked for growth, its mentions in the last hour."""
        instances, lines = {}, []
        hosts = sorted({key.split(":", 1)[1].split("/", 1)[0] for key in view.state
                        if key.startswith(("instance:", "timeline:", "tracked:"))})
        for host in hosts:
            info = view.state.get(f"instance:{host}") or {}
            newest = info.get("newest_created")
            d = instances[host] = {
                "health": endpoint_status(view, f"instance:{host}"), "mode": info.get("mode", "polling"),
                "refused": info.get("refused"), "stream_retry_at": view.time(info.get("retry_at")),
                "stream_breaks": info.get("breaks", 0), "newest_status": view.time(newest),
                "lag_seconds": round(view.now - newest, 1) if newest else None,
                "cursors": {key.split("/", 1)[1]: (value or {}).get("since_id") for key, value in view.state.items()
                            if key.startswith(f"timeline:{host}/")},
                "tracked": tracked_count(view, f"tracked:{host}"), "mentions_last_hour": view.mentions_by.get(host, 0)}
            mode = d["mode"] + (f" ({d['refused']}; streaming asked again {d['stream_retry_at']})" if d["refused"]
                                else f" ({d['stream_breaks']} breaks made up for by reading the timelines)"
                                if d["mode"] == "streaming" else "")
            newest_line = f"newest status {d['newest_status']} ({d['lag_seconds']:g} s before now)" if newest \
                else "nothing read yet"
            cursors = ", ".join(f"{t} since {c}" for t, c in d["cursors"].items()) or "none yet"
            lines.append(f"  {endpoint_line(f'instance {host}', d['health'])}; {mode}; {newest_line};"
                         f" cursors {cursors}; {d['tracked']} statuses tracked for growth;"
                         f" mentions last hour {d['mentions_last_hour']}")
        return StatusSection(data={"instances": instances}, lines=lines)

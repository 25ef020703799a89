"""Bluesky through the AT Protocol's Jetstream firehose: every new post, matched locally; growth via the AppView.

Why Jetstream and not ``app.bsky.feed.searchPosts``: search needs one query
per brand per poll, answers only what Bluesky's own search engine tokenises as
a hit, and is not open to every client; Jetstream is one WebSocket of every
post on the network as JSON, with no account, and replays from a cursor
(``time_us``, microseconds) for a day or more. A poll connects with
``cursor=<stored time_us>`` and reads until it has caught up with the time the
poll started (or the stream stays quiet for ``idle_timeout``), then stores
the newest ``time_us`` it read: a restart resumes there. Every post goes to
the pipeline's matcher.

Posts that name a brand are looked up on the public AppView, 25 per request:
``app.bsky.actor.getProfiles`` for the author's handle and followers (reach)
when first seen, ``app.bsky.feed.getPosts`` for likes, reposts, quotes and
replies on Reddit's growth schedule. A failing AppView never costs the
firehose's cursor; both go through ``api_poll.run_step``.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from typing import Any, Callable, Iterator

import httpx
from pydantic import ConfigDict, Field
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.sync.client import connect as ws_connect

from monitor.links import canonical_url
from monitor.mention import Mention
from monitor.source import (EngagementMap, Poll, SourceContext, SourceField, StatusSection, StatusView,
                            also_rule_fields)

from .api_poll import (LINK_KEYS, ApiFault, BrandTerms, PollSteps, TrackingSettings, endpoint_line, endpoint_status,
                       get_json, http_fault, make_client, tracked_count)

log = logging.getLogger("complaint_monitor.sources.bluesky")

POST = "app.bsky.feed.post"
LOOKUP_BATCH = 25  # getPosts and getProfiles take at most 25 at once
CURSOR_KEY, TRACKED_KEY = "cursor", "tracked"

# Likes, reposts and quotes are the score, replies the comments, the author's followers the reach (all read
# from the AppView: the firehose carries none).
ENGAGEMENT = EngagementMap(
    numbers={"likes": SourceField("integer", "likeCount at a re-read"),
             "reposts": SourceField("integer", "repostCount at a re-read"),
             "quotes": SourceField("integer", "quoteCount at a re-read"),
             "replies": SourceField("integer", "replyCount at a re-read"),
             "followers": SourceField("integer", "the author's followersCount")},
    score=("likes", "reposts", "quotes"), comments=("replies",), reach=("followers",),
    score_unit="likes + reposts + quotes", comment_unit="replies")


class BlueskySettings(TrackingSettings):
    model_config = ConfigDict(extra="forbid")
    interval: float = Field(default=60, gt=0)
    jetstream_url: str = Field(default="wss://jetstream2.us-east.bsky.network", pattern=r"^wss?://")
    appview_url: str = Field(default="https://public.api.bsky.app", pattern=r"^https?://")
    # Seconds to connect and for each AppView request; idle_timeout: a stream quiet this long has no more now.
    timeout: float = Field(default=20, gt=0)
    idle_timeout: float = Field(default=2, gt=0)
    user_agent: str = "complaint-monitor/0.1"
    # A first start reads back this far (the firehose carries ~50 posts a second: minutes, not hours).
    backfill_minutes: float = Field(default=0, ge=0)
    # Most events read in one poll; the rest waits for the next poll (the cursor keeps the place).
    max_events: int = Field(default=200_000, ge=1)
    max_backoff: float = Field(default=3600, gt=0)


def post_url(did: str, rkey: str) -> str:
    return f"https://bsky.app/profile/{did}/post/{rkey}"


def _created(record: dict[str, Any], now: datetime) -> datetime:
    try:
        created = datetime.fromisoformat(str(record.get("createdAt")).replace("Z", "+00:00"))
    except ValueError:
        return now
    return min(created, now) if created.tzinfo else now  # a clock ahead must not date a post in the future


def mention_from_record(source: str, *, did: str, rkey: str, record: dict[str, Any], now: datetime) -> Mention:
    extra: dict[str, Any] = {"did": did}
    external = ((record.get("embed") or {}).get("external") or {}).get("uri")
    if external:
        extra["link_url"] = external
        extra["canonical_url"] = canonical_url(external)
    if record.get("langs"):
        extra["langs"] = list(record["langs"])
    return Mention(source=source, source_id=f"at://{did}/{POST}/{rkey}", url=post_url(did, rkey), title="",
                   text=str(record.get("text") or ""), author=did, created_at=_created(record, now), fetched_at=now,
                   place="Bluesky", kind="comment" if record.get("reply") else "post", extra=extra)


def mention_from_event(source: str, event: dict[str, Any], *, now: datetime) -> Mention | None:
    """A Jetstream event as a Mention; None for anything but a new post (likes, deletes, identity events)."""
    commit = event.get("commit") or {}
    if event.get("kind") != "commit" or commit.get("operation") != "create" or commit.get("collection") != POST:
        return None
    return mention_from_record(source, did=str(event["did"]), rkey=str(commit["rkey"]),
                               record=commit.get("record") or {}, now=now)


def mention_from_view(source: str, view: dict[str, Any], *, now: datetime) -> Mention:
    """A post as ``getPosts`` shows it, with its counts: a growth re-read."""
    did, _, rkey = view["uri"][len("at://"):].partition(f"/{POST}/")
    mention = mention_from_record(source, did=did, rkey=rkey, record=view.get("record") or {}, now=now)
    likes, reposts, quotes = (int(view.get(k) or 0) for k in ("likeCount", "repostCount", "quoteCount"))
    mention.engagement = ENGAGEMENT.engagement({"likes": likes, "reposts": reposts, "quotes": quotes,
                                                "replies": int(view.get("replyCount") or 0)})
    mention.extra.update(likes=likes, reposts=reposts, quotes=quotes)
    return mention


def jetstream_connect(settings: BlueskySettings) -> Callable[[str], Any]:
    """``connect(url)``: a WebSocket to Jetstream with these settings."""
    return partial(ws_connect, open_timeout=settings.timeout, close_timeout=2, max_size=2 ** 22,
                   user_agent_header=settings.user_agent)


@contextmanager
def _faults() -> Iterator[None]:
    """A refused WebSocket handshake as the HTTP fault it was (a 429 keeps its Retry-After)."""
    try:
        yield
    except InvalidStatus as err:
        response = err.response
        fault = http_fault(httpx.Response(response.status_code, headers=list(response.headers.raw_items())))
        raise fault or ApiFault(str(err)) from err
    except WebSocketException as err:
        raise ApiFault(f"{type(err).__name__}: {err}") from err


class BlueskySource:
    Settings = BlueskySettings
    engagement = ENGAGEMENT
    extra_keys = {
        "did": SourceField("string", "the author's DID (the handle, once looked up, is the author)"),
        "langs": SourceField("strings", "the languages the author tagged the post with"),
        **LINK_KEYS,
        "likes": SourceField("integer", "likes at the last re-read (the score is likes + reposts + quotes)"),
        "reposts": SourceField("integer", "reposts at the last re-read"),
        "quotes": SourceField("integer", "quote posts at the last re-read"),
    }
    rule_fields = also_rule_fields(extra_keys, "langs", "likes", "reposts", "quotes")

    def __init__(self, *, name: str = "bluesky", settings: BlueskySettings, client: httpx.Client,
                 connect: Callable[[str], Any], search_terms: dict[str, list[str]] | None = None,
                 clock: Callable[[], float] = time.time):
        self.name = name
        self.settings = settings
        self.interval = settings.interval
        self._client = client  # the AppView
        self._connect = connect  # Jetstream
        self._brands = BrandTerms(search_terms)
        self._clock = clock

    @staticmethod
    def status_section(view: StatusView) -> StatusSection:
        """Jetstream's and the AppView's health, where the firehose cursor is and how far behind now, the posts
        tracked for growth."""
        cursor = view.state.get(CURSOR_KEY)
        at = cursor / 1_000_000 if isinstance(cursor, int) else None
        data = {"jetstream": endpoint_status(view, "jetstream"), "appview": endpoint_status(view, "appview"),
                "read_up_to": view.time(at), "lag_seconds": round(view.now - at, 1) if at else None,
                "tracked": tracked_count(view, TRACKED_KEY)}
        read = f"read up to {data['read_up_to']} ({data['lag_seconds']:g} s before now)" if at else "nothing read yet"
        return StatusSection(data={"bluesky": data}, lines=[
            f"  {endpoint_line('jetstream', data['jetstream'])}; {read}",
            f"  {endpoint_line('appview', data['appview'])}; {data['tracked']} posts tracked for growth"])

    @classmethod
    def from_settings(cls, settings: BlueskySettings, *, context: SourceContext) -> "BlueskySource":
        return cls(name=context.name, settings=settings, search_terms=context.search_terms,
                   client=make_client(timeout=settings.timeout, user_agent=settings.user_agent),
                   connect=jetstream_connect(settings))

    def close(self) -> None:
        self._client.close()

    def poll(self, state: dict[str, Any]) -> Poll:
        steps = PollSteps(state, settings=self.settings, clock=self._clock, log=log)
        poll, now, when = steps.poll, steps.now, steps.when
        steps.run("jetstream", lambda: self._read_firehose(state.get(CURSOR_KEY), poll, now, when))
        schedule = self.settings.schedule(state.get(TRACKED_KEY))
        named = [m for m in poll.mentions if self._brands.named_in(m)]
        for mention in named:
            schedule.track(mention.source_id, mention.created_at.timestamp(), now)
        if named or schedule.due(now):
            steps.run("appview", lambda: self._look_up(named, schedule, poll, now, when))
        schedule.prune(now)
        poll.state[TRACKED_KEY] = schedule.tracked
        return poll

    def _read_firehose(self, cursor: Any, poll: Poll, now: float, when: datetime) -> None:
        start_us = int(now * 1_000_000)
        if not isinstance(cursor, int):
            cursor = int((now - self.settings.backfill_minutes * 60) * 1_000_000)
        url = f"{self.settings.jetstream_url.rstrip('/')}/subscribe?wantedCollections={POST}&cursor={cursor}"
        mentions, newest, events = [], cursor, 0
        with _faults(), self._connect(url) as ws:
            while events < self.settings.max_events:
                try:
                    message = ws.recv(timeout=self.settings.idle_timeout)
                except TimeoutError:
                    break  # quiet: nothing more has happened yet
                except ConnectionClosed:
                    if not events:
                        raise
                    # Jetstream drops slow readers: what was read counts, the next poll resumes after it.
                    log.warning("bluesky: Jetstream closed the stream after %d events; the rest next poll", events)
                    break
                events += 1
                try:
                    event = json.loads(message)
                    newest = max(newest, int(event["time_us"]))
                    mention = mention_from_event(self.name, event, now=when)
                except (KeyError, TypeError, ValueError) as err:
                    log.warning("bluesky: skipped an event: %s: %s", type(err).__name__, err)
                    continue
                if mention is not None:
                    mentions.append(mention)
                if newest >= start_us:
                    break  # caught up with the moment the poll started; the rest is the next poll's
        poll.mentions.extend(mentions)
        # Jetstream replays from the cursor inclusively: the next poll starts one microsecond later.
        poll.state[CURSOR_KEY] = newest + 1 if events else cursor

    def _look_up(self, named: list[Mention], schedule, poll: Poll, now: float, when: datetime) -> None:
        """Authors' handles and followers for new posts naming a brand; fresh counts for tracked posts due."""
        api = f"{self.settings.appview_url.rstrip('/')}/xrpc"
        dids = sorted({m.extra["did"] for m in named})
        profiles = {}
        for i in range(0, len(dids), LOOKUP_BATCH):
            page = get_json(self._client, f"{api}/app.bsky.actor.getProfiles",
                            params=[("actors", d) for d in dids[i : i + LOOKUP_BATCH]])
            profiles.update({p["did"]: p for p in page.get("profiles") or []})
        due = schedule.due(now)
        fresh = []
        for i in range(0, len(due), LOOKUP_BATCH):
            page = get_json(self._client, f"{api}/app.bsky.feed.getPosts",
                            params=[("uris", u) for u in due[i : i + LOOKUP_BATCH]])
            fresh.extend(mention_from_view(self.name, view, now=when) for view in page.get("posts") or [])
        # Applied only once every lookup answered, so a failure leaves the schedule as it was.
        for mention in [*named, *fresh]:
            profile = profiles.get(mention.extra["did"]) or {}
            if profile.get("handle"):
                mention.author = profile["handle"]
            if isinstance(profile.get("followersCount"), int):
                mention.reach = ENGAGEMENT.reach_of({"followers": profile["followersCount"]})
        returned = {m.source_id for m in fresh}
        for uri in due:
            if uri in returned:
                schedule.reread(uri, now)
            else:
                schedule.forget(uri)  # deleted since: nothing more to read
        poll.updates.extend(fresh)

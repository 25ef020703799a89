"""Reddit through praw: new posts and comments in subreddits, brand searches, growth.

Each listing keeps a cursor (the newest item's creation time and fullname)
in the store, so a poll reads only what is new, pages back (praw follows
``after``) until it reaches the cursor, and a restart resumes where the last
poll stopped. A first start reads back ``backfill_hours`` only.

Faults: prawcore already spreads requests by the X-Ratelimit-* headers,
retries 5xx and timeouts twice with jittered sleeps, and renews an expired
or rejected token. What it leaves to us: a 429 (raised at once, with its
Retry-After), a listing that still fails after those retries (recorded,
the other listings go on), and credentials Reddit refuses (one clear error,
then the source waits, doubling the wait, instead of asking every poll).
"""

from __future__ import annotations

import logging
import random
import time
from datetime import datetime, timezone
from typing import Any, Callable

import praw
import prawcore
from pydantic import BaseModel, ConfigDict, Field

from monitor.config import Brand
from monitor.match import BrandMatcher
from monitor.mention import Mention
from monitor.source import Poll, SourceContext, SourceField, also_rule_fields

from .reddit_growth import GrowthSchedule, SubscriberCache, reread_posts
from .reddit_items import ENGAGEMENT, BadItem, created_epoch, fullname, mention_from_thing
from .reddit_odd import ItemByItemObjector, ShallowJsonRequestor
from .reddit_pace import MIN_WAIT, RateWindow, RequestBudget
from .reddit_stream import SiteStream, stream_status

log = logging.getLogger("complaint_monitor.sources.reddit")

MULTIREDDIT_BATCH = 50  # subreddit names per combined r/a+b+c listing
MAX_ITEMS_PER_LISTING = 1000  # Reddit's listings stop here anyway
DEFAULT_RETRY_AFTER = 60.0  # a 429 without Retry-After
CREDENTIALS_FIRST_WAIT = 60.0
CREDENTIALS_MAX_WAIT = 3600.0
# Where the adapter keeps more than cursors in Poll.state. A pause is kept per OAuth client ("pause:CLIENT_ID"):
# daemons sharing one client respect its 429s, daemons with clients of their own keep their own pace.
TRACKED_KEY, SUBSCRIBERS_KEY, PAUSE_PREFIX, LEGACY_PAUSE_KEY = "tracked", "subscribers", "pause:", "pause"
GROWTH_UNIT = "growth"  # the work unit of the growth re-reads, beside one per listing
LISTING_DUE_AFTER = 0.8  # of the interval: a listing read that recently by any daemon is not read again

class RedditSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    client_id: str = ""
    client_secret: str = Field(default="", repr=False)
    user_agent: str = "complaint-monitor/0.1"
    subreddits: list[str] = Field(default_factory=list)
    search: bool = False
    comments: bool = True
    interval: float = Field(default=120, gt=0)
    backfill_hours: float = Field(default=1.0, ge=0)
    timeout: float = Field(default=16, gt=0)
    # Growth: matched posts are re-read every track_first_minutes, the gap doubling up to
    # track_max_minutes, for track_hours after they were posted (0 turns it off).
    track_hours: float = Field(default=24, ge=0)
    track_first_minutes: float = Field(default=5, gt=0)
    track_max_minutes: float = Field(default=60, gt=0)
    track_max_posts: int = Field(default=2000, ge=0)
    reach_refresh_hours: float = Field(default=24, gt=0)
    # Site-wide: every new post and comment on Reddit (r/all/new, r/all/comments), matched here; subreddits
    # and search are then not read (the stream holds them). See sources/reddit_stream.py.
    all: bool = False
    # What the source lets itself ask of Reddit (which allows about 100 a minute per OAuth client): the
    # stream spends what growth re-reads and subreddit sizes leave.
    requests_per_minute: float = Field(default=90, gt=0)
    # The longest a site-wide listing waits between reads, however quiet it is: the latency's bound.
    stream_max_wait: float = Field(default=5, ge=1)
    oauth_url: str = "https://oauth.reddit.com"
    reddit_url: str = "https://www.reddit.com"

    def missing_credentials(self) -> list[str]:
        return [k for k in ("client_id", "client_secret") if not getattr(self, k).strip()]


def search_query(terms: list[str]) -> str:
    return " OR ".join(f'"{t}"' if " " in t else t for t in terms)


class TimeoutRequestor(ShallowJsonRequestor):
    """A requestor that keeps our timeout: praw 8 does not hand its ``timeout`` setting to prawcore,
    which then uses the default it read from PRAWCORE_TIMEOUT at import (16 s) for every request.
    It also shows every response to ``window``: the request budget counts them all."""

    def __init__(self, *args: Any, window: RateWindow | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.window = window

    def request(self, *args: Any, timeout: float | None = None, **kwargs: Any):
        response = super().request(*args, timeout=self.timeout, **kwargs)
        if self.window is not None:
            self.window.saw(str(response.url), response.headers)
        return response


def reddit_client(settings: RedditSettings) -> praw.Reddit:
    """A read-only (application-only OAuth) praw client for these settings; ``rate_window`` on it counts
    its requests and keeps what Reddit's X-Ratelimit-* headers said."""
    window = RateWindow()
    reddit = praw.Reddit(client_id=settings.client_id, client_secret=settings.client_secret,
                         user_agent=settings.user_agent, oauth_url=settings.oauth_url,
                         reddit_url=settings.reddit_url, check_for_updates=False, check_for_async=False,
                         requestor_class=TimeoutRequestor,
                         requestor_kwargs={"timeout": settings.timeout, "window": window})
    reddit.read_only = True
    reddit.rate_window = window
    # praw has no public hook for this: one item it cannot build must not cost its whole page.
    reddit._objector = ItemByItemObjector(reddit, reddit._objector.parsers)
    return reddit


class RedditSource:
    Settings = RedditSettings
    engagement = ENGAGEMENT
    status_section = staticmethod(stream_status)  # status: the site-wide stream's listings (all: true)
    extra_keys = {
        "subreddit": SourceField("string", "the subreddit's name"),
        "link_url": SourceField("string", "a link post's target (a story is also known by it)"),
        "nsfw": SourceField("boolean", "marked over 18"),
        "quarantined": SourceField("boolean", "posted in a quarantined subreddit"),
        "crosspost_parent": SourceField("string", "a crosspost's original (fullname), whose text it takes"),
        "crosspost_from": SourceField("string", "the subreddit of a crosspost's original"),
        "edited_at": SourceField("float", "when its author last edited it (a re-read that shows a later edit re-reads it)"),
        "first_text": SourceField("string", "the text first read, kept when an edit replaced it (the email shows both)"),
        "gone": SourceField("string", "deleted or removed since: why its text is empty"),
        "link_id": SourceField("string", "a comment's post (fullname)"),
        "post_title": SourceField("string", "the title of a comment's post (the email's 'In:' line)"),
        "post_url": SourceField("string", "the link of a comment's post (stories put the comment in its post's story)"),
    }
    rule_fields = also_rule_fields(extra_keys, "subreddit", "nsfw", "quarantined")

    def __init__(self, *, name: str = "reddit", settings: RedditSettings, reddit: praw.Reddit | None,
                 search_terms: dict[str, list[str]] | None = None, clock: Callable[[], float] = time.time):
        self.name = name
        self.settings = settings
        self.interval = settings.interval
        self._reddit = reddit
        self._search_terms = search_terms or {}
        self._brand_terms = sorted({t.strip().lower() for terms in self._search_terms.values() for t in terms
                                    if t.strip()})
        self._clock = clock  # the growth schedule and waits run on it
        self._pause_key = PAUSE_PREFIX + settings.client_id
        self._stream = None
        self.paces_itself = False
        if settings.all and reddit is not None:
            # The stream's pace is its own (sources/reddit_pace.py): the daemon only has to ask often.
            self.interval, self.paces_itself = MIN_WAIT, True
            matcher = BrandMatcher([Brand(name=brand, keywords=terms) for brand, terms in self._search_terms.items()])
            budget = RequestBudget(per_minute=settings.requests_per_minute,
                                   window=getattr(reddit, "rate_window", None), now=clock())
            self._stream = SiteStream(reddit=reddit, source=name, matcher=matcher, budget=budget,
                                      max_wait=settings.stream_max_wait, backfill_hours=settings.backfill_hours,
                                      listings=("comments", "new") if settings.comments else ("new",))

    @classmethod
    def from_settings(cls, settings: RedditSettings, *, context: SourceContext) -> "RedditSource":
        missing = settings.missing_credentials()
        if missing:
            # Said once, here; the source then stays idle instead of failing every poll.
            context.log.error("reddit: no %s configured (set them in config.yaml, e.g. from ${REDDIT_CLIENT_ID} and"
                              " ${REDDIT_CLIENT_SECRET}); the Reddit source stays idle", " and ".join(missing))
            return cls(name=context.name, settings=settings, reddit=None)
        if settings.all and (settings.subreddits or settings.search):
            context.log.info("reddit: all: true reads every new post and comment on Reddit; subreddits and search"
                             " are not read as well")
        return cls(name=context.name, settings=settings, reddit=reddit_client(settings),
                   search_terms=context.search_terms)

    def close(self) -> None:
        pass

    def listings(self) -> list[tuple[str, Any]]:
        """(cursor key, callable returning a fresh listing generator) for every listing this source reads."""
        assert self._reddit is not None
        found = []
        subs = self.settings.subreddits
        for i in range(0, len(subs), MULTIREDDIT_BATCH):
            multi = "+".join(subs[i : i + MULTIREDDIT_BATCH])
            subreddit = self._reddit.subreddit(multi)
            found.append((f"new:{multi}", lambda s=subreddit: s.new(limit=MAX_ITEMS_PER_LISTING)))
            if self.settings.comments:
                found.append((f"comments:{multi}", lambda s=subreddit: s.comments(limit=MAX_ITEMS_PER_LISTING)))
        if self.settings.search:
            for brand, terms in self._search_terms.items():
                query = search_query(terms)
                found.append((f"search:{brand}", lambda q=query: self._reddit.subreddit("all").search(
                    q, sort="new", time_filter="week", limit=MAX_ITEMS_PER_LISTING)))
        return found

    def work_units(self) -> list[str] | None:
        """For daemons sharing a PostgreSQL store: each listing (its cursor's key) and the growth re-reads are
        units of their own; the stream (and a source without credentials) is one unit, None."""
        if self._reddit is None or self._stream is not None:
            return None
        return [key for key, _ in self.listings()] + [GROWTH_UNIT]

    def poll(self, state: dict[str, Any], *, units: set[str] | None = None) -> Poll:
        """``units``: only these listings (and the growth re-reads if named), those this daemon holds; each
        of them only when not read within most of ``interval`` (the other daemons' ticks ask too)."""
        poll = Poll()
        if self._reddit is None:
            poll.failed["credentials"] = f"no {' and '.join(self.settings.missing_credentials())} configured"
            return poll
        now = self._clock()
        when = datetime.fromtimestamp(now, timezone.utc)
        # The pause of this daemon's client: daemons with other clients keep their own pace.
        paused = state.get(self._pause_key) or state.get(LEGACY_PAUSE_KEY)
        if paused and paused["until"] > now:
            until = datetime.fromtimestamp(paused["until"], timezone.utc).strftime("%H:%M:%S UTC")
            poll.failed[paused["kind"]] = f"{paused['reason']}; waiting until {until}"
            return poll
        s = self.settings
        schedule = GrowthSchedule(state.get(TRACKED_KEY), hours=s.track_hours,
                                  first_interval=s.track_first_minutes * 60, max_interval=s.track_max_minutes * 60,
                                  max_posts=s.track_max_posts)
        reach = SubscriberCache(state.get(SUBSCRIBERS_KEY), max_age=s.reach_refresh_hours * 3600)
        reach.prune(now)
        requests = []
        growth = units is None or GROWTH_UNIT in units
        if self._stream is not None:
            steps = [("stream", lambda: requests.append(self._stream.read(
                state, poll, now=now, when=when, on_post=lambda name, created: schedule.track(name, created, now))))]
        else:
            steps = [(f"listing:{key}", lambda key=key, listing=listing: self._read_listing(
                         key, listing, state.get(key), poll, schedule, now=now, when=when))
                     for key, listing in self.listings()
                     if units is None or (key in units and self._listing_due(state.get(key), now))]
        if growth and (self._stream is None or schedule.due(now)):  # the stream polls every second: only when due
            steps.append(("growth", lambda: poll.updates.extend(
                reread_posts(self._reddit, schedule, self.name, now=now, when=when))))
        if units is not None and not steps and not paused:
            return Poll(idle=True)  # another daemon read these listings within the interval
        steps.append(("reach", lambda: self._fill_reach(reach, poll, now)))
        for subject, step in steps:
            if not self._run_step(subject, step, poll, paused, now):
                break
        else:
            if paused:  # the wait is over and Reddit answers again; a pause set since by another daemon stays
                poll.state[self._pause_key] = lambda stored: stored if stored and stored["until"] > now else None
                poll.succeeded.append(paused["kind"])
        if LEGACY_PAUSE_KEY in state:
            poll.state[LEGACY_PAUSE_KEY] = None  # an earlier release's pause, of any client: read once, now gone
        if self._stream is not None and not paused and requests == [0] and not poll.mentions:
            # Nothing was due: no request, nothing to store, no cursor moved; not worth a poll record.
            return Poll(idle=True)
        # Merged into what is stored when the poll is saved, never written whole from this poll's copy: other
        # daemons holding other listings of this source change the same schedule and counts meanwhile.
        if schedule.changed or growth:
            poll.state[TRACKED_KEY] = lambda stored: schedule.merged(stored, now)
        if reach.changed or growth:
            poll.state[SUBSCRIBERS_KEY] = lambda stored: reach.merged(stored, now)
        return poll

    def _listing_due(self, cursor: dict | None, now: float) -> bool:
        """Read it unless a daemon did within most of the interval (room for the ticks' jitter)."""
        return not cursor or cursor.get("read_at", 0) <= now - self.interval * LISTING_DUE_AFTER

    def _pause(self, record: dict) -> Callable[[dict | None], dict]:
        """The pause to store: this one, or one set meanwhile (by another daemon) that lasts longer."""
        return lambda stored: stored if stored and stored["until"] > record["until"] else record

    def _run_step(self, subject: str, step, poll: Poll, paused: dict | None, now: float) -> bool:
        """One listing (or the growth re-read); False when the rest of the poll must wait."""
        try:
            step()
        except prawcore.TooManyRequests as err:
            wait = _retry_after(err)
            poll.state[self._pause_key] = self._pause({"kind": "rate-limit", "until": now + wait,
                                                       "reason": f"Reddit answered 429 Too Many Requests to {subject}"})
            poll.failed["rate-limit"] = f"429 on {subject}; no requests for {wait:.0f}s (Retry-After)"
            log.warning("reddit: 429 on %s: the rest of this poll is skipped, next requests in %.0fs", subject, wait)
            return False
        except (prawcore.PrawcoreException, praw.exceptions.PRAWException) as err:
            if not _credentials_refused(err):
                poll.failed[subject] = f"{type(err).__name__}: {err}"
                log.warning("reddit %s failed: %s: %s", subject, type(err).__name__, err)
                return True
            before = paused["wait"] if paused and paused["kind"] == "credentials" else None
            wait = CREDENTIALS_FIRST_WAIT if before is None else min(CREDENTIALS_MAX_WAIT, before * 2)
            reason = f"Reddit refused the client_id/client_secret ({_describe(err)})"
            poll.state[self._pause_key] = self._pause({
                "kind": "credentials", "until": now + wait * random.uniform(1, 1.1), "wait": wait, "reason": reason})
            poll.failed["credentials"] = reason
            if before is None:  # said once; later refusals only stretch the wait
                log.error("reddit: %s: check sources.reddit.client_id and client_secret; the Reddit source waits"
                          " %.0fs before trying again (doubling up to %.0fs)", reason, wait, CREDENTIALS_MAX_WAIT)
            return False
        except Exception as err:  # noqa: BLE001 - anything else odd costs this listing, not the poll
            poll.failed[subject] = f"{type(err).__name__}: {err}"
            log.exception("reddit %s failed", subject)
            return True
        poll.succeeded.append(subject)
        return True

    def _names_a_brand(self, mention: Mention) -> bool:
        """Cheap pre-check (the pipeline's matcher decides): only such posts are worth re-reading and sizing."""
        if not self._brand_terms:
            return True
        haystack = f"{mention.title}\n{mention.text}".lower()
        return any(term in haystack for term in self._brand_terms)

    def _read_listing(self, key: str, listing, cursor: dict | None, poll: Poll, schedule: GrowthSchedule, *,
                      now: float, when: datetime) -> None:
        if cursor:
            since, seen = cursor["created"], set(cursor.get("ids", []))
        else:
            since, seen = now - self.settings.backfill_hours * 3600, set()
        newest_created, newest_ids = since, set(seen)
        # praw pages back with `after` until we stop at the cursor, so a burst of
        # more than one page since the last poll is read whole.
        for thing in listing():
            try:
                # Never ahead of now: an item dated in the future would put the cursor past everything after it.
                created, name = min(created_epoch(thing), now), fullname(thing)
            except BadItem as err:
                log.warning("reddit: skipped an item in %s: %s", key, err)
                continue
            if created < since:
                break  # listings are newest first: everything after this was read before
            if name in seen:
                continue
            if created > newest_created:
                newest_created, newest_ids = created, {name}
            elif created == newest_created:
                newest_ids.add(name)
            try:
                mention = mention_from_thing(self.name, thing, now=when)
            except Exception as err:  # noqa: BLE001 - one odd item must not cost the listing
                log.warning("reddit: skipped %s in %s: %s: %s", name, key, type(err).__name__, err)
                continue
            poll.mentions.append(mention)
            if mention.kind == "post" and self._names_a_brand(mention):
                schedule.track(name, created, now)
        # Items created in the same second as the cursor are told apart by id; read_at: when it was last read.
        poll.state[key] = {"created": newest_created, "ids": sorted(newest_ids), "read_at": now}

    def _fill_reach(self, reach: SubscriberCache, poll: Poll, now: float) -> None:
        """Subscribers of each relevant mention's subreddit: from the post itself, else the cache, else Reddit."""
        for mention in poll.mentions + poll.updates:
            if mention.reach is not None:
                reach.learn(mention.extra["subreddit"], int(mention.reach), now)
        wanted = [m for m in poll.mentions if self._names_a_brand(m)] + poll.updates
        missing = reach.stale({m.extra["subreddit"] for m in wanted if m.reach is None})
        if missing:
            reach.fetch(self._reddit, missing, now)
        for mention in wanted:
            if mention.reach is None:
                mention.reach = ENGAGEMENT.reach_of({"subreddit_subscribers": reach.get(mention.extra["subreddit"])})


def _retry_after(err: prawcore.TooManyRequests) -> float:
    """Seconds to wait from a 429's Retry-After (seconds or an HTTP date), with a default when absent."""
    value = (err.retry_after or "").strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        from email.utils import parsedate_to_datetime
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return DEFAULT_RETRY_AFTER


def _credentials_refused(err: Exception) -> bool:
    if isinstance(err, prawcore.OAuthException):
        return True
    response = getattr(err, "response", None)
    return (response is not None and response.status_code in (400, 401, 403)
            and "/api/v1/access_token" in str(response.url))


def _describe(err: Exception) -> str:
    response = getattr(err, "response", None)
    return f"HTTP {response.status_code} from the token endpoint" if response is not None else str(err)

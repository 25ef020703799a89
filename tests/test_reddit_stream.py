"""The site-wide Reddit stream (``sources.reddit.all: true``) against a synthetic stream on the local server.

The server's r/all/comments and r/all/new serve sequential base-36 ids at a
steady rate with 5x bursts, some invisible, on a clock the test moves one
second per poll (as the daemon polls a stream source every second), so
minutes of Reddit pass in seconds. Everything goes through praw, the real
Pipeline and a SQLite store.
"""

from __future__ import annotations

import logging
import time

import pytest

from monitor.app import Monitor
from monitor.config import load_config
from monitor.daemon import build_scheduler
from monitor.health import format_status, status
from monitor.pipeline import Pipeline
from monitor.store import Store
from sources.reddit import RedditSettings, RedditSource, reddit_client
from sources.reddit_pace import BUDGET_BURST
from sources.reddit_stream import id_number
from tests.daemon_process import wait_for
from tests.servers.reddit import ManualClock, RedditServer
from tests.servers.site_stream import SyntheticStream

BUDGET = 90  # the default requests_per_minute


class Harness:
    """Polls like the daemon (once a simulated second), processes, and counts requests per second."""

    def __init__(self, server: RedditServer, store: Store, pipeline: Pipeline, clock: ManualClock, **settings):
        self.server, self.store, self.pipeline, self.clock = server, store, pipeline, clock
        self.settings = RedditSettings(**{"client_id": "test-id", "client_secret": "test-secret", "all": True,
                                          "oauth_url": server.url, "reddit_url": server.url, **settings})
        self.handed = 0  # mentions the source handed to the pipeline
        self.requests: list[tuple[float, int]] = []  # (simulated time, API requests so far)
        self.polls = []
        self.restart()

    def restart(self) -> None:
        """A new process: a new client and source; only the store (cursors, gaps) carries over."""
        self.source = RedditSource(settings=self.settings, reddit=reddit_client(self.settings), clock=self.clock,
                                   search_terms={"Acme": ["acme"]})

    def api_requests(self) -> int:
        return self.server.count() - self.server.count("/api/v1/access_token")

    def run(self, seconds: int) -> None:
        for _ in range(seconds):
            self.clock.advance(1)
            poll = self.source.poll(self.store.source_state("reddit"))
            self.polls.append(poll)
            self.handed += len(poll.mentions)
            if not poll.idle:
                self.pipeline.process("reddit", poll)
            self.requests.append((self.clock.now, self.api_requests()))

    def most_in_a_minute(self) -> int:
        most = 0
        for i, (at, count) in enumerate(self.requests):
            earlier = [c for t, c in self.requests[:i] if t <= at - 60]
            most = max(most, count - (earlier[-1] if earlier else 0))
        return most

    def stored(self) -> list[str]:
        return [r["source_id"] for r in self.store.query("SELECT source_id FROM mentions")]

    def cursor(self, listing: str = "comments") -> dict:
        return self.store.source_state("reddit")[f"stream:{listing}"]

    def expected(self, comments: SyntheticStream, posts: SyntheticStream, since: float) -> set[str]:
        """What should be stored: the matching visible items from ``since`` up to the newest each listing read."""
        return (comments.expected(since, self.cursor("comments")["newest_created"])
                | posts.expected(since, self.cursor("new")["newest_created"]))


@pytest.fixture
def site(write_config):
    """make(**settings) -> (harness, comments, posts): 40 comments/s with a 5x burst for 30 s, 5 posts/s."""
    made = []

    def make(*, seconds: float = 200, burst_at: float = 60, **settings):
        clock = ManualClock()
        server = RedditServer().start()
        comments = SyntheticStream(kind="t1", clock=clock, start=clock.now, seconds=seconds, rate=40,
                                   bursts=((burst_at, burst_at + 30, 5),), match_every=200)
        posts = SyntheticStream(kind="t3", clock=clock, start=clock.now, seconds=seconds, rate=5,
                                first_id="zz0000", match_every=50)
        server.add_stream(comments)
        server.add_stream(posts)
        config = load_config(write_config())
        store = Store(config.store_path)
        made.append((server, store))
        return Harness(server, store, Pipeline(config=config, store=store), clock, **settings), comments, posts

    yield make
    for server, store in made:
        store.close()
        server.stop()


def test_every_matching_item_is_stored_once_and_a_burst_is_read_back_within_the_budget(site):
    harness, comments, posts = site(track_first_minutes=0.5)  # growth re-reads of matched posts share the budget
    start = harness.clock.now
    gaps = []
    for _ in range(24):  # 240 simulated seconds; the streams end at 200 s, so the last reads catch up
        harness.run(10)
        text = format_status(status(harness.store, {"reddit": 1}, now=harness.clock.now))
        if "ids not read back yet" in text:
            gaps.append(text)
    stored = harness.stored()
    expected = comments.expected(start, harness.clock.now) | posts.expected(start, harness.clock.now)
    assert set(stored) == expected and len(expected) > 50
    assert harness.handed == len(stored), "an item was handed to the pipeline twice"
    # Every id is accounted for: read from a page, read back by the fill, or invisible.
    for listing, stream in (("comments", comments), ("new", posts)):
        cursor = harness.cursor(listing)
        counts = cursor["counts"]
        assert counts["read"] + counts["filled"] == stream.visible_between(start, harness.clock.now)
        assert counts["read"] + counts["filled"] + counts["invisible"] == cursor["newest"] - id_number(
            stream.fullname(0)[3:]) + 1
        assert cursor["gaps"] == [] and counts["dropped"] == 0
    assert harness.cursor()["counts"]["filled"] > 500, "the burst outran the listing and was read back"
    # The pace follows the rate: a comments page brings about PAGE_TARGET (60) new items, not a handful.
    assert harness.cursor()["counts"]["read"] / harness.server.count("/r/all/comments") > 45
    assert gaps and "items/s; lag" in gaps[0], "status shows the stream's rate, lag and the gap while it lasts"
    assert sum(len(p.updates) for p in harness.polls) > 20, "matched posts were re-read for growth meanwhile"
    # Within the budget in every minute, and most polls made no request at all.
    assert harness.most_in_a_minute() <= BUDGET + BUDGET_BURST
    assert harness.api_requests() / 4 < 70
    assert sum(p.idle for p in harness.polls) > 60
    assert "stream comments: " in text and "stream new: " in text and "unfilled gap: none" in text


@pytest.mark.parametrize("backfill_hours, dropped", [(1.0, False), (60 / 3600, True)])
def test_after_a_restart_the_fill_covers_the_downtime_back_to_backfill_hours(site, backfill_hours, dropped):
    harness, comments, posts = site(burst_at=1000, backfill_hours=backfill_hours)
    start = harness.clock.now
    harness.run(30)
    last_read = {listing: harness.cursor(listing)["newest_created"] for listing in ("comments", "new")}
    harness.clock.advance(120)  # the daemon is down for two minutes
    harness.restart()
    restarted = harness.clock.now
    harness.run(120)  # the listings keep up and the fill gets the rest of the budget
    stored = set(harness.stored())
    expected = harness.expected(comments, posts, start)
    assert len(stored) == harness.handed
    counts = harness.cursor()["counts"]
    assert harness.cursor()["gaps"] == []
    if not dropped:
        assert stored == expected
        assert counts["filled"] > 3000 and counts["dropped"] == 0
    else:
        # Only the last 60 s before the restart are read back: the horizon is set when the gap is found.
        horizon = restarted + 1 - 60  # the first poll after the restart, one tick later, finds the gap
        for listing, stream in (("comments", comments), ("new", posts)):
            unread = last_read[listing] + 1e-6
            assert stored >= stream.expected(start, last_read[listing]) | stream.expected(
                horizon + 1, harness.cursor(listing)["newest_created"])
            assert not stored & stream.expected(unread, horizon - 1)
        assert comments.expected(last_read["comments"] + 1e-6, horizon - 1)
        assert counts["dropped"] > 2000


def test_a_first_start_reads_back_backfill_hours_before_its_first_page(site):
    harness, comments, posts = site(burst_at=1000, backfill_hours=60 / 3600)
    start = harness.clock.now
    harness.clock.advance(100)  # Reddit was busy long before the first start: its first pages are full
    harness.run(60)
    horizon = start + 101 - 60  # the first poll finds the gap
    stored = set(harness.stored())
    assert len(stored) == harness.handed
    for listing, stream in (("comments", comments), ("new", posts)):
        assert stored >= stream.expected(horizon + 1, harness.cursor(listing)["newest_created"])
        assert not stored & stream.expected(start, horizon - 1)
        assert harness.cursor(listing)["gaps"] == [] and harness.cursor(listing)["counts"]["dropped"] > 0


def test_the_pace_follows_reddits_ratelimit_headers(site):
    harness, _, _ = site()
    harness.server.ratelimit = {"remaining": "10", "used": "5", "reset": "300"}  # 2 a minute left
    harness.run(60)
    assert harness.api_requests() <= 2 + BUDGET_BURST + 1


def test_a_429_stops_the_stream_until_retry_after_and_nothing_is_lost(site):
    harness, comments, posts = site(burst_at=1000)
    start = harness.clock.now
    harness.run(5)
    harness.server.fail_next("/r/all/comments", status=429, headers={"Retry-After": "20"})
    harness.run(3)
    assert any("rate-limit" in p.failed for p in harness.polls[-3:])
    before = harness.api_requests()
    harness.run(15)
    assert harness.api_requests() == before, "asked again before Retry-After"
    harness.run(40)
    assert set(harness.stored()) == harness.expected(comments, posts, start)


def test_the_daemon_stores_and_emails_a_matching_comment_within_seconds(write_config, smtp, caplog):
    with RedditServer() as server:
        comments = SyntheticStream(kind="t1", clock=time.time, start=time.time(), seconds=60, rate=20,
                                   match_every=100)
        server.add_stream(comments)
        path = write_config({
            "sources": {"reddit": {"client_id": "test-id", "client_secret": "test-secret", "all": True,
                                   "oauth_url": server.url, "reddit_url": server.url}},
            # The deliver job alone would send a minute late: the poll that queued the alert wakes it.
            "email": {"smtp": {"host": "127.0.0.1", "port": smtp.port}, "send_interval": 600},
        })
        config = load_config(path)
        monitor = Monitor.from_config(config)
        scheduler = build_scheduler(monitor)
        started = time.time()
        scheduler.start()
        try:
            wait_for(lambda: smtp.to("oncall@test.local"), timeout=15, what="the alert of a matching comment")
            assert time.time() - started < 10
            # Asked every second, a poll that overruns makes the next tick a no-op: not worth a warning.
            skipped = 'Execution of job "%s" skipped: maximum number of running instances reached (%d)'
            for job_id in ("poll:reddit", "deliver"):
                logging.getLogger("apscheduler.scheduler").warning(skipped, scheduler.get_job(job_id), 1)
            assert [r.args[0].id for r in caplog.records if "running instances" in r.getMessage()] == ["deliver"]
        finally:
            scheduler.shutdown(wait=True)
            monitor.close()

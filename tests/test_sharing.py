"""Two monitors sharing the work through leases on a real PostgreSQL (monitor/sharing.py): feeds split between
them and fetched once, the cursors of a feed taken over mid-poll left to its new holder, each alert sent once
when both deliver at the same moment, and an alert whose sender died sent by the other with its Message-ID.

Both monitors are built from one config on one PostgreSQL store, each with a store (a connection pool) of
its own as two processes would have; the daemons themselves are tested in tests/test_failover.py."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from monitor.app import Monitor
from monitor.config import load_config
from monitor.daemon import once
from monitor.store.leases import Leases
from monitor.sharing import Sharing
from tests.servers.feeds import recent, rss

FEEDS = 30


@pytest.fixture
def engine(leases_engine):
    return leases_engine


@pytest.fixture
def shared_config(write_config, postgres_url):
    """write_config with the store on this test's PostgreSQL database."""
    return lambda overrides: write_config({"store": postgres_url, **overrides})


def serve_feeds(feeds, count: int, *, first: int = 0) -> list[dict]:
    found = []
    for i in range(first, first + count):
        url = feeds.serve(f"/feed/{i}.xml", rss([{
            "title": f"Acme lost my parcel number {i}", "link": f"http://127.0.0.1/post/{i}",
            "description": f"Acme support never answered about order {i}; I want a refund", "guid": f"post-{i}",
            "pubDate": recent(0.1)}]))
        found.append({"url": url, "name": f"feed {i}"})
    return found


def monitors(config_path, *, lease_seconds: float = 30, count: int = 2, clock=None) -> list[Monitor]:
    """Monitors on the config's PostgreSQL store under the names daemon-0, daemon-1..., on ``clock``."""
    config = load_config(config_path)
    built = []
    for i in range(count):
        alone = Monitor.from_config(config)
        assert alone.sharing is not None, "a PostgreSQL store is shared"
        leases = Leases(engine=alone.store.engine, holder=f"daemon-{i}", lease_seconds=lease_seconds, clock=clock)
        leases.heartbeat()
        built.append(Monitor(config=config, store=alone.store, sources=alone.sources, transport=alone.transport,
                             sharing=Sharing(leases=leases)))
    return built


def at_once(*calls):
    """Run the calls in threads released at the same moment; their results in order."""
    start = threading.Barrier(len(calls))
    results = [None] * len(calls)

    def run(i, call):
        start.wait()
        results[i] = call()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def close(*monitors_):
    for m in monitors_:
        for source in m.sources.values():
            source.close()
        m.store.close()


def test_two_monitors_split_the_feeds_and_fetch_each_once(feeds, shared_config):
    config = shared_config({"sources": {"rss": {"feeds": serve_feeds(feeds, FEEDS), "interval": 300}}})
    a, b = monitors(config)
    try:
        first, second = at_once(lambda: a.poll("rss"), lambda: b.poll("rss"))
        assert first.outcome.seen + second.outcome.seen == FEEDS
        assert first.outcome.seen == second.outcome.seen == FEEDS // 2
        assert [feeds.hits(f"/feed/{i}.xml") for i in range(FEEDS)] == [1] * FEEDS
        assert a.store.query("SELECT count(*) AS n FROM mentions")[0]["n"] == FEEDS
        assert len(a.store.source_state("rss")) == FEEDS
        # Nothing is due again this interval, whoever asks: the cursors were read after the claim.
        at_once(lambda: a.poll("rss"), lambda: b.poll("rss"))
        assert sum(feeds.hits(f"/feed/{i}.xml") for i in range(FEEDS)) == FEEDS
    finally:
        close(a, b)


def test_a_feed_taken_over_mid_poll_keeps_its_new_holders_cursor(feeds, shared_config):
    [slow] = serve_feeds(feeds, 1)
    feeds.resources["/feed/0.xml"].delay = 3  # the first poll hangs on it past its lease
    config = shared_config({"sources": {"rss": {"feeds": [slow], "interval": 300, "timeout": 10}}})
    a, b = monitors(config, lease_seconds=1)  # no heartbeat: a's lease runs out during its poll
    try:
        polling = threading.Thread(target=a.poll, args=("rss",))
        polling.start()
        # b takes the feed once a's lease is gone, and reads it at once (answered without delay now).
        threading.Event().wait(1.5)
        feeds.resources["/feed/0.xml"].delay = 0
        taken = b.poll("rss")
        assert taken.outcome is not None and taken.outcome.seen == 1
        after_b = a.store.source_state("rss")[f"feed:{slow['url']}"]
        polling.join()
        assert a.store.source_state("rss")[f"feed:{slow['url']}"] == after_b, "a wrote over b's cursor"
        assert a.store.query("SELECT count(*) AS n FROM mentions")[0]["n"] == 1
    finally:
        close(a, b)


def test_two_monitors_delivering_at_once_send_each_alert_once(feeds, smtp, shared_config):
    config = shared_config({"sources": {"rss": {"feeds": serve_feeds(feeds, FEEDS), "interval": 300}},
                           "email": {"smtp": {"host": "127.0.0.1", "port": smtp.port}, "storm_threshold": 1000}})
    a, b = monitors(config)
    try:
        at_once(lambda: a.poll("rss"), lambda: b.poll("rss"))
        queued = a.store.pending_count()
        assert queued == FEEDS
        for _ in range(3):
            at_once(a.deliver, b.deliver)
        ids = Counter(m["Message-ID"] for _, m in smtp.messages)
        assert len(ids) == queued and set(ids.values()) == {1}
        assert a.store.pending_count() == 0
    finally:
        close(a, b)


def test_an_alert_whose_sender_died_is_sent_by_the_other_after_the_lease(feeds, smtp, shared_config):
    clock_now = [1_000_000.0]
    config = shared_config({"sources": {"rss": {"feeds": serve_feeds(feeds, 3), "interval": 300}},
                           "email": {"smtp": {"host": "127.0.0.1", "port": smtp.port}}})
    a, b = monitors(config, lease_seconds=10, clock=lambda: clock_now[0])
    try:
        a.poll("rss")
        b.poll("rss")  # each polls its share: two feeds and one
        due = a.store.due_alerts(10**12)
        dying = a.sharing.alert_claims()
        assert len(dying.take(due)) == 3  # ... and a dies before sending: its claims are never given back
        assert b.deliver().sent == 0
        clock_now[0] += 11
        assert b.deliver().sent == 3
        expected = {alert.message_id for alert in due}
        assert {m["Message-ID"] for _, m in smtp.messages} == expected
        assert b.deliver().sent == 0 and len(smtp.messages) == 3
    finally:
        close(a, b)


def test_a_job_that_must_run_once_runs_on_one_monitor_per_period(feeds, shared_config):
    config = shared_config({"sources": {"rss": {"feeds": serve_feeds(feeds, 1)}}})
    a, b = monitors(config)
    runs = []
    try:
        jobs = [once(m, "spikes", lambda name=name: runs.append(name), every=300) for m, name in ((a, "a"), (b, "b"))]
        at_once(*jobs)
        at_once(*jobs)
        assert len(runs) == 1
    finally:
        close(a, b)


def test_status_names_each_daemon_and_what_it_holds(engine, postgres_url):
    from monitor.store import Store
    from monitor.sharing import daemons_status, format_daemons
    a = Leases(engine=engine, holder="host-a:101:abc", lease_seconds=30)
    b = Leases(engine=engine, holder="host-b:202:def", lease_seconds=30)
    a.heartbeat()
    b.heartbeat()
    a.claim("job:deliver")
    a.claim_share([f"rss:feed:{i}" for i in range(4)])
    b.claim_share([f"rss:feed:{i}" for i in range(4)])
    b.claim_each(["alert:1", "alert:2"], once=True)
    store = Store(postgres_url)
    daemons = daemons_status(store)
    store.close()
    assert [(d["identity"], d["alive"], d["jobs"], d["units"], d["alerts"]) for d in daemons] == [
        ("host-a:101:abc", True, ["deliver"], {"rss": 2}, 0), ("host-b:202:def", True, [], {"rss": 2}, 2)]
    lines = format_daemons(daemons)
    assert lines[0] == "daemons: 2 running"
    assert lines[1] == "  daemon host-a:101:abc: alive; holds 2 rss; deliver; 0 alerts being sent"


SUBREDDITS = [f"Sub{i}" for i in range(51)]  # two listing groups: r/Sub0+...+Sub49 and r/Sub50
COMPLAINT = "Acme charged me twice and support never answered. I want a refund."


def reddit_config(reddit, shared_config, **settings):
    from tests.conftest import local_sources
    return shared_config({"sources": {"reddit": {**local_sources(reddit, subreddits=SUBREDDITS, feeds=[])["reddit"],
                                                 "interval": 300, **settings}}})


def listing_reads(reddit) -> dict[str, int]:
    first, second = "+".join(SUBREDDITS[:50]), SUBREDDITS[50]
    return {"new group 1": reddit.count(f"/r/{first}/new"), "comments group 1": reddit.count(f"/r/{first}/comments"),
            "new group 2": reddit.count(f"/r/{second}/new"), "comments group 2": reddit.count(f"/r/{second}/comments"),
            "search": reddit.count("/r/all/search")}


def test_two_monitors_split_the_reddit_listings_and_read_each_once_per_interval(reddit, shared_config):
    reddit.add_post(subreddit="Sub0", id="c1", title="Acme double charged me", selftext=COMPLAINT)
    reddit.add_post(subreddit="Sub50", id="c2", title="Acme lost my parcel", selftext=COMPLAINT)
    a, b = monitors(reddit_config(reddit, shared_config, search=True))
    try:
        assert len(a.sources["reddit"].work_units()) == 6  # 2 groups x (new, comments), search, growth
        first, second = at_once(lambda: a.poll("reddit"), lambda: b.poll("reddit"))
        assert first.outcome is not None and second.outcome is not None, "both monitors read a share"
        assert listing_reads(reddit) == dict.fromkeys(listing_reads(reddit), 1)
        assert {r["source_id"] for r in a.store.query("SELECT source_id FROM mentions")} == {"t3_c1", "t3_c2"}
        # Nothing is read again this interval, whoever asks: each listing's cursor says when it was read.
        at_once(lambda: a.poll("reddit"), lambda: b.poll("reddit"))
        a.poll("reddit")
        assert listing_reads(reddit) == dict.fromkeys(listing_reads(reddit), 1)
    finally:
        close(a, b)


def test_listings_polled_at_the_same_moment_lose_no_cursor_nor_growth_schedule_update(reddit, shared_config):
    """Each monitor reads one listing group and tracks the post it found: the growth schedule and the
    subreddit sizes are merged under the row's lock, where a save of each poll's whole copy keeps one."""
    reddit.add_subreddit("Sub0", subscribers=1500)
    reddit.add_subreddit("Sub50", subscribers=2500)
    reddit.add_post(subreddit="Sub0", id="c1", title="Acme double charged me", selftext=COMPLAINT)
    reddit.add_post(subreddit="Sub50", id="c2", title="Acme lost my parcel", selftext=COMPLAINT)
    a, b = monitors(reddit_config(reddit, shared_config, comments=False, track_first_minutes=0.02))
    try:
        # Three units (two listing groups and the growth re-reads), two each at most: one group each.
        at_once(lambda: a.poll("reddit"), lambda: b.poll("reddit"))
        state = a.store.source_state("reddit")
        assert {"new:" + "+".join(SUBREDDITS[:50]), "new:Sub50"} <= set(state)
        assert set(state["tracked"]) == {"t3_c1", "t3_c2"}
        assert state["subscribers"].keys() == {"sub0", "sub50"}
        # Growth re-reads are one unit: both monitors ask when they are due, one re-reads them, once.
        threading.Event().wait(1.5)
        reddit.update_post("c1", score=40)
        reddit.update_post("c2", score=50)
        at_once(lambda: a.poll("reddit"), lambda: b.poll("reddit"))
        tracked = a.store.source_state("reddit")["tracked"]
        assert {name: reads for name, (_, _, reads) in tracked.items()} == {"t3_c1": 1, "t3_c2": 1}
        assert reddit.count("/api/info") == 1
        scores = a.store.query("SELECT m.source_id, s.score FROM snapshots s JOIN mentions m ON m.id = s.mention_id"
                               " WHERE s.score > 1 ORDER BY m.source_id")
        assert [(r["source_id"], r["score"]) for r in scores] == [("t3_c1", 40), ("t3_c2", 50)]
    finally:
        close(a, b)


def test_a_dead_monitors_reddit_listings_are_taken_over_after_the_lease(reddit, shared_config):
    clock_now = [1_000_000.0]
    reddit.add_post(subreddit="Sub0", id="c1", title="Acme double charged me", selftext=COMPLAINT)
    a, b = monitors(reddit_config(reddit, shared_config), lease_seconds=10, clock=lambda: clock_now[0])
    try:
        units = [f"reddit:{key}" for key in a.sources["reddit"].work_units()]
        assert len(a.sharing.leases.claim_share(units, share=len(units))) == len(units)  # ... and a dies
        assert b.poll("reddit").outcome is None and reddit.count("/r/") == 0
        clock_now[0] += 11
        taken = b.poll("reddit")
        assert taken.outcome is not None and taken.outcome.seen == 1
        assert listing_reads(reddit) == {"new group 1": 1, "comments group 1": 1, "new group 2": 1,
                                         "comments group 2": 1, "search": 0}
    finally:
        close(a, b)


def test_a_pause_is_kept_per_oauth_client_and_a_later_one_is_not_cleared(reddit, shared_config):
    """A 429 seen by one monitor holds back the others on the same client; a monitor that saw an older pause
    end does not clear one set meanwhile."""
    reddit.add_post(subreddit="Sub0", id="c1", title="Acme double charged me", selftext=COMPLAINT)
    a, b = monitors(reddit_config(reddit, shared_config, comments=False))
    try:
        reddit.fail_next("/r/" + "+".join(SUBREDDITS[:50]) + "/new", status=429, headers={"Retry-After": "120"})
        reddit.fail_next("/r/Sub50/new", status=429, headers={"Retry-After": "120"})
        at_once(lambda: a.poll("reddit"), lambda: b.poll("reddit"))
        pause = a.store.source_state("reddit")["pause:test-id"]
        assert pause["kind"] == "rate-limit"
        before = reddit.count("/r/")
        waited = b.poll("reddit")  # the listings are due again for b's ticks, but the client waits
        assert any(e.startswith("rate-limit: ") for e in waited.errors) and reddit.count("/r/") == before
        source = a.sources["reddit"]
        later = dict(pause, until=pause["until"] + 600)
        a.store.save_source_state("reddit", {"pause:test-id": later})
        poll = source.poll({**a.store.source_state("reddit"), "pause:test-id": dict(pause, until=0)})
        a.store.save_source_state("reddit", poll.state)
        assert a.store.source_state("reddit")["pause:test-id"] == later
    finally:
        close(a, b)


def test_the_heartbeat_keeps_what_a_daemon_holds_and_a_clean_stop_gives_it_back(engine):
    from monitor.sharing import Heartbeat
    a = Leases(engine=engine, holder="a", lease_seconds=3)
    b = Leases(engine=engine, holder="b", lease_seconds=3)
    with Heartbeat(leases=a):
        assert a.claim("job:deliver")
        threading.Event().wait(4)  # longer than the lease: only the heartbeat keeps it
        assert not b.claim("job:deliver")
        assert b.alive() == ["a"]
    assert b.alive() == [] and b.claim("job:deliver"), "stopped: given back at once, not after expiry"

"""The Reddit adapter against the local Reddit-compatible server, through praw only.

Each test drives RedditSource and the real Pipeline + SQLite store the way the
daemon does (poll, then process, which also applies growth), and asserts exactly what was
stored and how many requests reached the server.
"""

from __future__ import annotations

import logging
import time

import pytest

from monitor.alert import alert_context
from monitor.store import AlertRecord, StoreError
from monitor.config import load_config
from monitor.mail import render
from monitor.pipeline import Pipeline
from monitor.store import Store
from sources.reddit import RedditSettings, RedditSource, reddit_client
from sources.reddit_growth import GrowthSchedule
from tests.servers.reddit import ManualClock, RedditServer

COMPLAINT = "Acme charged me twice and support hung up on me. Still no refund. Furious."


@pytest.fixture
def setup(write_config):
    """make(server, **settings) -> (source, run, store, clock); run() polls, processes, applies growth."""
    stores = []

    def make(server: RedditServer, *, client_secret: str = "test-secret", **overrides):
        config = load_config(write_config())
        store = Store(config.store_path)
        stores.append(store)
        pipeline = Pipeline(config=config, store=store)
        settings = RedditSettings(**{"client_id": "test-id", "client_secret": client_secret,
                                     "user_agent": "complaint-monitor tests", "subreddits": ["CustomerService"],
                                     "oauth_url": server.url, "reddit_url": server.url, "comments": False,
                                     **overrides})
        clock = ManualClock()
        source = RedditSource(settings=settings, reddit=reddit_client(settings), clock=clock,
                              search_terms={b.name: b.terms for b in config.brands})

        def run():
            poll = source.poll(store.source_state("reddit"))
            pipeline.process("reddit", poll)
            return poll

        return source, run, store, clock

    yield make
    for store in stores:
        store.close()


@pytest.fixture
def small_pages():
    with RedditServer(page_size_limit=5) as server:
        yield server


def stored_ids(store: Store) -> set[str]:
    return {r["source_id"] for r in store.query("SELECT source_id FROM mentions")}


def snapshots(store: Store, source_id: str) -> list[tuple[int, int]]:
    # By id, not find_mention: a test damages a row's JSON, which find_mention would refuse to decode.
    [(mention_id,)] = store.query("SELECT id FROM mentions WHERE source = 'reddit' AND source_id = ?", (source_id,))
    return [(s.score, s.comments) for s in store.snapshots(mention_id)]


def test_pages_back_through_a_burst_and_resumes_from_the_stored_cursor(small_pages, setup):
    server = small_pages
    now = time.time()
    for i in range(12):
        server.add_post(subreddit="CustomerService", id=f"a{i}", title=f"Acme problem {i}", selftext=COMPLAINT,
                        created_utc=now - 1000 + i)
    # Older than the first start's backfill window (1 hour): never read.
    server.add_post(subreddit="CustomerService", id="old", title="Acme from yesterday", created_utc=now - 7200)
    _, run, store, _ = setup(server)

    first = run()
    assert {m.source_id for m in first.mentions} == {f"t3_a{i}" for i in range(12)}
    assert stored_ids(store) == {f"t3_a{i}" for i in range(12)}
    # 5 + 5 + 3 (the third page reaches the backfill limit): three pages, chained with `after`.
    new_requests = [p for _, p in server.requests if p.startswith("/r/CustomerService/new")]
    assert len(new_requests) == 3
    assert "after=" not in new_requests[0] and "after=t3_a7" in new_requests[1] and "after=t3_a2" in new_requests[2]
    assert first.failed == {} and "listing:new:CustomerService" in first.succeeded

    for i in range(7):
        server.add_post(subreddit="CustomerService", id=f"b{i}", title=f"Acme again {i}", selftext=COMPLAINT,
                        created_utc=now - 500 + i)
    second = run()
    assert {m.source_id for m in second.mentions} == {f"t3_b{i}" for i in range(7)}
    assert server.count("/r/CustomerService/new") == 3 + 2

    # A restart: a new adapter and praw client, the cursor from the store. Nothing is read twice.
    settings = RedditSettings(client_id="test-id", client_secret="test-secret", subreddits=["CustomerService"],
                              comments=False, oauth_url=server.url, reddit_url=server.url)
    source = RedditSource(settings=settings, reddit=reddit_client(settings))
    again = source.poll(store.source_state("reddit"))
    assert again.mentions == [] and again.failed == {}
    assert server.count("/r/CustomerService/new") == 3 + 2 + 1
    assert stored_ids(store) == {f"t3_a{i}" for i in range(12)} | {f"t3_b{i}" for i in range(7)}


def test_first_start_reads_back_only_backfill_hours(reddit, setup):
    now = time.time()
    reddit.add_post(subreddit="CustomerService", id="recent", title="Acme again", created_utc=now - 20 * 60)
    reddit.add_post(subreddit="CustomerService", id="older", title="Acme before", created_utc=now - 40 * 60)
    _, run, store, _ = setup(reddit, backfill_hours=0.5)
    assert {m.source_id for m in run().mentions} == {"t3_recent"}
    assert stored_ids(store) == {"t3_recent"}


def test_odd_items_are_handled_and_a_broken_one_is_skipped_alone(reddit, setup, caplog):
    now = time.time()
    reddit.add_subreddit("CustomerService", subscribers=250_000)
    reddit.add_post(subreddit="Complaints", id="orig", title="Acme billing nightmare", selftext=COMPLAINT,
                    created_utc=now - 3000)
    reddit.add_post(subreddit="CustomerService", id="xpost", title="Acme billing nightmare (crosspost)",
                    crosspost_parent="t3_orig", url="https://www.reddit.com/r/Complaints/comments/orig/",
                    created_utc=now - 600)
    reddit.add_post(subreddit="CustomerService", id="edited", title="Acme update", selftext=COMPLAINT,
                    edited=now - 60, created_utc=now - 590)
    reddit.add_post(subreddit="CustomerService", id="deleted", title="Acme ruined my week", deleted=True,
                    created_utc=now - 580)
    reddit.add_post(subreddit="CustomerService", id="removed", title="Acme scam exposed", removed=True,
                    created_utc=now - 570)
    reddit.add_post(subreddit="CustomerService", id="nsfw", title="Acme ad was gross", over_18=True,
                    quarantine=True, selftext=COMPLAINT, created_utc=now - 560)
    reddit.add_post(subreddit="CustomerService", id="link", title="Acme recalls kettles after fires",
                    url="https://news.example/acme-recall", created_utc=now - 550)
    # No permalink, no title: what real Reddit never sends, but one such item must not cost the others.
    reddit.add_raw("t3", {"id": "broken", "name": "t3_broken", "subreddit": "CustomerService",
                          "created_utc": now - 555})
    reddit.add_comment(subreddit="CustomerService", id="gone", link_id="t3_edited", body="Acme deleted my reply",
                       removed=True, created_utc=now - 540)
    _, run, store, _ = setup(reddit, comments=True)

    with caplog.at_level(logging.WARNING, logger="complaint_monitor.sources.reddit"):
        poll = run()
    by_id = {m.source_id: m for m in poll.mentions}
    assert set(by_id) == {"t3_xpost", "t3_edited", "t3_deleted", "t3_removed", "t3_nsfw", "t3_link", "t1_gone"}
    assert poll.failed == {}
    assert any("t3_broken" in r.getMessage() for r in caplog.records)

    assert by_id["t3_xpost"].text == COMPLAINT  # what the crosspost carries, from its original
    assert by_id["t3_xpost"].extra["crosspost_parent"] == "t3_orig"
    assert by_id["t3_xpost"].extra["crosspost_from"] == "Complaints"
    assert by_id["t3_edited"].extra["edited_at"] == pytest.approx(now - 60)
    assert by_id["t3_deleted"].author == "[deleted]" and by_id["t3_deleted"].text == ""
    assert by_id["t3_deleted"].extra["gone"] == "deleted"
    assert by_id["t3_removed"].text == "" and by_id["t3_removed"].extra["gone"] == "moderator"
    assert by_id["t3_nsfw"].extra["nsfw"] is True and by_id["t3_nsfw"].extra["quarantined"] is True
    assert by_id["t3_link"].text == "" and by_id["t3_link"].extra["link_url"] == "https://news.example/acme-recall"
    assert by_id["t1_gone"].text == "" and by_id["t1_gone"].author == "[deleted]"
    assert by_id["t3_link"].reach == 250_000  # the post itself says how big its subreddit is
    # Everything naming Acme in its title is stored; the comment's text is gone, so nothing names the brand.
    assert stored_ids(store) == {"t3_xpost", "t3_edited", "t3_deleted", "t3_removed", "t3_nsfw", "t3_link"}


def test_429_waits_for_retry_after_and_skips_the_rest_of_the_poll(reddit, setup):
    reddit.add_post(subreddit="CustomerService", id="c1", title="Acme double charged me", selftext=COMPLAINT,
                    created_utc=time.time() - 60)
    _, run, store, clock = setup(reddit, comments=True, search=True)
    reddit.fail_next("/r/CustomerService/new", status=429, headers={"Retry-After": "120"})

    limited = run()
    assert set(limited.failed) == {"rate-limit"} and "120s" in limited.failed["rate-limit"]
    assert reddit.count("/r/CustomerService/new") == 1  # prawcore does not retry a 429
    assert reddit.count("/r/CustomerService/comments") == 0 and reddit.count("/r/all/search") == 0
    pause = store.source_state("reddit")["pause:test-id"]
    assert pause["kind"] == "rate-limit" and pause["until"] == pytest.approx(clock.now + 120)

    clock.advance(119)
    before = len(reddit.requests)
    waiting = run()
    assert len(reddit.requests) == before  # not one request before Retry-After has passed
    assert set(waiting.failed) == {"rate-limit"} and waiting.mentions == []

    clock.advance(2)
    resumed = run()
    assert resumed.failed == {} and "rate-limit" in resumed.succeeded
    assert {m.source_id for m in resumed.mentions} == {"t3_c1"}
    assert reddit.count("/r/CustomerService/new") == 2 and reddit.count("/r/CustomerService/comments") == 1
    assert reddit.count("/r/all/search") == 1
    assert stored_ids(store) == {"t3_c1"}


def test_500s_fail_one_listing_and_the_others_go_on(reddit, setup):
    now = time.time()
    reddit.add_post(subreddit="CustomerService", id="c1", title="Acme double charged me", created_utc=now - 60)
    reddit.add_comment(subreddit="CustomerService", id="k1", link_id="t3_c1", body="Same here with Acme",
                       created_utc=now - 30)
    _, run, store, _ = setup(reddit, comments=True)
    # prawcore tries a 5xx three times with jittered sleeps; all three fail here.
    reddit.fail_next("/r/CustomerService/new", status=500, count=3)

    poll = run()
    assert set(poll.failed) == {"listing:new:CustomerService"}
    assert "ServerError" in poll.failed["listing:new:CustomerService"]
    assert "listing:comments:CustomerService" in poll.succeeded
    assert reddit.count("/r/CustomerService/new") == 3 and reddit.count("/r/CustomerService/comments") == 1
    assert stored_ids(store) == {"t1_k1"}
    assert "new:CustomerService" not in store.source_state("reddit")  # so the next poll reads it whole

    # One 500, then prawcore's retry succeeds: the listing counts as read.
    reddit.fail_next("/r/CustomerService/new", status=500, count=1)
    recovered = run()
    assert recovered.failed == {} and {m.source_id for m in recovered.mentions} == {"t3_c1"}
    assert reddit.count("/r/CustomerService/new") == 3 + 2
    assert stored_ids(store) == {"t1_k1", "t3_c1"}


def test_a_listing_that_times_out_is_reported_and_the_others_are_read(reddit, setup):
    now = time.time()
    reddit.add_post(subreddit="CustomerService", id="c1", title="Acme double charged me", created_utc=now - 60)
    reddit.add_comment(subreddit="CustomerService", id="k1", link_id="t3_c1", body="Same here with Acme",
                       created_utc=now - 30)
    _, run, store, _ = setup(reddit, comments=True, timeout=0.4)
    reddit.slow_next("/r/CustomerService/comments", delay=1.0, count=3)

    poll = run()
    assert set(poll.failed) == {"listing:comments:CustomerService"}
    assert "timed out" in poll.failed["listing:comments:CustomerService"]
    assert reddit.count("/r/CustomerService/comments") == 3
    assert stored_ids(store) == {"t3_c1"}

    later = run()  # the server answers in time again: the comment is not lost
    assert later.failed == {} and {m.source_id for m in later.mentions} == {"t1_k1"}
    assert stored_ids(store) == {"t3_c1", "t1_k1"}


def test_an_expired_token_is_renewed(reddit, setup):
    reddit.add_post(subreddit="CustomerService", id="c1", title="Acme double charged me",
                    created_utc=time.time() - 60)
    _, run, store, _ = setup(reddit)
    assert {m.source_id for m in run().mentions} == {"t3_c1"}
    assert reddit.count("/api/v1/access_token") == 1

    reddit.expire_tokens()
    reddit.add_post(subreddit="CustomerService", id="c2", title="Acme again", created_utc=time.time() - 30)
    poll = run()
    assert poll.failed == {} and {m.source_id for m in poll.mentions} == {"t3_c2"}
    # The 401 made prawcore drop the token, fetch a new one and repeat the request.
    assert reddit.count("/api/v1/access_token") == 2
    assert reddit.count("/r/CustomerService/new") == 3
    assert stored_ids(store) == {"t3_c1", "t3_c2"}


def test_bad_credentials_give_one_error_and_the_source_waits(reddit, setup, caplog):
    reddit.add_post(subreddit="CustomerService", id="c1", title="Acme", created_utc=time.time() - 60)
    _, run, store, clock = setup(reddit, client_secret="wrong")
    with caplog.at_level(logging.WARNING, logger="complaint_monitor.sources.reddit"):
        first = run()
        assert set(first.failed) == {"credentials"} and "HTTP 401" in first.failed["credentials"]
        assert reddit.count() == 1  # one token request, then nothing
        assert store.source_state("reddit")["pause:test-id"]["wait"] == 60

        waiting = run()
        assert set(waiting.failed) == {"credentials"} and reddit.count() == 1

        clock.advance(70)
        again = run()
        assert set(again.failed) == {"credentials"} and reddit.count() == 2
        assert store.source_state("reddit")["pause:test-id"]["wait"] == 120  # the wait doubles
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "client_id and client_secret" in errors[0].getMessage()
    assert stored_ids(store) == set()


def test_growing_post_is_reread_on_a_slowing_schedule_and_snapshotted(reddit, setup):
    now = time.time()
    reddit.add_subreddit("CustomerService", subscribers=250_000)
    reddit.add_post(subreddit="CustomerService", id="c1", title="Acme double charged me", selftext=COMPLAINT,
                    created_utc=now - 60, score=3, num_comments=1)
    reddit.add_post(subreddit="CustomerService", id="cat", title="My cat", selftext="Cute.", created_utc=now - 50)
    # A comment's subreddit size is not in the comment: asked once, then cached.
    reddit.add_subreddit("Kettles", subscribers=4_000)
    reddit.add_comment(subreddit="Kettles", id="k1", link_id="t3_x", body="Acme kettles leak", created_utc=now - 40)
    _, run, store, clock = setup(reddit, comments=True, subreddits=["CustomerService", "Kettles"])

    first = run()
    assert first.updates == [] and first.failed == {}
    assert stored_ids(store) == {"t3_c1", "t1_k1"}
    assert store.find_mention("reddit", "t1_k1").reach == 4_000
    assert store.find_mention("reddit", "t3_c1").reach == 250_000
    assert reddit.count("/api/info") == 1  # sr_name=kettles, once
    assert list(store.source_state("reddit")["tracked"]) == ["t3_c1"]  # the cat post names no brand

    reddit.update_post("c1", score=900, num_comments=240, upvote_ratio=0.97, total_awards_received=3)
    clock.advance(299)
    assert run().updates == [] and reddit.count("/api/info") == 1  # not due before 5 minutes

    clock.advance(2)
    grown = run()
    assert [(u.source_id, u.engagement.score, u.engagement.comments, u.reach) for u in grown.updates] == [
        ("t3_c1", 900, 240, 250_000)]
    assert reddit.count("/api/info") == 2 and "id=t3_c1" in reddit.requests[-1][1]
    assert snapshots(store, "t3_c1") == [(3, 1), (900, 240)]
    row = store.find_mention("reddit", "t3_c1")
    assert (row.score, row.comments, row.awards) == (900, 240, 3)

    clock.advance(301)  # the second gap is 10 minutes
    assert run().updates == [] and reddit.count("/api/info") == 2
    clock.advance(300)
    # The subreddit grew meanwhile: the re-read's reach is stored too, not only used for its scores.
    reddit.update_post("c1", score=1500, num_comments=400, subreddit_subscribers=260_000)
    assert [(u.engagement.score, u.reach) for u in run().updates] == [(1500, 260_000)]
    assert snapshots(store, "t3_c1") == [(3, 1), (900, 240), (1500, 400)]
    assert reddit.count("/api/info") == 3
    assert store.find_mention("reddit", "t3_c1").reach == 260_000

    # Gone from Reddit: it stops being tracked; past track_hours nothing is tracked either.
    reddit.remove("t3_c1")
    clock.advance(1200)
    assert run().updates == [] and store.source_state("reddit")["tracked"] == {}
    assert reddit.count("/api/info") == 4


def test_an_edit_seen_on_a_reread_is_stored_and_scored_but_a_deletion_keeps_what_was_said(reddit, setup):
    now = time.time()
    reddit.add_post(subreddit="CustomerService", id="e1", title="New kettle",
                    selftext="My Acme kettle arrived today.", created_utc=now - 60, score=3, num_comments=1)
    _, run, store, clock = setup(reddit)
    run()
    first = store.find_mention("reddit", "t3_e1")
    alerts_before = store.query("SELECT priority FROM alerts WHERE mention_id = ?", (first.id,))

    edited = "Edit: it caught fire in my kitchen. My lawyer will hear about this, Acme."
    reddit.update_post("e1", selftext=edited, edited=now + 200, score=5)
    clock.advance(301)
    assert [u.source_id for u in run().updates] == ["t3_e1"]
    row = store.find_mention("reddit", "t3_e1")
    assert row.text == edited and "lawyer" in row.quote
    extra = row.extra
    assert extra["first_text"] == "My Acme kettle arrived today." and extra["edited_at"] == pytest.approx(now + 200)
    assert "legal-or-safety" in {r["name"] for r in row.reasons}
    assert row.urgency > first.urgency and row.compound < first.compound
    alerts = store.query("SELECT priority FROM alerts WHERE mention_id = ? ORDER BY priority", (row.id,))
    assert alerts_before == [] and not first.is_complaint  # a kettle that arrived is no complaint: no alert
    assert row.is_complaint and alerts[0]["priority"] <= "P3"  # the edit made it one: an alert
    alert = AlertRecord.from_row(store.query("SELECT * FROM alerts WHERE mention_id = ? ORDER BY priority",
                                             (row.id,))[0])
    text, html = render("alert", alert_context(store, alert, row))
    assert "edited by its author since first read" in text and "As first read:\nMy Acme kettle arrived today." in text
    assert "As first read (edited by its author since)" in html and "My Acme kettle arrived today." in html

    reddit.update_post("e1", selftext="[deleted]", score=6)
    clock.advance(601)
    assert [u.source_id for u in run().updates] == ["t3_e1"]
    row = store.find_mention("reddit", "t3_e1")
    assert row.text == edited and row.score == 6  # deleted since: the evidence stays


def test_a_reread_whose_snapshot_was_not_stored_is_read_again(reddit, setup):
    # The growth schedule in the source's state counts a re-read as done, so that state may only be
    # saved together with the snapshot; otherwise a crash (or a failed write) in between loses the reading.
    now = time.time()
    reddit.add_post(subreddit="CustomerService", id="c1", title="Acme double charged me", selftext=COMPLAINT,
                    created_utc=now - 60, score=3, num_comments=1)
    _, run, store, clock = setup(reddit)
    run()
    reddit.update_post("c1", score=900, num_comments=240)
    clock.advance(301)
    # A real write failure, from SQLite itself, for the snapshot only.
    store.query("CREATE TEMP TRIGGER disk_trouble BEFORE INSERT ON snapshots BEGIN SELECT RAISE(ABORT, 'disk trouble'); END")
    with pytest.raises(StoreError, match="disk trouble"):
        run()
    store.query("DROP TRIGGER disk_trouble")
    assert snapshots(store, "t3_c1") == [(3, 1)]

    assert [u.engagement.score for u in run().updates] == [900]  # still due, so read again
    assert snapshots(store, "t3_c1") == [(3, 1), (900, 240)]
    assert reddit.count("/api/info") == 2


def test_a_stored_post_that_cannot_be_rescored_stops_neither_the_others_nor_the_cursor(reddit, setup, caplog):
    now = time.time()
    for post_id in ("c1", "c2"):
        reddit.add_post(subreddit="CustomerService", id=post_id, title=f"Acme double charged me {post_id}",
                        selftext=COMPLAINT, created_utc=now - 60, score=3, num_comments=1)
    _, run, store, clock = setup(reddit)
    run()
    store.query("UPDATE mentions SET extra = 'not json' WHERE source_id = 't3_c1'")  # a damaged row
    reddit.update_post("c1", score=900, num_comments=240)
    reddit.update_post("c2", score=700, num_comments=50)
    reddit.add_post(subreddit="CustomerService", id="c3", title="Acme again", selftext=COMPLAINT, created_utc=now)
    clock.advance(301)

    with caplog.at_level(logging.ERROR, logger="complaint_monitor.pipeline"):
        assert sorted(u.source_id for u in run().updates) == ["t3_c1", "t3_c2"]
    assert [r.getMessage() for r in caplog.records] == [
        "could not apply new numbers to reddit t3_c1 (https://www.reddit.com/r/CustomerService/comments/c1/post/)"]
    assert snapshots(store, "t3_c1") == [(3, 1)]
    assert snapshots(store, "t3_c2") == [(3, 1), (700, 50)]
    assert stored_ids(store) == {"t3_c1", "t3_c2", "t3_c3"}
    assert store.source_state("reddit")["new:CustomerService"]["ids"] == ["t3_c3"]


def test_growth_schedule_is_bounded_in_age_and_count():
    schedule = GrowthSchedule({}, hours=24, first_interval=300, max_interval=3600, max_posts=2)
    now = 1_000_000.0
    schedule.track("t3_old", now - 25 * 3600, now)  # already past its window: never tracked
    for i, age in enumerate((3 * 3600, 2 * 3600, 3600)):
        schedule.track(f"t3_{i}", now - age, now)
    schedule.prune(now)
    assert set(schedule.tracked) == {"t3_1", "t3_2"}  # over the cap, the oldest goes first
    intervals = []
    for _ in range(6):
        due = schedule.tracked["t3_2"][1]
        intervals.append(due - now)
        now = due
        schedule.reread("t3_2", now)
    assert intervals == [300, 600, 1200, 2400, 3600, 3600]
    schedule.prune(now + 24 * 3600)
    assert schedule.tracked == {}

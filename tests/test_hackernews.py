"""The Hacker News source against a local server speaking Algolia's HN search API.

Each test drives HackerNewsSource and the real Pipeline + SQLite store the way the daemon does
(poll, then process) and asserts exactly what was stored and what reached the server.
"""

from __future__ import annotations

import pytest

from monitor.store import Store
from sources.api_poll import make_client
from sources.hackernews import HackerNewsSettings, HackerNewsSource
from tests.servers.hackernews import HackerNewsServer
from tests.servers.reddit import ManualClock
from tests.source_harness import runner  # noqa: F401 - the fixture

COMPLAINT = "Acme charged me twice and support hung up on me. Still no refund. Furious."


@pytest.fixture
def hn():
    with HackerNewsServer() as server:
        yield server


@pytest.fixture
def setup(runner):
    """setup(server, clock, **settings) -> run(); each call builds a new source and store: a restart."""

    def make(server: HackerNewsServer, clock: ManualClock, **overrides):
        client = make_client(timeout=overrides.pop("timeout", 5), user_agent="complaint-monitor tests")
        settings = HackerNewsSettings(api_url=f"{server.url}/api/v1", **overrides)
        return runner("hackernews", lambda terms: HackerNewsSource(settings=settings, client=client, clock=clock,
                                                                   search_terms=terms))

    return make


def stored(store: Store) -> list[tuple]:
    return sorted((r["source_id"], r["kind"], r["title"], r["author"], r["place"], r["url"])
                  for r in store.query("SELECT * FROM mentions"))


def test_new_stories_and_comments_are_matched_stored_and_the_cursor_survives_a_restart(hn, setup):
    clock = ManualClock()
    now = clock.now
    hn.add_story(1, title="Ask HN: Acme billed me twice", text=f"<p>{COMPLAINT}</p>", created=now - 600, points=12,
                 num_comments=3, url="https://example.com/acme?utm_source=hn")
    hn.add_story(2, title="Show HN: a Rust parser", created=now - 500)
    hn.add_comment(3, story_id=2, text="Unrelated, but <i>Acme</i> support never answers me", created=now - 400)
    hn.add_comment(4, story_id=2, text="Nice work on the parser", created=now - 300)
    hn.add_story(5, title="Acme outage from last week", created=now - 2 * 3600)  # before the 1 h backfill
    poll = setup(hn, clock)()
    assert not poll.failed
    assert [m.source_id for m in poll.mentions] == ["4", "3", "2", "1"]  # every new item goes to the matcher

    # A restart: a new source and store on the same file resume from the stored cursor.
    clock.advance(60)
    hn.requests.clear()
    hn.add_comment(6, story_id=1, text="Same here, Acme refunded nobody", created=clock.now - 30)
    # Indexed late: made before the cursor, but within index_lag, so it is still found.
    hn.add_comment(7, story_id=1, text="Acme did it to me too", created=now - 350)
    run = setup(hn, clock)
    poll = run()
    assert sorted(m.source_id for m in poll.mentions) == ["6", "7"]
    path, query = hn.requests[0]
    assert path == "/api/v1/search_by_date" and query["tags"] == ["(story,comment)"]
    assert query["numericFilters"] == [f"created_at_i>{int(now - 300 - 300)}"]  # cursor - index_lag
    assert stored(run.store) == [
        ("1", "post", "Ask HN: Acme billed me twice", "pg", "Hacker News", "https://news.ycombinator.com/item?id=1"),
        ("3", "comment", "", "dang", "Hacker News", "https://news.ycombinator.com/item?id=3"),
        ("6", "comment", "", "dang", "Hacker News", "https://news.ycombinator.com/item?id=6"),
        ("7", "comment", "", "dang", "Hacker News", "https://news.ycombinator.com/item?id=7"),
    ]
    story = run.store.find_mention("hackernews", "1")
    assert (story.score, story.comments) == (12, 3)
    assert COMPLAINT in story.text
    comment = run.store.find_mention("hackernews", "3")
    assert comment.text == "Unrelated, but Acme support never answers me"


def test_a_burst_larger_than_a_page_is_read_whole(setup):
    clock = ManualClock()
    with HackerNewsServer(page_size_limit=5) as server:
        for i in range(1, 13):
            server.add_story(i, title=f"Acme problem {i}", created=clock.now - 100 + i)
        run = setup(server, clock)
        poll = run()
        assert sorted(int(m.source_id) for m in poll.mentions) == list(range(1, 13))
        assert len(server.requests) == 3  # three windows of new items (5, 5, 2); no re-read is due yet
        assert len(run.store.query("SELECT id FROM mentions")) == 12


def test_429_waits_for_retry_after_and_asks_nothing_before(hn, setup):
    clock = ManualClock()
    hn.add_story(1, title="Acme lost my order", created=clock.now - 60)
    run = setup(hn, clock)
    hn.fail_next(429, retry_after=120)
    poll = run()
    assert "429" in poll.failed["api"] and not poll.mentions
    clock.advance(60)
    asked = len(hn.requests)
    poll = run()
    assert len(hn.requests) == asked  # still inside Retry-After: not a single request
    assert "waiting until" in poll.failed["api"]
    clock.advance(61)
    poll = run()
    assert not poll.failed and poll.succeeded == ["api"]
    assert [r["source_id"] for r in run.store.query("SELECT source_id FROM mentions")] == ["1"]


def test_5xx_and_timeouts_back_off_and_keep_the_cursor(hn, setup):
    clock = ManualClock()
    hn.add_story(1, title="Acme lost my order", created=clock.now - 60)
    run = setup(hn, clock, timeout=0.3, interval=60)
    hn.fail_next(502)
    poll = run()
    assert poll.failed["api"].startswith("ApiFault: HTTP 502") and "cursor" not in poll.state
    clock.advance(60)
    hn.hang_next()
    poll = run()
    assert "Timeout" in poll.failed["api"]
    clock.advance(60)  # the second failure waits twice the interval
    assert "waiting until" in run().failed["api"]
    clock.advance(60)
    poll = run()
    assert not poll.failed and [m.source_id for m in poll.mentions] == ["1"]


def test_stories_naming_a_brand_are_reread_for_growth(hn, setup):
    clock = ManualClock()
    hn.add_story(1, title="Acme deleted my account", created=clock.now - 60, points=2, num_comments=0)
    hn.add_story(2, title="Show HN: a Rust parser", created=clock.now - 60, points=2)
    run = setup(hn, clock)
    run()
    hn.items["1"].update(points=150, num_comments=40)
    clock.advance(5 * 60)
    hn.requests.clear()
    poll = run()
    assert [m.source_id for m in poll.updates] == ["1"]
    path, query = hn.requests[1]
    assert path == "/api/v1/search" and query["tags"] == ["story,(story_1)"]
    row = run.store.find_mention("hackernews", "1")
    assert [(s.score, s.comments) for s in run.store.snapshots(row.id)] == [(2, 0), (150, 40)]
    assert (row.score, row.comments) == (150, 40)

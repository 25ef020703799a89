"""The Bluesky source against a local Jetstream (a real WebSocket) and a local AppView, both on 127.0.0.1."""

from __future__ import annotations

from functools import partial

import pytest
from websockets.sync.client import connect

from monitor.store import Store
from sources.api_poll import make_client
from sources.bluesky import BlueskySettings, BlueskySource
from tests.servers.bluesky import AppViewServer, JetstreamServer
from tests.servers.reddit import ManualClock
from tests.source_harness import runner  # noqa: F401 - the fixture

COMPLAINT = "Acme charged me twice and support hung up on me. Still no refund. Furious."


@pytest.fixture
def servers():
    with JetstreamServer() as jetstream, AppViewServer() as appview:
        yield jetstream, appview


@pytest.fixture
def setup(runner, servers):
    """setup(clock, **settings) -> run(); each call builds a new source and store: a restart."""
    jetstream, appview = servers

    def make(clock: ManualClock, **overrides):
        settings = BlueskySettings(jetstream_url=jetstream.url, appview_url=appview.url,
                                   **{"idle_timeout": 0.3, "timeout": 5, **overrides})
        return runner("bluesky", lambda terms: BlueskySource(
            settings=settings, client=make_client(timeout=5, user_agent="tests"), clock=clock, search_terms=terms,
            connect=partial(connect, open_timeout=5, proxy=None)))

    return make


def us(seconds: float) -> int:
    return int(seconds * 1_000_000)


def stored(store: Store) -> list[tuple]:
    return sorted((r["source_id"], r["kind"], r["author"], r["place"], r["url"], r["reach"])
                  for r in store.query("SELECT * FROM mentions"))


def test_firehose_posts_are_matched_stored_and_the_cursor_survives_a_restart(servers, setup):
    jetstream, appview = servers
    clock = ManualClock()
    start = clock.now
    jetstream.add_post(did="did:plc:old", rkey="0", text="Acme before we started", time_us=us(start - 10))
    a = jetstream.add_post(did="did:plc:bob", rkey="1", text=COMPLAINT, time_us=us(start + 0.1) - us(0.2))
    appview.add_profile("did:plc:bob", handle="bob.bsky.social", followers=1200)
    # The first start reads from the moment it starts (backfill_minutes 0): the older post is not read.
    jetstream_cursor = us(start)
    first = setup(clock)
    poll = first()
    assert not poll.failed, poll.failed
    assert jetstream.cursors == [jetstream_cursor] and [m.source_id for m in poll.mentions] == []

    clock.advance(1)
    poll = first()
    assert [m.source_id for m in poll.mentions] == []  # the events above are before the first cursor

    # Posts made while the monitor is down are read after a restart, from the stored cursor on.
    down = us(clock.now)
    b = jetstream.add_post(did="did:plc:bob", rkey="3", text="Acme, answer me please", time_us=down + 10,
                           reply=True, link="https://acme.test/help?utm_source=bsky")
    jetstream.add_event({"did": "did:plc:bob", "time_us": down + 12, "kind": "commit",
                         "commit": {"operation": "create", "collection": "app.bsky.feed.like", "rkey": "x"}})
    jetstream.add_event({"kind": "identity", "did": "did:plc:eve", "time_us": down + 14})
    jetstream.add_event({"kind": "commit", "time_us": down + 16, "commit": {"operation": "create"}})  # no did
    jetstream.add_post(did="did:plc:eve", rkey="4", text="Nothing to see", time_us=down + 20)
    clock.advance(1)
    run = setup(clock)
    poll = run()
    assert jetstream.cursors[-1] == jetstream.cursors[-2]  # nothing was read in between: the same place
    assert [m.source_id for m in poll.mentions] == [b, "at://did:plc:eve/app.bsky.feed.post/4"]
    assert poll.state["cursor"] == down + 21
    assert stored(run.store) == [
        (b, "comment", "bob.bsky.social", "Bluesky", "https://bsky.app/profile/did:plc:bob/post/3", 1200.0)]
    assert run.store.find_mention("bluesky", b).text == "Acme, answer me please"
    assert a not in {r[0] for r in stored(run.store)}


def test_posts_naming_a_brand_are_reread_for_likes_and_reposts(servers, setup):
    jetstream, appview = servers
    clock = ManualClock()
    run = setup(clock)
    run()
    uri = jetstream.add_post(did="did:plc:bob", rkey="9", text=COMPLAINT, time_us=us(clock.now) + 5)
    clock.advance(1)
    run()
    appview.add_view(uri, text=COMPLAINT, likes=300, reposts=40, quotes=10, replies=25)
    clock.advance(5 * 60)
    poll = run()
    assert [(m.source_id, m.engagement.score, m.engagement.comments) for m in poll.updates] == [(uri, 350, 25)]
    row = run.store.find_mention("bluesky", uri)
    assert [(s.score, s.comments) for s in run.store.snapshots(row.id)][-1] == (350, 25)


def test_a_refused_connection_429_waits_and_keeps_the_cursor(servers, setup):
    jetstream, _ = servers
    clock = ManualClock()
    run = setup(clock)
    run()
    cursor = run.store.source_state("bluesky")["cursor"]
    jetstream.refuse_next(429, retry_after=120)
    clock.advance(60)
    poll = run()
    assert "429" in poll.failed["jetstream"] and run.store.source_state("bluesky")["cursor"] == cursor
    clock.advance(60)
    connections = len(jetstream.cursors)
    assert "waiting until" in run().failed["jetstream"] and len(jetstream.cursors) == connections
    uri = jetstream.add_post(did="did:plc:bob", rkey="5", text=COMPLAINT, time_us=cursor + 1)
    clock.advance(61)
    poll = run()
    assert not poll.failed and [m.source_id for m in poll.mentions] == [uri]
    assert jetstream.cursors[-1] == cursor


def test_a_stream_closed_midway_keeps_what_was_read_and_resumes_after_it(servers, setup):
    jetstream, _ = servers
    clock = ManualClock()
    run = setup(clock)
    run()
    cursor = run.store.source_state("bluesky")["cursor"]
    uris = [jetstream.add_post(did="did:plc:bob", rkey=str(i), text=f"Acme problem {i}", time_us=cursor + i)
            for i in range(3)]
    jetstream.close_after = 2
    clock.advance(1)
    poll = run()
    assert not poll.failed and [m.source_id for m in poll.mentions] == uris[:2]
    jetstream.close_after = None
    clock.advance(1)
    assert [m.source_id for m in run().mentions] == uris[2:]
    assert jetstream.cursors[-1] == cursor + 2


def test_a_jetstream_that_cannot_be_reached_is_reported_and_retried_later(setup, runner):
    clock = ManualClock()
    settings = BlueskySettings(jetstream_url="ws://127.0.0.1:9", appview_url="http://127.0.0.1:9", timeout=1)
    run = runner("bluesky", lambda terms: BlueskySource(
        settings=settings, client=make_client(timeout=1, user_agent="tests"), clock=clock,
        connect=partial(connect, open_timeout=1, proxy=None)))
    poll = run()
    assert "jetstream" in poll.failed and "backoff:jetstream" in poll.state

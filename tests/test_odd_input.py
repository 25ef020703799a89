"""Odd input seen in real data: nothing it carries may cost a mention, or the other items of its poll.

Reddit items come from the local Reddit-compatible server through praw, feeds from the local feed
server; everything goes through the real pipeline into a real SQLite store.
"""

from __future__ import annotations

import json
import logging
import time

import pytest

from monitor.config import load_config
from monitor.pipeline import Pipeline
from monitor.store import Store
from sources.rss import RssSettings, RssSource, client_factory
from tests.servers.feeds import rss
from tests.servers.reddit import RawJson
from tests.test_reddit import setup  # noqa: F401 - the Reddit source and pipeline fixture, shared

COMPLAINT = "Acme charged me twice and support hung up on me. Still no refund. Furious."


@pytest.fixture
def store_and_pipeline(write_config):
    made = []

    def make(overrides: dict | None = None):
        config = load_config(write_config(overrides))
        store = Store(config.store_path)
        made.append(store)
        return config, store, Pipeline(config=config, store=store)

    yield make
    for store in made:
        store.close()


def stored(store: Store) -> dict:
    return {r["source_id"]: r for r in store.query("SELECT * FROM mentions")}


# -- 1: lone surrogates --------------------------------------------------------

def test_lone_surrogates_from_reddit_are_stored_with_a_replacement_character(reddit, setup):
    now = time.time()
    reddit.add_post(subreddit="CustomerService", id="half", title="Acme \ud83d broke my order",
                    selftext="Still no refund \ud83d", author="emoji\udc00fan", created_utc=now - 60)
    reddit.add_post(subreddit="CustomerService", id="pair", title="Acme again \ud83d\ude21", created_utc=now - 50)
    reddit.add_comment(subreddit="CustomerService", id="k1", link_id="t3_half", body="Acme did it to me \ud83d",
                       created_utc=now - 40)

    _, run, store, _ = setup(reddit, comments=True)
    run()

    rows = stored(store)
    assert rows["t3_half"]["title"] == "Acme \ufffd broke my order"
    assert rows["t3_half"]["text"] == "Still no refund \ufffd" and rows["t3_half"]["author"] == "emoji\ufffdfan"
    assert rows["t3_pair"]["title"] == "Acme again \U0001f621"  # two halves of one emoji make the emoji
    assert rows["t1_k1"]["text"] == "Acme did it to me \ufffd"


def test_surrogate_character_references_in_a_feed_cost_no_entry(feeds, store_and_pipeline):
    body = rss([{"title": "Acme &#xD83D; lost my parcel", "link": "https://shop.example/1", "guid": "g1",
                 "description": "Acme &#55357; again &#xD83D;&#xDE21;", "author": "a&#xDC00;b"},
                {"title": "Acme refund still missing", "link": "https://shop.example/2", "guid": "g2",
                 "description": "Nothing odd here"}]).replace("&amp;#", "&#")
    url = feeds.serve("/surrogates.xml", body)
    _, store, pipeline = store_and_pipeline()
    source = RssSource(settings=RssSettings(feeds=[{"url": url}]), client_factory=client_factory(RssSettings()))
    try:
        poll = source.poll(store.source_state("rss"))
        pipeline.process("rss", poll)
    finally:
        source.close()

    assert poll.failed == {}
    rows = {r["title"]: r for r in store.query("SELECT * FROM mentions")}
    assert set(rows) == {"Acme \ufffd lost my parcel", "Acme refund still missing"}
    assert rows["Acme \ufffd lost my parcel"]["text"] == "Acme \ufffd again \U0001f621"
    assert rows["Acme \ufffd lost my parcel"]["author"] == "a\ufffdb"


# -- 2: malformed Reddit items ------------------------------------------------

def _nested_replies(depth: int, now: float) -> RawJson:
    """A reply tree ``depth`` comments deep, as JSON text (Python's json cannot encode it that deep)."""
    reply = '""'
    for level in range(depth):
        data = {"id": f"deep{level}", "name": f"t1_deep{level}", "body": "me too", "author": "x",
                "subreddit": "CustomerService", "link_id": "t3_p1", "parent_id": "t3_p1", "created_utc": now - 100,
                "permalink": f"/r/CustomerService/comments/p1/post/deep{level}/", "score": 1}
        reply = ('{"kind": "Listing", "data": {"after": null, "before": null, "children": [{"kind": "t1", "data": '
                 + json.dumps(data)[:-1] + ', "replies": ' + reply + '}}]}}')
    return RawJson(reply)


def test_a_malformed_item_costs_only_itself_and_odd_fields_cost_no_mention(reddit, setup, caplog):
    now = time.time()
    reddit.add_post(subreddit="CustomerService", id="p1", title="Acme lost my bags", selftext=COMPLAINT,
                    created_utc=now - 300)
    # A comment whose reply tree is 300 deep: praw builds it recursively.
    deep = reddit.add_comment(subreddit="CustomerService", id="k1", link_id="t3_p1", body="Acme is the worst",
                              created_utc=now - 200)
    deep["replies"] = _nested_replies(300, now)
    # A key no Python object may take as an attribute.
    dunder = reddit.add_comment(subreddit="CustomerService", id="k2", link_id="t3_p1", body="Acme again",
                                created_utc=now - 190)
    dunder["__class__"] = "evil"
    # Optional fields of the wrong type: coerced, or dropped; the mention stays.
    reddit.add_post(subreddit="CustomerService", id="p2", title="Acme overcharged me", score="12",
                    num_comments="three", edited="yes", created_utc=now - 180)
    reddit.add_post(subreddit="CustomerService", id="p3", title="Acme from the future", created_utc=1e20)
    reddit.add_post(subreddit="CustomerService", id="p4", title="Acme made me wait", created_utc=now - 170)

    _, run, store, clock = setup(reddit, comments=True)
    with caplog.at_level(logging.WARNING, logger="complaint_monitor.sources.reddit"):
        first = run()

    rows = stored(store)
    assert set(rows) >= {"t3_p1", "t1_k1", "t1_k2", "t3_p2", "t3_p3", "t3_p4"}
    assert first.failed == {}
    assert rows["t3_p2"]["score"] == 12 and rows["t3_p2"]["comments"] is None
    assert rows["t3_p3"]["created_at"] <= time.time()  # a date in the future is taken as now

    # The cursor did not jump to the year 3e12: what comes next is read. The growth re-read of the odd
    # post (due after 5 minutes) says nothing new about its fields.
    clock.advance(6 * 60)
    reddit.add_post(subreddit="CustomerService", id="p5", title="Acme still silent", created_utc=now + 30)
    with caplog.at_level(logging.WARNING, logger="complaint_monitor.sources.reddit"):
        second = run()
    assert "t3_p5" in stored(store)
    assert "t3_p2" in {m.source_id for m in second.updates}
    warnings = [r.getMessage() for r in caplog.records]
    assert sum("t3_p2" in m and "bad score" in m for m in warnings) == 1
    assert sum("t3_p3" in m and "created_utc" in m for m in warnings) == 1

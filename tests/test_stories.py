"""The same story in several places, and brand spikes, through the real pipeline and a real store."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

from monitor.app import Monitor
from monitor.config import load_config
from monitor.mention import Engagement, Mention
from monitor.pipeline import Pipeline
from monitor.source import Poll
from monitor.config import SpikeSettings
from monitor.spike import brand_volume
from monitor.store import Store
from monitor.stories import jaccard, normalise_url, title_tokens
from tests.conftest import local_sources
from tests.servers.feeds import rss

ARTICLE = "https://news.example/2026/11/acme-kettles-catch-fire"


def test_normalise_url_drops_tracking_and_fragments_but_keeps_meaning():
    base = normalise_url(ARTICLE)
    assert normalise_url(ARTICLE + "?utm_source=rss&utm_medium=feed#comments") == base
    assert normalise_url("HTTP://WWW.news.example/2026/11/acme-kettles-catch-fire/?fbclid=x") == base
    assert normalise_url(ARTICLE + "?page=2") != base  # a real parameter is part of the page
    assert normalise_url("https://a.example/x?b=2&a=1") == normalise_url("https://a.example/x?a=1&b=2")
    assert normalise_url("mailto:someone@example.com") is None
    assert normalise_url("") is None


def test_title_fingerprint_similarity():
    a = title_tokens("Acme kettles are catching fire, says a safety regulator")
    b = title_tokens("Safety regulator says Acme kettles catching fire!")
    c = title_tokens("Acme opens a new store in Leeds")
    assert jaccard(a, b) >= 0.6
    assert jaccard(a, c) < 0.3


def _stories_config(write_config, reddit, feed_url, smtp):
    sources = local_sources(reddit, subreddits=["CustomerService"], feeds=[{"url": feed_url, "name": "Kettle news"}])
    return write_config({"sources": sources, "email": {"smtp": {"host": "127.0.0.1", "port": smtp.port}}})


def test_reddit_link_post_and_rss_entry_are_one_story(reddit, feeds, smtp, write_config):
    now = time.time()
    reddit.add_subreddit("CustomerService", subscribers=5_000)
    reddit.add_post(subreddit="CustomerService", id="k1", title="Acme kettles catching fire, regulator warns",
                    url=ARTICLE + "?utm_source=reddit&utm_medium=social", created_utc=now - 600, score=3)
    feed_url = feeds.serve("/kettles.xml", rss([
        {"title": "Regulator warns Acme kettles are catching fire", "guid": "kettle-1",
         "link": ARTICLE + "?utm_source=rss&utm_campaign=feed#top",
         "description": "The regulator says Acme kettles can catch fire. Owners should stop using them."},
    ]))
    monitor = Monitor.from_config(load_config(_stories_config(write_config, reddit, feed_url, smtp)))
    try:
        monitor.poll("reddit")
        first = monitor.store.query("SELECT * FROM mentions WHERE source_id = 't3_k1'")[0]
        assert json.loads(first["signals"])["sightings"] == 1
        virality_alone = first["virality"]

        monitor.poll("rss")
        rows = {r["source"]: r for r in monitor.store.query("SELECT * FROM mentions")}
        assert rows["reddit"]["story_id"] is not None
        assert rows["reddit"]["story_id"] == rows["rss"]["story_id"]
        story = monitor.store.query("SELECT * FROM stories WHERE id = ?", (rows["rss"]["story_id"],))[0]
        assert story["sightings"] == 2
        # The new sighting scores as seen twice, and the earlier mention was re-scored with it.
        for row in rows.values():
            assert json.loads(row["signals"])["sightings"] == 2
            assert "sightings" in {r["name"] for r in json.loads(row["reasons"]) if r["virality"] > 0}
        assert rows["reddit"]["virality"] > virality_alone

        # New engagement numbers re-score the post: it is still seen in two places.
        grown = Mention(source="reddit", source_id="t3_k1", url="", title="", text="",
                        engagement=Engagement(score=400, comments=90))
        monitor.pipeline.update_engagement("reddit", [grown])
        row = monitor.store.query("SELECT * FROM mentions WHERE source_id = 't3_k1'")[0]
        assert json.loads(row["signals"])["sightings"] == 2
        assert row["score"] == 400

        monitor.deliver()
    finally:
        monitor.close()
    feed_mail = [m for m in smtp.to("oncall@test.local") if "Regulator warns" in str(m["Subject"])]
    assert feed_mail, [str(m["Subject"]) for m in smtp.messages]
    body = feed_mail[-1].get_body(("plain",)).get_content()
    assert "Also seen at" in body
    assert "r/CustomerService" in body and "/comments/k1/" in body


def _mention(i: int, *, at: datetime, title: str = "", text: str = "Acme again") -> Mention:
    return Mention(source="rss", source_id=f"m{i}", url=f"https://blog.example/{i}", title=title, text=text,
                   created_at=at, fetched_at=at, place="feed")


def test_unrelated_titles_and_comments_stay_separate(tmp_path, write_config):
    config = load_config(write_config())
    store = Store(config.store_path)
    pipeline = Pipeline(config=config, store=store)
    now = datetime(2026, 11, 22, 12, tzinfo=timezone.utc)
    pipeline.process("rss", Poll(mentions=[
        _mention(1, at=now, title="Acme kettles catching fire across the country"),
        _mention(2, at=now, title="Acme opens a new flagship store in Leeds"),
        _mention(3, at=now, text="Acme replied to my comment"),  # no title, no link of its own: no story
    ]), now=now)
    rows = {r["source_id"]: r for r in store.query("SELECT * FROM mentions")}
    assert rows["m1"]["story_id"] != rows["m2"]["story_id"]
    assert rows["m3"]["story_id"] is None
    assert all(json.loads(r["signals"])["sightings"] == 1 for r in rows.values())


def test_brand_spike_against_its_own_baseline(tmp_path, write_config):
    config = load_config(write_config())
    store = Store(config.store_path)
    pipeline = Pipeline(config=config, store=store)
    now = datetime(2026, 11, 22, 12, tzinfo=timezone.utc)
    # Two days of history, one mention every two hours: a baseline of 0.5/hour, floored to 1.
    history = [_mention(i, at=now - timedelta(hours=2 * i + 1.5)) for i in range(1, 25)]
    pipeline.process("rss", Poll(mentions=history), now=now - timedelta(hours=1))
    assert brand_volume(store, "Acme", now).ratio == 0  # nothing in the last hour

    burst = [_mention(100 + i, at=now - timedelta(minutes=50 - i), text="Everyone is talking about Acme today")
             for i in range(4)]
    for m in burst:
        pipeline.process("rss", Poll(mentions=[m]), now=now)
    spikes = {r["source_id"]: json.loads(r["signals"])["brand_spike"]
              for r in store.query("SELECT source_id, signals FROM mentions WHERE source_id LIKE 'm10_'")}
    assert spikes == {"m100": 1.0, "m101": 2.0, "m102": 3.0, "m103": 4.0}
    crossing = store.query("SELECT * FROM mentions WHERE source_id = 'm102'")[0]
    before = store.query("SELECT * FROM mentions WHERE source_id = 'm101'")[0]
    assert "brand-spike" in {r["name"] for r in json.loads(crossing["reasons"])}
    assert "brand-spike" not in {r["name"] for r in json.loads(before["reasons"])}
    assert crossing["virality"] > before["virality"]  # the spike raised it
    # Chatter is no complaint: a storm of it raises virality, but is never paged as a complaint.
    assert not crossing["is_complaint"] and crossing["priority"] == before["priority"] == "P4"

    volumes = pipeline.check_spikes(now=now)  # what the daemon's spikes job runs
    assert [(v.brand, v.last_hour, v.spiking) for v in volumes] == [("Acme", 4, True)]
    # The periodic check gave the spike to the mentions scored before it was visible.
    before = store.query("SELECT * FROM mentions WHERE source_id = 'm101'")[0]
    assert json.loads(before["signals"])["brand_spike"] == 4.0
    assert "brand-spike" in {r["name"] for r in json.loads(before["reasons"])}


def test_no_spike_without_history(tmp_path, write_config):
    config = load_config(write_config())
    store = Store(config.store_path)
    pipeline = Pipeline(config=config, store=store)
    now = datetime(2026, 11, 22, 12, tzinfo=timezone.utc)
    # A first start that backfills a busy hour is not a storm.
    pipeline.process("rss", Poll(mentions=[_mention(i, at=now - timedelta(minutes=i)) for i in range(10)]), now=now)
    assert brand_volume(store, "Acme", now).last_hour == 10
    assert brand_volume(store, "Acme", now).ratio == 0
    assert brand_volume(store, "Acme", now + timedelta(hours=SpikeSettings().min_history_hours + 1)).ratio == 0  # quiet again


def test_sightings_count_places_not_mentions(write_config):
    config = load_config(write_config())
    store = Store(config.store_path)
    pipeline = Pipeline(config=config, store=store)
    now = datetime.now(timezone.utc)

    def told(n: int, place: str, source: str = "rss") -> Mention:
        return Mention(source=source, source_id=f"{place}-{n}", url=f"{ARTICLE}?utm_source={place}&n={n}#c",
                       title="Acme kettles catch fire in kitchens", text="Acme kettles catch fire.",
                       place=place, created_at=now - timedelta(minutes=5), fetched_at=now,
                       extra={"canonical_url": normalise_url(ARTICLE)})

    # The same story repeated five times in one place, then in a second and a third.
    pipeline.process("rss", Poll(mentions=[told(n, "Kettle news") for n in range(5)]))
    pipeline.process("rss", Poll(mentions=[told(9, "Consumer blog")]))
    pipeline.process("reddit", Poll(mentions=[told(10, "r/Kettles", source="reddit")]))
    stories = store.query("SELECT id, sightings FROM stories")
    assert len(stories) == 1 and stories[0]["sightings"] == 3
    latest = store.query("SELECT signals FROM mentions WHERE source_id = 'r/Kettles-10'")[0]
    assert json.loads(latest["signals"])["sightings"] == 3
    fifth = store.query("SELECT signals FROM mentions WHERE source_id = 'Kettle news-4'")[0]
    assert json.loads(fifth["signals"])["sightings"] >= 2, "re-scored when the story reached a new place"


def test_story_settings_come_from_the_config(write_config):
    now = datetime(2026, 11, 22, 12, tzinfo=timezone.utc)
    titles = ["Acme kettles catching fire, regulator warns owners", "Regulator warns Acme kettles are catching fire"]
    assert 0.6 <= jaccard(title_tokens(titles[0]), title_tokens(titles[1])) < 0.9
    stories = {}
    for similarity in (0.6, 0.9):
        config = load_config(write_config({"stories": {"title_similarity": similarity}, "store": f"s{similarity}.db"}))
        pipeline = Pipeline(config=config, store=Store(config.store_path))
        for i, title in enumerate(titles):
            m = _mention(i, at=now, title=title)
            m.place = f"feed {i}"
            pipeline.process("rss", Poll(mentions=[m]), now=now)
        stories[similarity] = len({r["story_id"] for r in pipeline.store.query("SELECT story_id FROM mentions")})
    assert stories == {0.6: 1, 0.9: 2}


def test_spike_settings_come_from_the_config(write_config):
    now = datetime(2026, 11, 22, 12, tzinfo=timezone.utc)
    spikes = {"min_history_hours": 1, "baseline_days": 1, "min_baseline_per_hour": 1, "ratio": 5, "rescore": 1}
    config = load_config(write_config({"spikes": spikes}))
    store = Store(config.store_path)
    pipeline = Pipeline(config=config, store=store)
    # Two hours of history (one mention), then a burst of five in the last hour.
    pipeline.process("rss", Poll(mentions=[_mention(0, at=now - timedelta(hours=2.5))]), now=now - timedelta(hours=2.5))
    for i in range(1, 6):
        pipeline.process("rss", Poll(mentions=[_mention(i, at=now - timedelta(minutes=50 - i))]), now=now)
    [volume] = pipeline.check_spikes(now=now)
    assert (volume.last_hour, volume.ratio, volume.spiking) == (5, 5.0, True)  # 5 >= ratio 5, after 1.5 h of history
    assert brand_volume(store, "Acme", now).ratio == 0  # the defaults want 24 hours of history
    respiked = [r["source_id"] for r in store.query("SELECT source_id, signals FROM mentions")
                if json.loads(r["signals"])["brand_spike"] == 5.0]
    assert len(respiked) == 2  # m5 scored at 5x, and rescore: 1 gave the spike to one earlier mention


def test_a_mention_is_rescored_only_when_its_story_reached_more_places_than_its_score_counts(write_config):
    """One cycle finding a story in four places re-scores each earlier mention once, with the last count; a
    mention from a place the story was already seen in changes nobody's sightings and re-scores nothing."""
    from sqlalchemy import event

    config = load_config(write_config())
    store = Store(config.store_path)
    pipeline = Pipeline(config=config, store=store)
    now = datetime.now(timezone.utc)
    rescored: list[int] = []

    @event.listens_for(store.engine, "before_cursor_execute")
    def _scores_written(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("UPDATE MENTIONS SET") and " signals=" in statement.replace(" = ", "="):
            rescored.append(parameters[-1] if isinstance(parameters, (list, tuple)) else parameters)

    def told(n: int, place: str) -> Mention:
        return Mention(source="rss", source_id=f"{place}-{n}", url=f"{ARTICLE}?n={n}", title="Acme kettles catch fire in kitchens",
                       text="Acme kettles catch fire.", place=place, created_at=now - timedelta(minutes=5),
                       fetched_at=now, extra={"canonical_url": normalise_url(ARTICLE)})

    pipeline.process("rss", Poll(mentions=[told(n, f"feed {n}") for n in range(4)]))
    signals = {r["source_id"]: json.loads(r["signals"])["sightings"]
               for r in store.query("SELECT source_id, signals FROM mentions")}
    assert signals == {f"feed {n}-{n}": 4 for n in range(4)}, "every mention counts the story's four places"
    assert len(rescored) == 3 and len(set(rescored)) == 3, rescored  # not 1 + 2 + 3 = 6

    rescored.clear()
    pipeline.process("rss", Poll(mentions=[told(9, "feed 2")]))  # a place the story was in already
    assert rescored == [], "nothing the earlier mentions' scores depend on changed"
    assert json.loads(store.query("SELECT signals FROM mentions WHERE source_id = 'feed 2-9'")[0]["signals"])[
        "sightings"] == 4
    store.close()


def test_a_story_spreading_in_one_poll_alerts_alike_on_sqlite_batches_and_postgresql(write_config, postgres_url):
    """A complaint story found in six places in one poll: the earlier mentions are re-scored with the story's
    last count and escalate; alerted, it reaches one more place: one follow-up for the story's thread. On SQLite the poll is stored in batches that hold the store, and a re-score reuses
    the story's alert thread it read for an earlier one until it queues an alert in it; on PostgreSQL every
    mention and re-score is its own transaction and reads its thread again. Both queue the same alerts."""
    now = datetime.now(timezone.utc)

    def told(n: int, text: str = "Acme kettle is a bit slow to boil, meh.") -> Mention:
        return Mention(source="rss", source_id=f"e{n}", url=f"{ARTICLE}?n={n}", title="Acme kettle review", text=text,
                       place=f"feed {n}", created_at=now - timedelta(minutes=5), fetched_at=now,
                       extra={"canonical_url": normalise_url(ARTICLE)})

    queued = {}
    for name, where in (("sqlite", None), ("postgresql", postgres_url)):
        # Levels set so that the story's spread lifts its first mentions from P3 to P2.
        levels = {"thresholds": {"p1": 90, "p2": 55, "p3": 30}}
        config = load_config(write_config({**levels, "store": where} if where else levels, name=f"{name}.yaml"))
        store = Store(config.store_path)
        pipeline = Pipeline(config=config, store=store)
        queued_in = pipeline.process("rss", Poll(mentions=[told(n) for n in range(6)]), now=now).alerts
        # Those emails went out; then the story reaches a new place, in a mention that is no complaint (no alert
        # of its own): news for the story's thread, told once, by a follow-up of the first mention re-scored.
        store.mark_sent([a.id for a in store.pending_alerts()], now.timestamp())
        queued_in += pipeline.process("rss", Poll(mentions=[told(6, "Acme announces a new kettle line.")]),
                                      now=now).alerts
        columns = ("source_id", "recipient", "priority", "kind", "status", "message_id")
        queued[name] = [tuple(r[c] for c in columns) for r in store.query(
            "SELECT m.source_id, a.recipient, a.priority, a.kind, a.status, a.message_id FROM alerts a"
            " JOIN mentions m ON m.id = a.mention_id ORDER BY a.id")]
        assert queued_in == len(queued[name])
        store.close()
    kinds = [(priority, kind) for _, _, priority, kind, _, _ in queued["sqlite"]]
    assert {("P3", "alert"), ("P2", "alert")} <= set(kinds) and kinds.count(("P2", "follow_up")) == 1, kinds
    assert queued["sqlite"] == queued["postgresql"]

"""The store's schema grows by migrations: a store made by an earlier release opens in this one, data intact.

Stores from before Alembic are SQLite files versioned by ``PRAGMA user_version`` (11 in the release before
issue 17): the frozen raw migrations bring them to 11, Alembic takes over from its baseline revision.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from monitor.store import Store
from monitor.store.database import head_revision
from monitor.store.legacy import MIGRATIONS

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _first_release_store(path) -> None:
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0])
    db.execute("INSERT INTO mentions (source, source_id, kind, url, title, text, place, created_at, fetched_at,"
               " brand, quote, extra, priority) VALUES ('rss', 'e1', 'entry', 'https://x.example/1', 'Acme',"
               " 'Acme broke', 'Blog', 1.7e9, 1.7e9, 'Acme', 'Acme broke', '{}', 'P2')")
    db.execute("INSERT INTO alerts (mention_id, recipient, priority, next_attempt_at, message_id, created_at)"
               " VALUES (1, 'oncall@test.local', 'P2', 0, '<alert-1-m1@complaint-monitor>', 1.7e9)")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()


def _scorer(write_config):
    from monitor.config import load_config
    from monitor.score import Scorer

    return Scorer.from_config(load_config(write_config()))


def _mention(i: int, text: str):
    from datetime import datetime, timezone

    from monitor.mention import Mention

    now = datetime.now(timezone.utc)
    return Mention(source="rss", source_id=f"new{i}", url=f"https://x.example/new{i}", title="", text=text,
                   place="Blog", kind="entry", created_at=now, fetched_at=now, brand="Acme", quote=text)


def test_a_store_of_the_release_before_alembic_upgrades_in_place_with_every_row(tmp_path, write_config):
    """tests/fixtures/store-v11.sql: a store written by the previous release's own Store (user_version 11)."""
    from monitor.analysis import load_alerts, load_mentions

    path = tmp_path / "v11.db"
    db = sqlite3.connect(path)
    db.executescript((FIXTURES / "store-v11.sql").read_text(encoding="utf-8"))
    db.close()

    store = Store(path)
    assert store.schema_version == head_revision()
    assert store.query("PRAGMA user_version")[0][0] == 12, "a release that still relies on the triggers refuses it"
    assert store.query("SELECT name FROM sqlite_master WHERE type = 'trigger'") == []
    first = store.find_mention("reddit", "t3_v0")
    assert (first.id, first.brand, first.extra, first.score) == (1, "Acme", {"subreddit": "CustomerService"}, 50)
    assert first.rules == ["money-back", "complaint-evidence"] and first.reasons[0]["kind"]
    assert [(s.score, s.comments) for s in store.snapshots(1)] == [(10, 0), (50, 9)]
    assert [(a.mention_id, a.priority, a.status) for a in store.pending_alerts()] == [(1, "P2", "pending")]
    assert store.sent_priorities(2) == ["P1"]
    assert store.source_state("reddit") == {"cursor": {"new": "t3_v1"}, "etag": "abc"}
    assert [f.subject for f in store.failures()] == ["rss feed:https://feeds.test/b.xml"]
    assert [(r.id, r.label, r.labelled_by) for r in store.labelled()] == [(3, 0, "analyst")]
    assert store.story_sightings(first.story_id) == 1
    # The migrated store is written as a new one is: the store itself keeps the rule names now.
    scorer = _scorer(write_config)
    new = _mention(1, "Acme charged me twice and I want a refund, this is a scam")
    scores = scorer.score(new)
    mention_id = store.add_mention(new, scores)
    assert store.mention(mention_id).rules == [r.name for r in scores.reasons if r.kind == "rule"] != []
    assert store.enqueue_alert(mention_id=1, recipient="oncall@test.local", priority="P2", now=2e9) is None, \
        "one first alert per mention, recipient and level still holds"
    store.close()

    assert Store(path).schema_version == head_revision(), "opening again migrates nothing twice"
    mentions = load_mentions(path)
    assert mentions["rules"].tolist()[:3] == [["money-back", "complaint-evidence"],
                                              ["legal-or-safety", "complaint-evidence"], ["praise"]]
    assert load_alerts(path)["status"].tolist() == ["pending", "sent"]


def test_the_newest_revision_is_alembics_head():
    from monitor.store.database import newest_revision

    assert newest_revision() == head_revision()


def test_a_first_release_store_is_migrated_in_place_and_keeps_its_data(tmp_path):
    path = tmp_path / "old.db"
    _first_release_store(path)
    store = Store(path)
    assert store.schema_version == head_revision()
    row = store.mention(1)
    assert (row.source_id, row.priority, row.story_id) == ("e1", "P2", None)
    assert [r["status"] for r in store.query("SELECT status FROM alerts")] == ["pending"]
    assert store.pending_count() == 1, "the queued alert survives the upgrade"
    store.close()
    assert Store(path).schema_version == head_revision(), "opening again migrates nothing twice"


def test_a_store_from_a_newer_release_is_refused(tmp_path):
    path = tmp_path / "new.db"
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE alembic_version SET version_num = 'ffff'")
    db.commit()
    db.close()
    with pytest.raises(RuntimeError, match="newer than this program"):
        Store(path)
    before_alembic = tmp_path / "before.db"
    db = sqlite3.connect(before_alembic)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 2}")
    db.close()
    with pytest.raises(RuntimeError, match="newer than this program"):
        Store(before_alembic)


def test_migration_9_allows_follow_ups_at_a_level_and_keeps_the_highest_priority_reached(tmp_path):
    path = tmp_path / "old.db"
    _first_release_store(path)
    db = sqlite3.connect(path)
    db.execute("UPDATE mentions SET priority = 'P4'")  # the story calmed down after its P2 alert
    db.commit()
    db.close()
    store = Store(path)
    assert store.mention(1).peak_priority == "P2", "the alerted level, not the decayed one"
    [old] = store.query("SELECT * FROM alerts")
    assert (old["id"], old["kind"], old["message_id"]) == (1, "alert", "<alert-1-m1@complaint-monitor>")
    again = dict(mention_id=1, recipient="oncall@test.local", priority="P2", now=1.8e9)
    assert store.enqueue_alert(**again) is None, "one first alert per mention, recipient and level"
    assert store.enqueue_alert(**again, kind="follow_up") is not None


REASONS = ('[{"kind": "model", "name": "complaint", "urgency": 40.0, "virality": 0.0, "detail": "p 0.9"},'
           ' {"kind": "rule", "name": "refund", "urgency": 20.0, "virality": 0.0, "detail": ""},'
           ' {"kind": "signal", "name": "velocity", "urgency": 0.0, "virality": 5.0, "detail": "rule of thumb"},'
           ' {"kind": "rule", "name": "legal", "urgency": 30.0, "virality": 0.0, "detail": ""}]')


def test_migration_11_keeps_the_rule_names_beside_the_reasons_and_unmigrated_stores_still_load(tmp_path,
                                                                                                write_config):
    from monitor.analysis import load_mentions

    path = tmp_path / "old.db"
    _first_release_store(path)
    db = sqlite3.connect(path)
    for number in range(1, 10):  # the store as release 10 left it
        db.executescript(MIGRATIONS[number])
    db.execute("UPDATE mentions SET reasons = ?", (REASONS,))
    db.execute("PRAGMA user_version = 10")
    db.commit()
    db.close()
    # An analyst's newer package on a store an older daemon still runs: the names come from the reasons.
    assert load_mentions(path)["rules"].tolist() == [["refund", "legal"]]

    store = Store(path)
    assert store.query("SELECT rules FROM mentions")[0][0] == '["refund","legal"]', "filled by the migration"
    # Whoever writes reasons through the store, the names follow.
    scorer = _scorer(write_config)
    text = "Acme kettle caught fire, my lawyer will hear about this and I want a refund"
    scores = scorer.score(_mention(2, text))
    store.update_scores(1, scores)
    store.add_mention(_mention(3, "Acme"), scorer.score(_mention(3, "Acme")))
    store.close()
    rules = [r.name for r in scores.reasons if r.kind == "rule"]
    assert rules and load_mentions(path)["rules"].tolist() == [rules, []]


def test_concurrent_sightings_of_one_story_are_all_counted(store_where, write_config):
    """Each thread has a store of its own on one SQLite file or PostgreSQL database (two poll threads, or two
    daemons). All of them
    look the story up (``find``: sightings 1) before any of them records, the interleaving that lost updates
    when the count was written back as ``before + 1``; counted inside the transaction, none is lost, and two
    mentions from one place arriving together count that place once."""
    import threading
    from datetime import datetime, timezone

    from monitor.config import load_config
    from monitor.mention import Mention
    from monitor.score import Scorer
    from monitor.stories import Stories

    config = load_config(write_config())
    scorer = Scorer.from_config(config)
    path = store_where
    article = "https://news.example/2026/11/acme-kettles-catch-fire"
    now = datetime.now(timezone.utc)

    def mention(i: int) -> Mention:
        # Two writers per place: a place counts once however many of its mentions arrive together.
        return Mention(source="rss", source_id=f"e{i}", url=article, title="Acme kettles catch fire, regulator warns",
                       text="Acme kettles catch fire.", place=f"Blog {(i + 1) // 2}", kind="entry", created_at=now,
                       fetched_at=now, brand="Acme", quote="Acme kettles", extra={"canonical_url": article})

    first = Store(path)
    first_id = first.add_mention(mention(0), scorer.score(mention(0)))
    story_id = Stories(first).record(first_id, mention(0), Stories(first).find(mention(0), now=now), now=now)
    first.close()

    writers = 6
    everyone_looked = threading.Barrier(writers)
    errors: list[BaseException] = []

    def add_sighting(i: int) -> None:
        store = Store(path)
        try:
            stories = Stories(store)
            m = mention(i)
            sighting = stories.find(m, now=now)
            assert (sighting.story_id, sighting.sightings) == (story_id, 2)
            everyone_looked.wait(timeout=30)
            with store.transaction():
                stories.record(store.add_mention(m, scorer.score(m)), m, sighting, now=now)
        except BaseException as err:  # surfaced below: an assertion in a thread would pass silently
            errors.append(err)
        finally:
            store.close()

    threads = [threading.Thread(target=add_sighting, args=(i,)) for i in range(1, writers + 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    store = Store(path)
    assert store.story_sightings(story_id) == 1 + writers // 2, "every new place counted, each once"
    assert len(store.story_mentions(story_id, besides=-1, limit=100)) == 1 + writers
    store.close()


def test_no_sql_outside_the_store():
    """Every statement lives in monitor/store/: the rest of the program asks the store's typed methods."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    sql = re.compile(r"""["'](SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|PRAGMA)\s""", re.IGNORECASE)
    offenders = [f"{path.relative_to(root)}:{n}" for folder in ("monitor", "sources")
                 for path in sorted((root / folder).rglob("*.py")) if "store" not in path.relative_to(root).parts
                 for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if sql.search(line) or re.search(r"\bstore\.query\(|\.execute\(", line)]
    assert offenders == []


def test_every_part_of_the_store_on_both_backends(store_where, write_config):
    """The store's whole surface, on SQLite and on PostgreSQL: the same calls give the same records."""
    from monitor.mention import Engagement

    store = Store(store_where)
    assert store.schema_version == head_revision()
    scorer = _scorer(write_config)
    first = _mention(1, "Acme charged me twice and I want a refund, this is a scam")
    first.engagement = Engagement(score=5, comments=1)
    first.extra = {"feed_url": "https://feeds.test/a.xml", "nested": {"n": [1, 2]}}
    scores = scorer.score(first)
    mention_id = store.add_mention(first, scores)
    assert store.add_mention(first, scores) is None, "stored once"
    assert store.known("rss", ["new1", "nope"]) == {"new1"}
    row = store.find_mention("rss", "new1")
    assert row == store.mention(mention_id) and row.extra == first.extra and row.suppressed is False
    assert row.rules == [r.name for r in scores.reasons if r.kind == "rule"] and row.reasons[0]["kind"]
    assert store.row_to_mention(row).engagement == Engagement(score=5, comments=1)
    store.add_snapshot(mention_id, Engagement(score=50, comments=9), row.fetched_at + 60)
    store.add_snapshot(mention_id, Engagement(score=60, comments=9), row.fetched_at + 60)  # the same reading again
    assert [(s.score, s.comments) for s in store.snapshots(mention_id)] == [(5, 1), (60, 9)]
    assert store.mention(mention_id).score == 60
    # A re-read's reach replaces the stored one; a re-read without one keeps it.
    store.add_snapshot(mention_id, Engagement(score=60, comments=9), row.fetched_at + 120, reach=4_200.0)
    store.add_snapshot(mention_id, Engagement(score=61, comments=9), row.fetched_at + 180)
    assert (store.mention(mention_id).reach, store.mention(mention_id).score) == (4_200.0, 61)
    store.update_scores(mention_id, scores)
    assert store.mention(mention_id).peak_priority == scores.priority
    assert store.count_mentions("Acme", after=row.created_at - 1, until=row.created_at) == 1
    assert store.watched_since() == row.fetched_at
    assert store.spike_candidates("Acme", after=row.created_at - 1, until=row.created_at)[0][0] == mention_id

    # The outbox: one first alert per level, follow-ups beside it, a lower level superseded by a higher one.
    p3 = store.enqueue_alert(mention_id=mention_id, recipient="a@test.local", priority="P3", now=100.0)
    p2 = store.enqueue_alert(mention_id=mention_id, recipient="a@test.local", priority="P2", now=101.0)
    assert store.enqueue_alert(mention_id=mention_id, recipient="a@test.local", priority="P2", now=102.0) is None
    follow = store.enqueue_alert(mention_id=mention_id, recipient="a@test.local", priority="P2", now=103.0,
                                 kind="follow_up", not_before=500.0)
    assert [(a.id, a.status) for a in store.thread_alerts(mention_id, "a@test.local")] == [
        (p3, "superseded"), (p2, "pending"), (follow, "pending")]
    assert [a.id for a in store.due_alerts(200.0)] == [p2] and store.pending_count() == 2
    assert store.oldest_pending() == 101.0
    store.mark_sent(p2, 201.0, subject="[P2] Acme")
    assert store.sent_priorities(mention_id) == ["P2"]
    assert [a.message_id for a in store.earlier_alerts(store.thread_alerts(mention_id, "a@test.local")[-1])] == [
        f"<alert-{p2}-m{mention_id}@complaint-monitor>"]
    store.mark_failed(follow, "421 busy", retry_at=900.0)
    store.postpone(follow, 1000.0)
    [waiting] = store.pending_alerts()
    assert (waiting.attempts, waiting.last_error, waiting.next_attempt_at, waiting.held_until) == (
        1, "421 busy", 1000.0, 1000.0)
    store.mark_failed(follow, "550 no", retry_at=None)
    assert store.failed_count() == 1 and store.pending_alerts() == []

    # Stories: made under its first key, found by any, a new place counted once.
    other = _mention(2, "Acme charged me twice too")
    other.place = "Another blog"
    other_id = store.add_mention(other, scorer.score(other))
    story_id, sightings = store.attach_story(mention_id, story_id=None, keys=("url:a", "title:b"), brand="Acme",
                                             title="Acme double charge", url="https://x", seen=10.0, new_place=True)
    assert sightings == 1 and store.story_by_keys(("title:b",)) == story_id
    assert store.attach_story(other_id, story_id=story_id, keys=("url:c",), brand="Acme", title="", url="",
                              seen=20.0, new_place=True) == (story_id, 2)
    assert store.recent_stories("Acme", since=15.0, limit=5) == [(story_id, "Acme double charge")]
    assert store.recent_stories(None, since=0.0, limit=5) == []
    assert store.story_seen_at(story_id, "rss", "Another blog")
    assert store.story_sightings_at(story_id, "rss", "Another blog") == (2, True)
    assert store.story_sightings_at(story_id, "rss", "Elsewhere") == (2, False)
    assert store.story_sightings_at(999999, "rss", "Another blog") == (None, False)
    assert store.story_by_keys(("url:c",)) == store.story_by_keys(("url:zz", "url:c", "title:b")) == story_id
    assert store.story_mentions(story_id, besides=mention_id, limit=5) == [other_id]
    assert [p.place for p in store.story_places(story_id, besides=mention_id)] == ["Another blog"]
    assert [p.place for p in store.story_places_since(story_id, since=0.0, besides=mention_id)] == ["Another blog"]
    # What an alert round reads for all its alerts at once is what it would read for each.
    assert store.mentions_by_id([other_id, mention_id, mention_id, 999999]) == {
        mention_id: store.mention(mention_id), other_id: store.mention(other_id)}
    assert store.snapshots_of([mention_id, other_id, 999999]) == {
        i: store.snapshots(i) for i in (mention_id, other_id) if store.snapshots(i)}
    assert len(store.snapshots_of([mention_id])[mention_id]) == len(store.snapshots(mention_id)) >= 2
    assert store.mentions_by_id([]) == {}
    # A delivery round's threads, read at once, are each alert's earlier_alerts: the story's other mention
    # replies in the thread of the email about the first, another recipient's thread is apart.
    from monitor.alert import Round
    in_story = store.enqueue_alert(mention_id=other_id, recipient="a@test.local", priority="P1", now=300.0)
    elsewhere = store.enqueue_alert(mention_id=other_id, recipient="b@test.local", priority="P1", now=300.0)
    later = store.enqueue_alert(mention_id=mention_id, recipient="a@test.local", priority="P1", now=300.0)
    round_alerts = [a for a in store.due_alerts(400.0) if a.id in (in_story, elsewhere, later)]
    assert [a.id for a in round_alerts] == [in_story, elsewhere, later]
    round_ = Round.read(store, round_alerts)
    for alert in round_alerts:
        assert round_.earlier_alerts(alert) == store.earlier_alerts(alert)
    assert [[a.id for a in round_.earlier_alerts(alert)] for alert in round_alerts] == [[p2], [], [p2]]
    # What the round sends is part of its threads, as mark_sent records it.
    store.mark_sent(in_story, 401.0, subject="Re: [P2] Acme")
    round_.sent(round_alerts[0], subject="Re: [P2] Acme", at=401.0)
    assert round_.earlier_alerts(round_alerts[2]) == store.earlier_alerts(round_alerts[2])
    assert [a.id for a in round_.earlier_alerts(round_alerts[2])] == [p2, in_story]
    store.supersede([elsewhere, later])
    assert store.sent_in_threads(recipients=[], mention_ids=[1], story_ids=[]) == []

    # Labels, health, state, pruning.
    assert store.set_label(mention_id, True, now=1.0, by="me") and store.set_label(mention_id, False, now=2.0)
    assert not store.set_label(999999, True, now=1.0)
    assert [(r.id, r.label) for r in store.labelled()] == [(mention_id, 0)]
    store.record_poll(source="rss", started_at=row.fetched_at, finished_at=row.fetched_at + 1, items=4, stored=2,
                      errors=[])
    store.record_poll(source="rss", started_at=row.fetched_at + 5, finished_at=row.fetched_at + 6, items=1,
                      stored=0, errors=["boom"], interval=60.0)
    health = store.source_health("rss", since=row.fetched_at - 1, by_key="feed_url")
    assert (health.last.errors, health.last_error.interval, health.last_success) == (["boom"], 60.0,
                                                                                       row.fetched_at + 1)
    assert (health.items_since, health.mentions_since, health.mentions_by) == (
        5, 2, {"https://feeds.test/a.xml": 1})
    assert store.record_failure("rss feed:x", "500", 1.0).count == 1
    assert store.record_failure("rss feed:x", "502", 2.0).last_error == "502"
    store.mark_failure_notified("rss feed:x")
    assert [(f.count, f.notified) for f in store.failures(prefix="rss feed:")] == [(2, True)]
    assert store.failures(prefix="reddit") == []
    assert store.clear_failure("rss feed:x").since == 1.0 and store.clear_failure("rss feed:x") is None
    store.save_source_state("rss", {"feed:a": {"etag": "x", "n": [1]}, "cursor": 5})
    store.save_source_state("rss", {"cursor": None, "feed:a": {"etag": "y"}})
    assert store.source_state("rss") == {"feed:a": {"etag": "y"}}
    assert store.prune(snapshots_before=row.fetched_at + 1, poll_runs_before=row.fetched_at + 2) == (1, 1)
    store.close()


def test_a_merged_state_value_takes_every_writer_s_change(store_where):
    """A callable state value is applied to the value stored at that moment, under the row's lock: writers on
    two stores (two daemons) merging into one key at once lose nothing; a plain value would keep one's."""
    import threading
    stores = [Store(store_where), Store(store_where)]
    start = threading.Barrier(2)

    def add(store, who):
        start.wait()
        for i in range(15):
            store.save_source_state("reddit", {"tracked": lambda stored, k=f"{who}{i}": {**(stored or {}), k: 1},
                                               f"cursor:{who}": i})

    threads = [threading.Thread(target=add, args=(s, who)) for s, who in zip(stores, "ab")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    state = stores[0].source_state("reddit")
    assert sorted(state["tracked"]) == sorted(f"{w}{i}" for w in "ab" for i in range(15))
    assert (state["cursor:a"], state["cursor:b"]) == (14, 14)
    stores[0].save_source_state("reddit", {"tracked": lambda stored: None, "new": lambda stored: stored})
    assert set(stores[0].source_state("reddit")) == {"cursor:a", "cursor:b"}  # None forgets, even a new key
    for s in stores:
        s.close()


def test_a_batch_keeps_each_transaction_whole_and_commits_them_together(store_where, write_config):
    """``batch()``: a transaction that fails inside it is undone alone and the batch goes on; on SQLite the
    batch is one transaction, so leaving it with an error (or a crash) undoes all of it, and on PostgreSQL each
    transaction inside stays its own (no row lock held across them)."""
    from monitor.config import load_config
    from monitor.score import Scorer

    scorer = Scorer.from_config(load_config(write_config()))
    store = Store(store_where)
    mentions = [_mention(i, f"Acme order {i} never came") for i in range(4)]

    with store.batch():
        store.add_mention(mentions[0], scorer.score(mentions[0]))
        with pytest.raises(RuntimeError):
            with store.transaction():
                assert store.add_mention(mentions[1], scorer.score(mentions[1])) is not None
                raise RuntimeError("the mention's alerts could not be queued")
        store.add_mention(mentions[2], scorer.score(mentions[2]))
        assert store.known("rss", ["new0", "new1", "new2"]) == {"new0", "new2"}, "read inside the batch"
    assert store.known("rss", ["new0", "new1", "new2"]) == {"new0", "new2"}

    with pytest.raises(RuntimeError):
        with store.batch():
            with store.transaction():
                store.add_mention(mentions[3], scorer.score(mentions[3]))
            raise RuntimeError("the poll failed after it")
    assert store.known("rss", ["new3"]) == (set() if store.dialect == "sqlite" else {"new3"})
    store.close()

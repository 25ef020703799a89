"""The store's schema grows by migrations: a store made by the first release opens in this one, data intact."""

from __future__ import annotations

import sqlite3

import pytest

from monitor.store import Store
from monitor.store.legacy import MIGRATIONS


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


def test_a_first_release_store_is_migrated_in_place_and_keeps_its_data(tmp_path):
    path = tmp_path / "old.db"
    _first_release_store(path)
    store = Store(path)
    assert store.schema_version == len(MIGRATIONS)
    row = store.mention(1)
    assert (row.source_id, row.priority, row.story_id) == ("e1", "P2", None)
    assert [r["status"] for r in store.query("SELECT status FROM alerts")] == ["pending"]
    assert store.pending_count() == 1, "the queued alert survives the upgrade"
    store.close()
    assert Store(path).schema_version == len(MIGRATIONS), "opening again migrates nothing twice"


def test_a_store_from_a_newer_release_is_refused(tmp_path):
    path = tmp_path / "new.db"
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.close()
    with pytest.raises(RuntimeError, match="newer than this program"):
        Store(path)


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


def test_migration_11_keeps_the_rule_names_beside_the_reasons_and_unmigrated_stores_still_load(tmp_path):
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
    with store.transaction() as db:  # whoever writes reasons, the names follow
        db.execute("UPDATE mentions SET reasons = ? WHERE id = 1", (REASONS.replace('"refund"', '"charged-twice"'),))
        db.execute("INSERT INTO mentions (source, source_id, kind, url, title, text, place, created_at, fetched_at,"
                   " quote, extra, reasons) VALUES ('rss', 'e2', 'entry', 'u', '', 't', 'p', 1, 1, '', '{}', '[]')")
    store.close()
    assert load_mentions(path)["rules"].tolist() == [["charged-twice", "legal"], []]


def test_concurrent_sightings_of_one_story_are_all_counted(tmp_path, write_config):
    """Each thread has a store of its own on one SQLite file (two poll threads, or two daemons). All of them
    look the story up (``find``: sightings 1) before any of them records, the interleaving that lost updates
    when the count was written back as ``before + 1``; counted inside the transaction, none is lost."""
    import threading
    from datetime import datetime, timezone

    from monitor.config import load_config
    from monitor.mention import Mention
    from monitor.score import Scorer
    from monitor.stories import Stories

    config = load_config(write_config())
    scorer = Scorer.from_config(config)
    path = tmp_path / "race.db"
    article = "https://news.example/2026/11/acme-kettles-catch-fire"
    now = datetime.now(timezone.utc)

    def mention(i: int) -> Mention:
        return Mention(source="rss", source_id=f"e{i}", url=article, title="Acme kettles catch fire, regulator warns",
                       text="Acme kettles catch fire.", place=f"Blog {i}", kind="entry", created_at=now,
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
    assert store.story_sightings(story_id) == 1 + writers, "every new place counted once"
    assert store.query("SELECT count(*) FROM mentions WHERE story_id = ?", (story_id,))[0][0] == 1 + writers
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

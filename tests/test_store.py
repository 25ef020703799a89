"""The store's schema grows by migrations: a store made by the first release opens in this one, data intact."""

from __future__ import annotations

import sqlite3

import pytest

from monitor.store import MIGRATIONS, Store


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
    assert (row["source_id"], row["priority"], row["story_id"]) == ("e1", "P2", None)
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
    assert store.mention(1)["peak_priority"] == "P2", "the alerted level, not the decayed one"
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

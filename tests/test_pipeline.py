"""A poll through the stages together (match, read, rank and store) with a real store."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

from monitor.config import load_config
from monitor.mention import Engagement, Mention
from monitor.pipeline import Pipeline
from monitor.source import Poll
from monitor.store import Store

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)

TEXTS = [
    "Acme charged me twice and support hung up on me. I want a refund!",
    "Loving my new Acme kettle, it boils so fast.",
    "Third time I call Acme about the broken heater. Still nothing. My lawyer is next.",
    "Nothing about any brand here, just the weather.",
    "Is the Acme store in Leeds open on Sundays?",
]


def _mention(i: int, text: str, **kw) -> Mention:
    return Mention(source="test", source_id=f"m{i}", url=f"https://example.test/{i}", title="", text=text,
                   created_at=NOW - timedelta(minutes=30), fetched_at=NOW, **kw)


def test_a_poll_stored_stage_by_stage_scores_each_mention_as_scoring_it_alone(write_config):
    config = load_config(write_config())
    pipeline = Pipeline(config=config, store=Store(config.store_path))
    outcome = pipeline.process("test", Poll(mentions=[_mention(i, t) for i, t in enumerate(TEXTS)]), now=NOW)
    assert (outcome.seen, outcome.matched, len(outcome.stored)) == (5, 4, 4)
    rows = {r["source_id"]: r for r in pipeline.store.query("SELECT * FROM mentions")}
    assert set(rows) == {"m0", "m1", "m2", "m4"}
    for i, text in enumerate(TEXTS):
        if f"m{i}" not in rows:
            continue
        alone = _mention(i, text)
        match = pipeline.matcher.match(text)
        alone.brand = match.brand
        row = rows[f"m{i}"]
        signals = pipeline.scorer.score(alone, match).signals._replace(**{
            k: v for k, v in json.loads(row["signals"]).items() if k in ("age_hours", "sightings", "brand_spike")})
        scores = pipeline.scorer.score(alone, match, signals=signals)
        assert (row["compound"], row["urgency"], row["virality"], row["priority"]) == (
            scores.sentiment.compound, scores.urgency, scores.virality, scores.priority), text
        assert json.loads(row["reasons"]) == [r.as_dict() for r in scores.reasons]
    assert rows["m2"]["urgency"] > rows["m1"]["urgency"]


def test_one_broken_mention_in_any_stage_costs_only_itself(write_config, caplog):
    config = load_config(write_config())
    pipeline = Pipeline(config=config, store=Store(config.store_path))
    mentions = [_mention(i, t) for i, t in enumerate(TEXTS)]
    # What a buggy third-party adapter might hand over: bytes for text (fails matching), and a
    # score that is a string (fails ranking, which divides it by the post's age).
    mentions.append(_mention(5, b"Acme bytes"))  # type: ignore[arg-type]
    mentions.append(_mention(6, "Acme lost my parcel again", engagement=Engagement(score="12")))  # type: ignore
    with caplog.at_level(logging.ERROR, logger="complaint_monitor.pipeline"):
        outcome = pipeline.process("test", Poll(mentions=mentions, state={"cursor": "after-m6"}), now=NOW)
    assert sorted(r["source_id"] for r in pipeline.store.query("SELECT source_id FROM mentions")) == [
        "m0", "m1", "m2", "m4"]
    assert len(outcome.stored) == 4
    failed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("could not process")]
    assert failed == ["could not process test m5 (https://example.test/5)",
                      "could not process test m6 (https://example.test/6)"]
    assert pipeline.store.source_state("test") == {"cursor": "after-m6"}  # the poll still counts as done


def test_a_re_score_from_the_kept_reading_equals_one_that_reads_the_words_again(write_config, tmp_path):
    import shutil

    config = load_config(write_config())
    pipeline = Pipeline(config=config, store=Store(config.store_path))
    pipeline.process("test", Poll(mentions=[_mention(i, t) for i, t in enumerate(TEXTS)]), now=NOW)
    ids = [r["id"] for r in pipeline.store.query("SELECT id FROM mentions ORDER BY id")]
    # The same store twice: one re-scored by the pipeline that stored it (the readings kept), one by a new
    # pipeline (a restarted daemon: every reading from the words).
    pipeline.store.query("PRAGMA wal_checkpoint(TRUNCATE)")  # all of it in the file itself, for the copy
    shutil.copy(config.store_path, tmp_path / "copy.db")
    fresh = Pipeline(config=config, store=Store(tmp_path / "copy.db"))
    for mention_id in ids:
        assert pipeline.rescore(mention_id, sightings=4, brand_spike=5.0) == \
            fresh.rescore(mention_id, sightings=4, brand_spike=5.0)
    columns = "id, compound, min_sentence, complaint, urgency, virality, priority, reasons, tags, signals"
    kept = pipeline.store.query(f"SELECT {columns} FROM mentions ORDER BY id")
    again = fresh.store.query(f"SELECT {columns} FROM mentions ORDER BY id")
    assert [tuple(r) for r in kept] == [tuple(r) for r in again]
    assert all('"sightings"' in r["reasons"] for r in kept), "re-scored with the new signals"


def _alerts_by_mention(store: Store) -> list[tuple]:
    return [tuple(r) for r in store.query(
        "SELECT m.source_id, a.recipient, a.priority, a.kind, a.status FROM alerts a"
        " JOIN mentions m ON m.id = a.mention_id ORDER BY m.source_id, a.id")]


def test_a_mention_failing_inside_a_batch_is_undone_alone_and_stored_by_the_next_poll(write_config):
    """The poll's mentions are committed in batches (``Store.batch``): one whose alert cannot be stored (a
    trigger refuses it) leaves neither itself nor its story behind, the rest of the batch is stored with
    its alerts, and the next poll of the same items stores it with its alert, once."""
    config = load_config(write_config())
    pipeline = Pipeline(config=config, store=Store(config.store_path))
    pipeline.store.query(
        "CREATE TRIGGER refuse BEFORE INSERT ON alerts WHEN"
        " (SELECT source_id FROM mentions WHERE id = NEW.mention_id) = 'm2' BEGIN SELECT RAISE(ABORT, 'no'); END")
    poll = [_mention(i, t) for i, t in enumerate(TEXTS)]
    outcome = pipeline.process("test", Poll(mentions=poll, state={"cursor": "1"}), now=NOW)
    stored = {r["source_id"] for r in pipeline.store.query("SELECT source_id FROM mentions")}
    assert stored == {"m0", "m1", "m4"} and len(outcome.stored) == 3
    assert not pipeline.store.query("SELECT 1 FROM story_keys WHERE key LIKE '%/2'"), "m2's story undone too"
    assert {a[0] for a in _alerts_by_mention(pipeline.store)} <= stored

    pipeline.store.query("DROP TRIGGER refuse")
    again = pipeline.process("test", Poll(mentions=[_mention(i, t) for i, t in enumerate(TEXTS)]), now=NOW)
    assert len(again.stored) == 1
    oracle_config = load_config(write_config({"store": str(Path(config.store_path).with_name("oracle.db"))},
                                             name="oracle.yaml"))
    oracle = Pipeline(config=oracle_config, store=Store(oracle_config.store_path))
    oracle.process("test", Poll(mentions=[_mention(i, t) for i, t in enumerate(TEXTS)]), now=NOW)
    assert _alerts_by_mention(pipeline.store) == _alerts_by_mention(oracle.store) != []


_KILLED_MID_BATCH = """
import os, signal, sys
from monitor.config import load_config
from monitor.pipeline import Pipeline
from monitor.source import Poll
from monitor.store import Store
from sqlalchemy import event
from tests.test_pipeline import NOW, TEXTS, _mention

config = load_config(sys.argv[1])
store = Store(config.store_path)
queued = []

@event.listens_for(store.engine, "after_cursor_execute")
def crash_at_the_second_alert(conn, cursor, statement, *args):
    if statement.startswith("INSERT INTO alerts"):
        queued.append(statement)
        if len(queued) == 2:  # the first mention and its alert are written, inside the batch
            os.kill(os.getpid(), signal.SIGKILL)

Pipeline(config=config, store=store).process(
    "test", Poll(mentions=[_mention(i, t) for i, t in enumerate(TEXTS)], state={"cursor": "after-m4"}), now=NOW)
"""


def test_a_crash_inside_a_batch_loses_nothing_the_source_reads_it_again(write_config):
    """kill -9 while a batch is half written: none of it is stored, and neither is the source's cursor, so
    the next poll reads the same items again and stores each with its alert, once."""
    import signal
    import subprocess
    import sys

    config_path = write_config()
    root = Path(__file__).resolve().parent.parent
    killed = subprocess.run([sys.executable, "-c", _KILLED_MID_BATCH, str(config_path)], cwd=root,
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    config = load_config(config_path)
    store = Store(config.store_path)
    assert store.query("SELECT count(*) FROM mentions")[0][0] == 0
    assert store.query("SELECT count(*) FROM alerts")[0][0] == 0
    assert store.source_state("test") == {}, "the cursor is not saved: the poll is read again"

    pipeline = Pipeline(config=config, store=store)
    outcome = pipeline.process("test", Poll(mentions=[_mention(i, t) for i, t in enumerate(TEXTS)],
                                            state={"cursor": "after-m4"}), now=NOW)
    assert len(outcome.stored) == 4 and store.source_state("test") == {"cursor": "after-m4"}
    alerts = _alerts_by_mention(store)
    assert len(alerts) == len(set(alerts)) >= 2, "each alert once"

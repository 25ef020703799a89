"""A poll through the stages together (match, read, rank and store) with a real store."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone

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

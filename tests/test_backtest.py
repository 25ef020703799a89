"""Backtest replays what the daemon saw: readings in time, successive readings of one post, a stored history."""

from __future__ import annotations

import io
import time

import pandas as pd
import pytest

from tests.servers.reddit import RedditServer
from tests.test_reddit import setup  # noqa: F401 - the Reddit source + pipeline + store fixture
from tests.test_scoring import cli

COMPLAINT = "Acme charged me twice and support hung up on me. Still no refund. Furious."


def test_a_replayed_history_gives_the_scores_the_daemon_gave(reddit: RedditServer, setup, write_config,  # noqa: F811
                                                             tmp_path):
    now = time.time()
    reddit.add_subreddit("CustomerService", subscribers=250_000)
    reddit.add_post(subreddit="CustomerService", id="a1", title="Acme double charged me", selftext=COMPLAINT,
                    created_utc=now - 1500, score=12, num_comments=3)
    reddit.add_post(subreddit="CustomerService", id="b1", title="New kettle", selftext="My Acme kettle arrived.",
                    created_utc=now - 3300, score=40, num_comments=1)
    reddit.add_post(subreddit="CustomerService", id="c1", title="Acme app", selftext="The Acme app looks different.",
                    created_utc=now - 300, score=1, num_comments=0)
    _, run, store, clock = setup(reddit)
    run()
    growth = {"a1": [(60, 15), (400, 90), (2_500, 700), (2_600, 720)], "b1": [(41, 1), (41, 2), (45, 2), (44, 2)],
              "c1": [(5, 1), (3, 1), (30, 9), (300, 40)]}
    for step, minutes in enumerate((5, 10, 20, 40)):
        clock.advance(minutes * 60 + 1)
        for post, readings in growth.items():
            reddit.update_post(post, score=readings[step][0], num_comments=readings[step][1])
        assert len(run().updates) == 3
    stored = pd.DataFrame([dict(r) for r in store.query("SELECT id, urgency, virality, priority FROM mentions")])
    assert len(stored) == 3 and stored["priority"].nunique() > 1

    # The history as an analyst exports it: every reading (snapshot) with its mention's words.
    config = write_config()
    for table in ("mentions", "snapshots"):
        result = cli(config, "export", "--table", table, "--out", str(tmp_path / f"{table}.csv"))
        assert result.returncode == 0, result.stderr
    mentions = pd.read_csv(tmp_path / "mentions.csv", dtype=str, keep_default_na=False)
    snapshots = pd.read_csv(tmp_path / "snapshots.csv", dtype=str, keep_default_na=False)
    assert len(snapshots) == 15
    history = snapshots.rename(columns={"mention_id": "id", "taken_at": "fetched_at"})[
        ["id", "fetched_at", "score", "comments", "upvote_ratio", "awards"]].merge(
        mentions[["id", "source", "kind", "title", "text", "author", "place", "created_at", "reach"]], on="id")
    history["subreddit"] = history["place"].str.removeprefix("r/")
    history.sample(frac=1, random_state=3).to_csv(tmp_path / "history.csv", index=False)  # any order

    result = cli(config, "backtest", str(tmp_path / "history.csv"), "--out", str(tmp_path / "scored.csv"))
    assert result.returncode == 0, result.stderr
    scored = pd.read_csv(tmp_path / "scored.csv", parse_dates=["fetched_at"])
    last = scored.sort_values("fetched_at").groupby("id").last()
    for row in stored.itertuples():
        replayed = last.loc[row.id]
        assert (replayed["urgency"], replayed["virality"], replayed["priority"]) == (
            row.urgency, row.virality, row.priority), row.id
    # Each reading was scored with only what was known then: c1 lost points while its score fell, then rose.
    c1 = scored[scored["text"].str.contains("app looks")].sort_values("fetched_at")["virality"].tolist()
    assert len(c1) == 5 and c1[0] < c1[1] and c1[2] < c1[1] < c1[3] < c1[4]


def test_rows_of_one_id_are_successive_readings_and_now_sightings_subreddit_are_used(write_config, tmp_path):
    pack = tmp_path / "pack.yaml"
    pack.write_text("rules:\n  - {name: espresso-fans, when: 'subreddit == \"espresso\"', urgency: 40}\n")
    config = write_config({"rules": [str(pack)]})
    rows = [
        {"id": "p", "text": "My Acme grinder", "created_at": "2026-11-01T10:00:00Z",
         "fetched_at": "2026-11-01T11:00:00Z", "score": 100, "sightings": "", "subreddit": "espresso"},
        {"id": "p", "text": "My Acme grinder", "created_at": "2026-11-01T10:00:00Z",
         "fetched_at": "2026-11-01T11:05:00Z", "score": 200, "sightings": "", "subreddit": "espresso"},
        {"id": "q", "text": "My Acme grinder", "created_at": "2026-11-01T10:00:00Z",
         "fetched_at": "2026-11-01T11:05:00Z", "score": 200, "sightings": "", "subreddit": ""},
        {"id": "r", "text": "My Acme grinder", "created_at": "2026-11-01T10:00:00Z",
         "fetched_at": "2026-11-01T11:05:00Z", "score": 200, "sightings": 4, "subreddit": ""},
        {"id": "s", "text": "My Acme grinder", "created_at": "2026-11-01T10:00:00Z",
         "fetched_at": "", "score": 200, "sightings": "", "subreddit": ""},
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "in.csv", index=False)
    out = tmp_path / "out.csv"

    def replay(*args):
        result = cli(config, "backtest", str(tmp_path / "in.csv"), "--out", str(out), *args)
        assert result.returncode == 0, result.stderr
        return pd.read_csv(out, keep_default_na=False)

    scored = replay("--now", "2026-11-01T14:00:00Z")
    virality = scored["virality"].tolist()
    # p's second reading gained 100 points in 5 minutes: far steeper than q, seen once with the same numbers.
    assert virality[1] > virality[0] and virality[1] > virality[2]
    assert virality[3] > virality[2]  # seen in four places
    assert virality[4] < virality[2]  # read at --now, four hours after posting: a slower rate
    urgency = scored["urgency"].tolist()  # the complaint model's points, and the rule's 40 in r/espresso
    assert urgency[0] == urgency[1] == pytest.approx(urgency[2] + 40) and "espresso-fans" in scored["reasons"][0]
    # Without --now, a row without fetched_at is read at the newest time in the file.
    assert replay()["virality"].tolist()[4] == pytest.approx(virality[2])


def test_progress_is_heard_while_the_words_are_read_and_then_while_rows_are_ranked(write_config):
    from monitor.backtest import Progress, backtest
    from monitor.config import load_config

    config = load_config(write_config())
    frame = pd.DataFrame({"id": [str(i) for i in range(6)],
                          "text": [COMPLAINT, "My Acme kettle arrived.", COMPLAINT, "The Acme app looks different.",
                                   COMPLAINT, "My Acme kettle arrived."]})
    heard = []
    scored = backtest(frame, config=config, progress=lambda done, stage: heard.append((stage, done)))
    assert heard == [("read", i) for i in range(1, 7)] + [("scored", i) for i in range(1, 7)]
    assert len(scored) == 6 and scored["urgency"][0] == scored["urgency"][2] > scored["urgency"][1]

    report = Progress(total=6, every=3600)
    report.stream = io.StringIO()
    backtest(frame, config=config, progress=report)
    lines = report.stream.getvalue().splitlines()
    assert [line.split(" (")[0] for line in lines] == ["read 6/6 rows", "scored 6/6 rows"], lines

"""The analyst's side on a store built by the real pipeline: typed loaders, filters, exports, the report."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

from monitor import load_alerts, load_mentions, load_snapshots, load_stories
from monitor.alert import deliver_pending
from monitor.analysis import LOADERS, MENTION_COLUMNS, PRIORITY_DTYPE, expand_reasons, export
from monitor.config import load_config
from monitor.mail import transport_for
from monitor.mention import Engagement, Mention
from monitor.pipeline import Pipeline
from monitor.report import _day_axis, breakdown, build_report
from monitor.source import Poll
from monitor.store import Store, frames, schema, to_epoch
from monitor.store.database import is_url
from tests.conftest import ROOT

# Priorities on demand, as in test_alerts: the words pick the urgency and vouch for a complaint.
PACK = textwrap.dedent("""
    rules:
      - {name: red, when: 'text =~~ "RED"', urgency: 80, tags: [fire, complaint]}
      - {name: amber, when: 'text =~~ "AMBER"', urgency: 55, tags: [billing, complaint]}
      - {name: grey, when: 'text =~~ "GREY"', urgency: 30, tags: [complaint]}
      - {name: faint, when: 'text =~~ "FAINT"', urgency: 5, tags: [complaint]}
      - {name: growing, when: recent_velocity >= 100, virality: 80}
""")
# Alerts are queued on the real clock, so the stories are told relative to it.
NOW = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)


def post(source: str, source_id: str, text: str, *, brand: str = "Acme", days_old: float = 0, score: int | None = 1,
         comments: int | None = 0, title: str | None = None, place: str | None = None) -> Mention:
    created = NOW - timedelta(days=days_old)
    return Mention(source=source, source_id=source_id, url=f"https://{source}.example/{source_id}",
                   title=title or f"{brand} {source_id}", text=f"{brand} {text}", author="someone",
                   place=place or ("r/test" if source == "reddit" else "Some blog"), created_at=created,
                   fetched_at=created + timedelta(minutes=5), engagement=Engagement(score=score, comments=comments))


@pytest.fixture
def built(tmp_path, write_config, store_where):
    """A store filled by Pipeline.process/update_engagement and alert delivery to the outbox folder, on
    SQLite and on PostgreSQL: the loaders give the same frames from both."""
    pack = tmp_path / "pack.yaml"
    pack.write_text(PACK)
    config = load_config(write_config({
        "store": store_where,
        "brands": [{"name": "Acme", "keywords": ["acme"]}, {"name": "Globex", "keywords": ["globex"]}],
        "rules": [str(pack)], "complaint": {"urgency_points": 0},
        "responders": [{"email": "oncall@test.local", "brands": "all", "min_priority": "P2"}],
    }))
    store = Store(config.store_path)
    pipeline = Pipeline(config=config, store=store)
    # r1 and r2 are one story told in two subreddits (the same title): the pipeline clusters them.
    reddit = [post("reddit", "r1", "RED charged me twice and hung up, furious", days_old=1, score=10, comments=3,
                   title="Acme charged me twice for one order"),
              post("reddit", "r2", "AMBER billing mess, still waiting for a refund", days_old=1.5,
                   title="Acme charged me twice for one order!", place="r/personalfinance"),
              post("reddit", "r3", "support was lovely, thanks", days_old=8, title="<script>alert(1)</script> Acme"),
              post("reddit", "g1", "RED exploded in my kitchen", brand="Globex", days_old=2)]
    feeds = [post("rss", "f1", "GREY the app is a bit slow today", days_old=5, score=None, comments=None),
             post("rss", "f2", "AMBER lost my parcel again", days_old=0.5, score=None, comments=None)]
    for source, mentions in (("reddit", reddit), ("rss", feeds)):
        pipeline.process(source, Poll(mentions=mentions), now=NOW)
    # The first Reddit post takes off: two later readings of its numbers.
    for hours, score in ((2, 400), (5, 2500)):
        update = post("reddit", "r1", "", days_old=1, score=score, comments=score // 10)
        update.fetched_at = NOW - timedelta(days=1) + timedelta(hours=hours)
        pipeline.update_engagement("reddit", [update])
    deliver_pending(store, transport_for(config.email, base_dir=config.base_dir), config)
    # A story from long ago whose mentions are no longer kept.
    with store.transaction() as db:
        db.execute(schema.stories.insert().values(
            brand="Globex", key="old", title="Old Globex story", url="https://x.example", sightings=1,
            first_seen=to_epoch(NOW - timedelta(days=40)), last_seen=to_epoch(NOW - timedelta(days=39))))
    store.close()
    return config


def test_mentions_have_documented_dtypes(built):
    df = load_mentions(built)
    assert len(df) == 6
    assert str(df["created_at"].dtype) == "datetime64[ns, UTC]"
    assert str(df["fetched_at"].dtype) == "datetime64[ns, UTC]"
    for column in ("brand", "source", "kind"):
        assert isinstance(df[column].dtype, pd.CategoricalDtype), column
    assert df["priority"].dtype == PRIORITY_DTYPE and df["priority"].dtype.ordered
    assert list(df["priority"].cat.categories) == ["P4", "P3", "P2", "P1"]
    for column in ("score", "comments", "awards", "story_id"):
        assert str(df[column].dtype) == "Int64", column
    for column in ("compound", "urgency", "virality", "reach", "upvote_ratio"):
        assert df[column].dtype == "float64", column
    assert df["suppressed"].dtype == bool
    by_id = df.set_index("source_id")
    assert by_id.loc["r1", "created_at"] == pd.Timestamp(NOW - timedelta(days=1))
    assert pd.isna(by_id.loc["f1", "score"]), "RSS has no score: a missing value, not 0"
    assert by_id.loc["r1", "score"] == 2500, "the latest engagement reading"
    assert by_id.loc["r1", "priority"] == "P1" and by_id.loc["r2", "priority"] == "P2"
    assert by_id.loc["r1", "rules"] == ["red", "growing"], "re-scored as it grew"
    assert by_id.loc["r2", "rules"] == ["amber"]
    assert by_id.loc["r3", "rules"] == [] and isinstance(by_id.loc["r3", "tags"], list)
    assert "fire" in by_id.loc["r1", "tags"]
    assert by_id.loc["r1", "story_id"] == by_id.loc["r2", "story_id"]
    by_id.loc["r1", "tags"].append("mutated")
    assert "mutated" not in by_id.loc["g1", "tags"], "rows never share one list object"
    reasons = json.loads(by_id.loc["r1", "reasons"])
    assert any(r["name"] == "red" for r in reasons)


def test_a_store_read_in_key_ranges_gives_what_one_query_gives(tmp_path):
    """A large SQLite read goes in ranges of ids side by side; put together they are the one query's result,
    even where a column is all NULL in one range (its reader types it int64) and text in another."""
    path = tmp_path / "ranges.db"
    store = Store(path)
    ids = [*range(1, 6), *range(400_001, 400_006)]
    with store.transaction() as db:
        db.execute(schema.mentions.insert(), [dict(
            id=i, source="rss", source_id=str(i), kind="post", url=f"https://blog.example/{i}", title=f"Acme {i}",
            text="Acme lost my parcel", place="Some blog", created_at=1_790_000_000.0 + i, fetched_at=1_790_000_060.5 + i,
            brand="Acme", quote="lost my parcel", extra="{}",
            author="someone" if i > 400_000 else None, score=i if i > 400_000 else None,
            priority="P2" if i > 400_000 else None, tags='["billing"]' if i > 400_000 else None,
        ) for i in ids])
    store.close()
    uri = f"{path.resolve().as_uri()}?mode=ro"
    query = frames.select(*frames._columns(MENTION_COLUMNS, schema.mentions, {})).order_by(schema.mentions.c.id)
    whole = frames._read_sqlite(uri, query)
    in_ranges = frames._read_in_ranges(uri, query, schema.mentions.c.id, [200_000])
    assert in_ranges.num_rows == len(ids) and in_ranges.column("id").to_pylist() == ids
    assert in_ranges.equals(whole), "the ranges put together differ from the one query"
    assert str(in_ranges.schema.field("author").type) == "string"

    df = load_mentions(path)
    assert df["id"].tolist() == ids and str(df["score"].dtype) == "Int64" and df["score"].isna().sum() == 5
    assert df["author"].isna().sum() == 5 and (df["author"].iloc[5:] == "someone").all()
    assert df["priority"].dtype == PRIORITY_DTYPE and df["priority"].isna().sum() == 5
    assert df["tags"].iloc[0] == [] and df["tags"].iloc[-1] == ["billing"]


def test_ranges_read_while_the_store_is_written_are_dropped_for_one_query(tmp_path):
    """The ranges are read on connections of their own, each seeing the store as it was when it started:
    a write committed while they read could show in one and not another, so that result is never used
    (load_mentions then reads the table in one query)."""
    path = tmp_path / "busy.db"
    store = Store(path)
    with store.transaction() as db:
        db.execute(schema.mentions.insert(), [dict(
            id=i, source="rss", source_id=str(i), kind="post", url=f"https://blog.example/{i}", title="Acme",
            text="Acme lost my parcel", place="Some blog", created_at=1_790_000_000.0, fetched_at=1_790_000_060.0,
            brand="Acme", quote="lost my parcel", extra="{}", score=0) for i in (1, 2, 400_001, 400_002)])
    store.close()
    uri = f"{path.resolve().as_uri()}?mode=ro"
    query = frames.select(*frames._columns(MENTION_COLUMNS, schema.mentions, {})).order_by(schema.mentions.c.id)
    assert frames._read_in_ranges(uri, query, schema.mentions.c.id, [200_000]).num_rows == 4, "a quiet store"

    # The daemon at work, in a process of its own: one commit after another.
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sqlite3, sys
        db = sqlite3.connect({str(path)!r}, timeout=30)
        print("writing", flush=True)
        while True:
            with db:
                db.execute("UPDATE mentions SET score = score + 1 WHERE id = 1")
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline() == "writing\n"
        results = [frames._read_in_ranges(uri, query, schema.mentions.c.id, [200_000]) for _ in range(20)]
    finally:
        writer.kill()
        writer.wait()
    assert any(result is None for result in results), "ranges read while commits landed were used"
    df = load_mentions(path)
    assert df["id"].tolist() == [1, 2, 400_001, 400_002] and df["score"].iloc[0] > 0


# Another process asking for the store's write lock: what it is told.
WRITE_LOCK_PROBE = textwrap.dedent("""
    import sqlite3, sys
    db = sqlite3.connect(sys.argv[1], timeout=0.1, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        print("got the write lock")
    except sqlite3.OperationalError as err:
        print(err)
""")


class Undone(Exception):
    pass


def test_loading_while_a_store_of_this_process_writes_keeps_its_lock_and_gives_the_same_frames(built):
    """ADBC's driver bundles a SQLite of its own, and POSIX locks belong to the process: reading through it
    while this process's Store holds the write lock dropped that lock, and another process (the daemon) could
    write under it. With the file open here the loaders read through Python's sqlite3: the lock holds, and
    the frames are what they are with nothing open."""
    if is_url(built.store_path):
        pytest.skip("a PostgreSQL store has no file locks")
    alone = {name: load(built) for name, load in LOADERS.items()}
    assert not frames.open_in_this_process(Path(built.store_path))
    store = Store(built.store_path)
    try:
        with pytest.raises(Undone), store.transaction() as db:
            db.execute(schema.stories.update().values(title="being edited"))  # the write lock, until rollback
            assert frames.open_in_this_process(Path(built.store_path))
            held = {name: load(built) for name, load in LOADERS.items()}
            other = subprocess.run([sys.executable, "-c", WRITE_LOCK_PROBE, str(built.store_path)],
                                   capture_output=True, text=True, timeout=60)
            assert other.stdout.strip() == "database is locked", other.stdout + other.stderr
            raise Undone
    finally:
        store.close()
    for name in LOADERS:
        pd.testing.assert_frame_equal(held[name], alone[name], obj=name)
    assert len(held["mentions"]) == 6 and len(held["stories"]) > 0


def test_mention_filters_agree_with_pandas(built):
    full = load_mentions(built)
    since = pd.Timestamp(NOW - timedelta(days=4))
    cases = [
        ({"brand": "Acme"}, full["brand"] == "Acme"),
        ({"brand": ["Globex", "Nobody"]}, full["brand"] == "Globex"),
        ({"source": "rss"}, full["source"] == "rss"),
        ({"since": since.isoformat()}, full["created_at"] >= since),
        ({"until": since.to_pydatetime()}, full["created_at"] < since),
        ({"min_priority": "P2"}, full["priority"] >= "P2"),
        ({"brand": "Acme", "source": "reddit", "since": since.strftime("%Y-%m-%d %H:%M")},
         (full["brand"] == "Acme") & (full["source"] == "reddit") & (full["created_at"] >= since)),
    ]
    for filters, expected in cases:
        got = load_mentions(built, **filters)
        want = sorted(full.loc[expected, "source_id"])
        assert sorted(got["source_id"]) == want, filters
        assert 0 < len(want) < len(full), f"{filters} should select some rows but not all"
    assert load_mentions(built, brand="Nobody").empty


def test_loaders_accept_config_path_store_path_and_config(built):
    config_file = built.base_dir / "config.yaml"
    frames = [load_mentions(built), load_mentions(config_file), load_mentions(str(built.store_path))]
    pd.testing.assert_frame_equal(frames[0], frames[1])
    pd.testing.assert_frame_equal(frames[0], frames[2])
    with pytest.raises(FileNotFoundError, match="no store"):
        load_mentions(built.base_dir / "missing.db")
    with pytest.raises(ValueError, match="min_priority"):
        load_mentions(built, min_priority="P9")
    with pytest.raises(ValueError, match="ISO date"):
        load_mentions(built, since="last tuesday-ish")


def test_alerts_join_their_mentions_and_time_the_response(built):
    alerts = load_alerts(built)
    mentions = load_mentions(built).set_index("id")
    assert len(alerts) >= 3 and set(alerts["status"]) == {"sent"}
    assert alerts["priority"].dtype == PRIORITY_DTYPE
    assert set(alerts["priority"].astype(str)) <= {"P1", "P2"}, "the responder only wants P2 and above"
    assert str(alerts["sent_at"].dtype) == "datetime64[ns, UTC]"
    assert str(alerts["response_time"].dtype) == "timedelta64[ns]"
    for _, alert in alerts.iterrows():
        mention = mentions.loc[alert["mention_id"]]
        assert alert["brand"] == mention["brand"]
        assert alert["response_time"] == alert["sent_at"] - mention["fetched_at"]
    assert set(load_alerts(built, brand="Globex")["brand"]) == {"Globex"}
    assert set(load_alerts(built, min_priority="P1")["priority"]) == {"P1"}
    assert load_alerts(built, since=NOW + timedelta(days=1)).empty


def test_snapshots_trace_growth(built):
    snaps = load_snapshots(built, brand="Acme", source="reddit")
    r1 = load_mentions(built).set_index("source_id").loc["r1", "id"]
    growth = snaps[snaps["mention_id"] == r1]
    assert list(growth["score"]) == [10, 400, 2500]
    assert growth["taken_at"].is_monotonic_increasing
    assert list(growth["age"]) == [timedelta(minutes=5), timedelta(hours=2), timedelta(hours=5)]
    assert str(snaps["score"].dtype) == "Int64" and snaps["priority"].dtype == PRIORITY_DTYPE
    assert load_snapshots(built, source="rss").empty, "feed items carry no engagement numbers"


def test_stories_add_up_their_mentions(built):
    stories = load_stories(built)
    mentions = load_mentions(built).set_index("source_id")
    charged = mentions.loc["r1", "story_id"]
    assert mentions.loc["r2", "story_id"] == charged
    assert stories.iloc[0]["id"] == charged, "most viral first"
    story = stories.iloc[0]
    assert story["mentions"] == 2 and story["sightings"] == 2
    assert story["priority"] == "P1" and story["sources"] == ["reddit"]
    assert str(stories["first_seen"].dtype) == "datetime64[ns, UTC]"
    old = stories[stories["key"] == "old"].iloc[0]
    assert old["mentions"] == 0 and old["brand"] == "Globex"
    assert "old" not in set(load_stories(built, since=NOW - timedelta(days=10))["key"])
    p1_stories = set(mentions.loc[mentions["priority"] == "P1", "story_id"])
    assert charged in p1_stories and set(load_stories(built, min_priority="P1")["id"]) == p1_stories
    assert set(load_stories(built, source="rss")["id"]) == set(mentions.loc[["f1", "f2"], "story_id"])
    assert set(load_stories(built, brand="Globex")["key"]) >= {"old"}


def test_expand_reasons_gives_one_row_per_reason(built):
    mentions = load_mentions(built)
    reasons = expand_reasons(mentions)
    rules = reasons[reasons["kind"] == "rule"]
    by_mention = rules.groupby("mention_id")["name"].apply(lambda s: sorted(s.astype(str)))
    for _, row in mentions.iterrows():
        assert by_mention.get(row["id"], []) == sorted(row["rules"])
    assert reasons["urgency"].dtype == "float64"
    assert expand_reasons(mentions.iloc[:0]).empty


def test_empty_store_loads_empty_typed_frames(tmp_path):
    store = tmp_path / "odd #name?" / "empty.db"  # the path goes into a file: URI
    Store(store).close()
    df = load_mentions(store)
    assert df.empty and str(df["created_at"].dtype) == "datetime64[ns, UTC]"
    assert df["priority"].dtype == PRIORITY_DTYPE and str(df["score"].dtype) == "Int64"
    for loader in (load_alerts, load_snapshots, load_stories):
        assert loader(store).empty


def test_parquet_round_trip_gives_back_the_same_frame(built, tmp_path):
    for table, loader in (("mentions", load_mentions), ("alerts", load_alerts), ("snapshots", load_snapshots),
                          ("stories", load_stories)):
        out = tmp_path / f"{table}.parquet"
        assert export(built, out, fmt="parquet", table=table, brand="Acme") == len(loader(built, brand="Acme"))
        pd.testing.assert_frame_equal(pd.read_parquet(out), loader(built, brand="Acme"))


def test_csv_and_jsonl_are_readable_and_filtered(built, tmp_path):
    want = load_mentions(built, min_priority="P2", source="reddit")
    export(built, tmp_path / "m.csv", fmt="csv", min_priority="P2", source="reddit")
    export(built, tmp_path / "m.jsonl", fmt="jsonl", min_priority="P2", source="reddit")
    csv = pd.read_csv(tmp_path / "m.csv")
    assert list(csv["source_id"]) == list(want["source_id"])
    assert [json.loads(v) for v in csv["rules"]] == list(want["rules"])
    assert list(pd.to_datetime(csv["created_at"], utc=True)) == list(want["created_at"].dt.floor("s"))
    lines = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [row["source_id"] for row in lines] == list(want["source_id"])
    assert [row["rules"] for row in lines] == list(want["rules"])
    assert lines[0]["created_at"].endswith("Z")


def cli(config, *args):
    return subprocess.run([sys.executable, "-m", "monitor.cli", "--config", str(config), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_export_command_writes_the_filtered_table(built, tmp_path):
    out = tmp_path / "alerts.parquet"
    done = cli(built.base_dir / "config.yaml", "export", "--table", "alerts", "--format", "parquet", "--out",
               str(out), "--brand", "Acme")
    assert done.returncode == 0, done.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(out), load_alerts(built, brand="Acme"))
    bad = cli(built.base_dir / "config.yaml", "export", "--out", str(tmp_path / "x.csv"), "--since", "soonish")
    assert bad.returncode == 2 and "ISO date" in bad.stderr
    assert not (tmp_path / "x.csv").exists()


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHARTS = {"mentions_per_day.png", "sentiment.png", "urgency.png", "stories.png", "response.png"}


def test_report_writes_page_and_charts(built, tmp_path):
    store = Store(built.store_path)
    with store.transaction() as db:  # a hostile link, as a post could carry
        db.execute(schema.mentions.update().where(schema.mentions.c.source_id == "r3")
                   .values(url="javascript:alert(document.cookie)"))
    store.close()
    index = build_report(built, tmp_path / "report")
    html = index.read_text(encoding="utf-8")
    pngs = {p.name for p in index.parent.glob("*.png")}
    assert pngs == CHARTS
    for name in pngs:
        data = (index.parent / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5000, name
        assert f'src="{name}"' in html
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "javascript:" not in html
    assert "https://" not in html.split("<body>")[0], "no remote assets"
    assert "Acme charged me twice" in html, "the clustered story is listed"
    assert "No data yet" not in html


def test_report_on_an_empty_store_says_so(tmp_path):
    Store(tmp_path / "empty.db").close()
    index = build_report(tmp_path / "empty.db", tmp_path / "report")
    assert "No data yet" in index.read_text(encoding="utf-8")
    assert list(index.parent.glob("*.png")) == []


def test_report_without_alerts_or_readings_leaves_those_charts_out(built, tmp_path):
    index = build_report(built, tmp_path / "report", source="rss")
    html = index.read_text(encoding="utf-8")
    assert {p.name for p in index.parent.glob("*.png")} == CHARTS - {"stories.png"}, "feed items have no readings"
    assert "No engagement readings yet" in html


def test_report_command_applies_filters(built, tmp_path):
    out = tmp_path / "globex"
    done = cli(built.base_dir / "config.yaml", "report", "--out", str(out), "--brand", "Globex")
    assert done.returncode == 0, done.stderr
    html = (out / "index.html").read_text(encoding="utf-8")
    assert "brand Globex" in html and "Brands: Globex" in html
    assert (out / "urgency.png").stat().st_size > 0


def test_growth_curve_starts_at_the_first_reading_even_before_first_seen():
    from monitor.report import growth_curve
    t0 = pd.Timestamp("2026-11-20 10:00", tz="UTC")
    snapshots = pd.DataFrame({"mention_id": [1, 1, 2], "taken_at": [t0, t0 + pd.Timedelta(hours=2),
                                                                     t0 + pd.Timedelta(hours=3)],
                              "score": [10, 50, 5], "comments": [0, 10, 1]})
    curve = growth_curve(snapshots, [1, 2], first_seen=t0 + pd.Timedelta(hours=1))
    assert list(curve.index) == [0.0, 2.0, 3.0]
    assert list(curve) == [10.0, 60.0, 66.0], "each mention's last reading carries forward into the total"


@pytest.fixture
def decayed(tmp_path, write_config):
    """One mention alerted at P1 while it grew, back at P2 once the growth stopped; a P4 held for a digest."""
    pack = tmp_path / "pack.yaml"
    pack.write_text(PACK)
    config = load_config(write_config({
        "rules": [str(pack)], "complaint": {"urgency_points": 0},
        "responders": [{"email": "oncall@test.local", "min_priority": "P4", "digest_below": "P3"}]}))
    store = Store(config.store_path)
    pipeline = Pipeline(config=config, store=store)
    first = post("reddit", "d1", "GREY seat broke", score=5, comments=1)
    first.created_at = first.fetched_at = datetime.now(timezone.utc) - timedelta(minutes=30)
    pipeline.process("reddit", Poll(mentions=[first, post("reddit", "q1", "FAINT nothing much", days_old=0.1)]))
    for minutes, score in ((20, 900), (90, 905)):  # takes off, then stops
        update = post("reddit", "d1", "", score=score, comments=300)
        update.fetched_at = first.fetched_at + timedelta(minutes=minutes)
        pipeline.update_engagement("reddit", [update])
    deliver_pending(store, transport_for(config.email, base_dir=config.base_dir), config)
    store.close()
    return config


def test_the_highest_priority_reached_is_kept_in_loaders_explain_and_report(decayed, tmp_path):
    mentions = load_mentions(decayed).set_index("source_id")
    assert mentions["peak_priority"].dtype == PRIORITY_DTYPE
    # Growth stopped: below P1 again (its 905 points in two hours still count as spread: P2), P1 kept as its peak.
    assert (mentions.loc["d1", "priority"], mentions.loc["d1", "peak_priority"]) == ("P2", "P1")
    assert load_stories(decayed)["peak_priority"].dtype == PRIORITY_DTYPE
    explained = cli(decayed.base_dir / "config.yaml", "explain", str(mentions.loc["d1", "id"]))
    assert "highest priority reached: P1 (alerted: P1)" in explained.stdout, explained.stdout + explained.stderr
    html = build_report(decayed, tmp_path / "report").read_text(encoding="utf-8")
    cards = dict((name, int(count)) for count, name in
                 re.findall(r'<b style="color: [^"]+">(\d+)</b><span>(P\d)</span>', html))
    assert cards == {"P1": 1, "P2": 0, "P3": 0, "P4": 1}


def test_alerts_held_on_purpose_are_told_from_delays(decayed):
    alerts = load_alerts(decayed)
    assert alerts["held"].dtype == bool and isinstance(alerts["kind"].dtype, pd.CategoricalDtype)
    by_priority = alerts.set_index("priority")
    assert bool(by_priority.loc["P4", "held"]) and bool(by_priority.loc["P4", "digest"]), "waits for the digest"
    assert not alerts[alerts["priority"] == "P1"]["held"].any()


def test_breakdown_by_category_place_and_source(built, tmp_path):
    mentions = load_mentions(built)
    tags = {r["name"]: r for r in breakdown(mentions, "tags")}
    assert tags["fire"]["mentions"] == 2 and tags["fire"]["urgent"] == 2  # r1 and g1
    assert tags["billing"]["mentions"] == 2 and "(no tag)" in tags
    assert {r["name"]: r["mentions"] for r in breakdown(mentions, "source")} == {"reddit": 4, "rss": 2}
    assert breakdown(mentions, "place")[0] == {"name": "r/test", "mentions": 3, "urgent": 2,
                                               "compound": breakdown(mentions, "place")[0]["compound"]}
    html = build_report(built, tmp_path / "report").read_text(encoding="utf-8")
    assert "Where the complaints are" in html and "Complaint category (rule tags)" in html


def test_one_day_of_data_gets_a_one_day_axis():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    day = pd.DatetimeIndex([pd.Timestamp("2026-11-20", tz="UTC")])
    fig, ax = plt.subplots()
    ax.plot(day, [3], marker="o")
    _day_axis(ax, day)
    low, high = ax.get_xlim()
    plt.close(fig)
    assert high - low <= 1.01, f"{mdates.num2date(low)} .. {mdates.num2date(high)}"

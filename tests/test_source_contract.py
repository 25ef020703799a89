"""The source contract: declarations documented in the README, and a third-party source found and run end to end."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from monitor.source import (EngagementMap, SourceField, available_sources, declared_fields, engagement_map,
                            engagement_table, source_fields_table)
from tests.servers.json_api import JsonApiServer

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_readme_lists_every_declared_extra_key_and_rule_field():
    # Generated rows (monitor.source.source_fields_table), so a changed declaration makes the README stale.
    for kind in ("extra_keys", "rule_fields"):
        missing = [row for row in source_fields_table(kind).splitlines() if row not in README]
        assert not missing, f"README rows missing or stale for {kind} (paste source_fields_table({kind!r})): {missing}"


def test_the_readme_lists_every_sources_engagement_numbers_and_the_signal_each_feeds():
    missing = [row for row in engagement_table().splitlines() if row not in README]
    assert not missing, f"README engagement rows missing or stale (paste engagement_table()): {missing}"


def test_every_built_in_source_maps_its_engagement_through_the_same_declaration():
    from monitor.mention import Engagement
    for name in ("reddit", "rss", "hackernews", "mastodon", "bluesky"):
        declared = available_sources()[name].load().engagement
        assert isinstance(declared, EngagementMap) and declared.numbers, name
    mastodon = engagement_map(available_sources()["mastodon"].load())
    numbers = {"favourites": 3, "reblogs": 2, "replies": 4, "followers": 250}
    assert (mastodon.engagement(numbers), mastodon.reach_of(numbers)) == (Engagement(score=5, comments=4), 250.0)
    assert (mastodon.engagement({"reblogs": 2}), mastodon.reach_of({})) == (Engagement(score=2), None)
    reddit = engagement_map(available_sources()["reddit"].load())
    assert reddit.engagement({"score": 7, "num_comments": 1, "upvote_ratio": 0.9, "total_awards_received": 2}) == \
        Engagement(score=7, comments=1, upvote_ratio=0.9, awards=2)
    assert engagement_map(available_sources()["rss"].load()).reach_of({"weight": 2.5}) == 2500.0
    with pytest.raises(TypeError, match="does not declare: boosts"):
        EngagementMap(numbers={"likes": SourceField("integer", "likes")}, score=("likes", "boosts"))


def test_declarations_are_typed():
    for name, entry in available_sources().items():
        for kind in ("extra_keys", "rule_fields"):
            assert all(isinstance(spec, SourceField) and spec.doc for spec in declared_fields(entry.load(), kind).values())

    class Sloppy:
        extra_keys = {"board": "a string"}

    with pytest.raises(TypeError, match="SourceField"):
        declared_fields(Sloppy, "extra_keys")


def test_the_built_in_api_sources_are_registered_as_a_third_party_would_be():
    assert {"hackernews", "mastodon", "bluesky", "reddit", "rss"} <= set(available_sources())


class BoardServer(JsonApiServer):
    def __init__(self):
        super().__init__()
        self.posts: list[dict] = []

    def route(self, path, query):
        since = int(query.get("since", ["0"])[0])
        return 200, [p for p in self.posts if p["id"] > since]


def readme_example() -> str:
    """The third-party source printed in the README's "Writing a source": the test runs exactly that code."""
    blocks = re.findall(r"```python\n(# acme_status/__init__.py.*?)```", README, re.S)
    assert len(blocks) == 1, "the README's third-party source example is gone"
    return blocks[0]


def test_a_third_party_source_from_its_own_package_directory_works_end_to_end(tmp_path, write_config):
    package_dir = tmp_path / "site"
    (package_dir / "acme_status").mkdir(parents=True)
    (package_dir / "acme_status" / "__init__.py").write_text(readme_example(), encoding="utf-8")
    # What pip leaves for an installed distribution: its metadata and its entry points, found on sys.path.
    dist = package_dir / "acme_status-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-status\nVersion: 0.1\n", encoding="utf-8")
    (dist / "entry_points.txt").write_text("[complaint_monitor.sources]\nstatuspage = acme_status:StatusPageSource\n",
                                           encoding="utf-8")
    with BoardServer() as board:
        board.posts = [
            {"id": 1, "url": "https://status.acme.test/p/1", "title": "Acme double charged me", "board": "billing",
             "text": "Acme charged me twice and support hung up on me. Still no refund. Furious.",
             "author": "zoe", "created": time.time() - 60, "votes": 4},
            {"id": 2, "url": "https://status.acme.test/p/2", "title": "Coffee", "board": "chat",
             "text": "Nice weather for coffee", "author": "yan", "created": time.time() - 30},
        ]
        config = write_config({"sources": {"statuspage": {"url": f"{board.url}/posts"}}})

        def once() -> subprocess.CompletedProcess:
            return subprocess.run([sys.executable, "-m", "monitor.cli", "once", "--config", str(config)],
                                  env={"PYTHONPATH": str(package_dir), "PATH": "/usr/bin:/bin"}, cwd=ROOT,
                                  capture_output=True, text=True, timeout=120)

        first = once()
        assert first.returncode == 0, first.stderr
        assert first.stdout.startswith("1 new mentions"), first.stdout
        board.posts.append({"id": 3, "url": "https://status.acme.test/p/3", "title": "", "board": "billing",
                            "text": "Acme still has not refunded me", "created": time.time()})
        second = once()
        assert second.returncode == 0 and second.stdout.startswith("1 new mentions"), second.stdout + second.stderr
        assert [q.get("since") for _, q in board.requests] == [["0"], ["2"]]  # the cursor, across two processes
    with sqlite3.connect(tmp_path / "store.db") as db:
        rows = db.execute("SELECT source, source_id, place, author, score, extra FROM mentions ORDER BY id").fetchall()
    assert [(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows] == [
        ("statuspage", "1", "status board billing", "zoe", 4, {"board": "billing"}),
        ("statuspage", "3", "status board billing", None, None, {"board": "billing"}),
    ]
    assert len(list((tmp_path / "outbox").glob("*.eml"))) >= 1


def test_the_new_sources_are_built_from_the_config_and_polled_by_the_monitor(write_config):
    from monitor.app import Monitor
    from monitor.config import load_config
    from monitor.health import format_status, status
    from tests.servers.bluesky import AppViewServer, JetstreamServer
    from tests.servers.hackernews import HackerNewsServer
    from tests.servers.mastodon import MastodonServer

    now = time.time()
    with HackerNewsServer() as hn, MastodonServer() as social, JetstreamServer() as jetstream, \
            AppViewServer() as appview:
        hn.add_story(1, title="Acme billed me twice", created=now - 60)
        social.add_status("<p>Acme lost my parcel</p>", acct="carol")
        # A first start reads the firehose from the moment it polls: the post comes a little later.
        uri = jetstream.add_post(did="did:plc:bob", rkey="1", text="Acme support never answers",
                                 time_us=int((now + 30) * 1e6))
        config = load_config(write_config({"sources": {
            "hackernews": {"api_url": f"{hn.url}/api/v1"},
            "mastodon": {"instances": [{"url": social.url, "hashtags": ["acme"]}]},
            "bluesky": {"jetstream_url": jetstream.url, "appview_url": appview.url, "idle_timeout": 0.3},
        }}))
        monitor = Monitor.from_config(config)
        try:
            reports = {r.source: r for r in monitor.poll_all()}
            rows = monitor.store.query("SELECT source, source_id FROM mentions ORDER BY source")
            report = status(monitor.store, {"hackernews": 60, "mastodon": 60, "bluesky": 60}, now=now + 60)
        finally:
            monitor.close()
    assert {name: r.errors for name, r in reports.items()} == {"hackernews": [], "mastodon": [], "bluesky": []}
    assert [(r["source"], r["source_id"]) for r in rows] == [
        ("bluesky", uri), ("hackernews", "1"), ("mastodon", social.statuses[0]["uri"])]
    # Each source's own status section (its status_section), from what its poll stored.
    sections = {name: report["sources"][name]["detail"] for name in ("hackernews", "mastodon", "bluesky")}
    assert sections["hackernews"][0].startswith("  api: ok; newest item read ")
    assert " s before now); 1 stories tracked for growth" in sections["hackernews"][0]
    assert abs(report["sources"]["hackernews"]["hackernews"]["lag_seconds"] - 120) <= 1.5  # posted 60 s before the poll
    assert sections["bluesky"][0].startswith("  jetstream: ok; read up to ")
    assert sections["bluesky"][1] == "  appview: ok; 1 posts tracked for growth"
    host = social.url[7:]
    assert sections["mastodon"][0].startswith(f"  instance {host}: ok; streaming (0 breaks")
    assert "cursors public since " in sections["mastodon"][0] and "mentions last hour 1" in sections["mastodon"][0]
    assert report["sources"]["mastodon"]["instances"][host]["mode"] == "streaming"
    assert "\n".join(sections["mastodon"]) in format_status(report)


def test_every_extra_key_the_built_in_sources_store_is_declared(reddit, feeds, write_config):
    """The declarations are the contract: what Reddit and RSS really put in ``Mention.extra`` (read back from the
    store after real polls of the local servers, an edit included) is declared, and nothing is declared for show."""
    from monitor.app import Monitor
    from monitor.config import load_config
    from tests.conftest import local_sources
    from tests.servers.feeds import recent, rss

    now = time.time()
    reddit.add_post(subreddit="Travel", id="p1", title="Acme lost my bag", selftext="Acme lost my bag, no answer.",
                    created_utc=now - 120, score=5, num_comments=1)
    reddit.add_comment(subreddit="Travel", id="c1", link_id="t3_p1", body="Acme did the same to me",
                       created_utc=now - 60)
    url = feeds.serve("/f.xml", rss([{"title": "Acme strands passengers", "link": "https://news.example/a?utm_source=x",
                                      "guid": "a1", "description": "Acme again.", "pubDate": recent()}]))
    config = load_config(write_config({"sources": local_sources(reddit, subreddits=["Travel"],
                                                                feeds=[{"url": url, "name": "News"}])}))
    monitor = Monitor.from_config(config)
    try:
        monitor.poll("reddit")
        monitor.poll("rss")
        rows = monitor.store.query("SELECT source, kind, extra FROM mentions")
    finally:
        monitor.close()
    assert {(r["source"], r["kind"]) for r in rows} == {("reddit", "post"), ("reddit", "comment"), ("rss", "entry")}
    sources = available_sources()
    for source in ("reddit", "rss"):
        declared = set(declared_fields(sources[source].load(), "extra_keys"))
        stored = {key for r in rows if r["source"] == source for key in json.loads(r["extra"])}
        assert stored <= declared, f"{source} stores undeclared extra keys: {stored - declared}"
        # Declared but never seen here: only what a post in these tests cannot show (crossposts, edits, removals).
        assert declared - stored <= {"first_text", "gone", "crosspost_parent", "crosspost_from"}, source

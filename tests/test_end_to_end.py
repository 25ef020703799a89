"""The whole pipeline against local servers: Reddit (praw), a feed, SMTP, and the store on SQLite and on
PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import time

from monitor import load_mentions
from tests.conftest import ROOT
from tests.servers.feeds import recent, rss

COMPLAINT = ("Acme charged me twice for the same order and support hung up on me. Third time I call, "
             "still no refund. Absolutely furious, never again.")
PRAISE = "Shout out to Acme support, they fixed my order in five minutes. Great service, thank you!"


def cli(config, *args):
    return subprocess.run([sys.executable, "-m", "monitor.cli", "--config", str(config), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_once_delivers_each_complaint_once_and_ranks_praise_lower(reddit, feeds, smtp, write_config, store_where):
    now = time.time()
    reddit.add_subreddit("CustomerService", subscribers=250_000)
    reddit.add_post(subreddit="CustomerService", id="c1", title="Acme double charged me", selftext=COMPLAINT,
                    author="furious_fran", created_utc=now - 120, score=40, num_comments=12)
    reddit.add_post(subreddit="CustomerService", id="p1", title="Acme support rocks", selftext=PRAISE,
                    author="happy_hal", created_utc=now - 60, score=5)
    reddit.add_post(subreddit="CustomerService", id="o1", title="Unrelated", selftext="My cat is great.",
                    created_utc=now - 30)
    # Outside the watched subreddits: only the brand search finds it.
    reddit.add_post(subreddit="mildlyinfuriating", id="s1", title="My ACME kettle exploded",
                    selftext="The Acme kettle caught fire on day two. Dangerous product.", created_utc=now - 200)
    feed_url = feeds.serve("/acme.xml", rss([
        {"title": "Acme lost my luggage and nobody answers", "link": "https://blog.example/acme-luggage",
         "guid": "luggage-1", "description": "<p>Acme lost my bag. I have emailed them 5 times. "
                                              "I'm talking to a lawyer.</p>", "pubDate": recent()},
    ]))
    config = write_config({
        "store": store_where,
        # A second brand, so one responder watches a brand nobody mentions.
        "brands": [{"name": "Acme", "keywords": ["acme", "@acmesupport"], "own_accounts": ["acmesupport"]},
                   {"name": "Globex"}],
        "sources": {
            "reddit": {"client_id": "test-id", "client_secret": "test-secret", "user_agent": "complaint-monitor tests",
                       "subreddits": ["CustomerService"], "oauth_url": reddit.url, "reddit_url": reddit.url,
                       "search": True},
            "rss": {"feeds": [{"url": feed_url, "name": "Luggage blog"}]},
        },
        "email": {"smtp": {"host": "127.0.0.1", "port": smtp.port}},
        "responders": [{"email": "oncall@test.local", "brands": ["Acme"], "min_priority": "P2"},
                       {"email": "boss@test.local", "brands": "all", "min_priority": "P2"},
                       {"email": "other-brand@test.local", "brands": ["Globex"], "min_priority": "P4"}],
    })

    first = cli(config, "once")
    assert first.returncode == 0, first.stderr
    assert "0 source errors" in first.stdout, first.stderr

    for recipient in ("oncall@test.local", "boss@test.local"):
        subjects = sorted(str(m["Subject"]) for m in smtp.to(recipient))
        assert len(subjects) == 3, subjects
        assert any("double charged" in s for s in subjects)
        assert any("kettle exploded" in s for s in subjects)
        assert any("lost my luggage" in s for s in subjects)
    assert smtp.to("other-brand@test.local") == []
    assert len(smtp.messages) == 6

    second = cli(config, "once")
    assert second.returncode == 0, second.stderr
    assert len(smtp.messages) == 6  # nothing new, nothing twice

    df = load_mentions(config)
    assert sorted(df["source_id"]) == sorted(["t3_c1", "t3_p1", "t3_s1", f"{feed_url}|luggage-1"])
    by_id = df.set_index("source_id")
    assert str(df["created_at"].dtype) == "datetime64[ns, UTC]" or "UTC" in str(df["created_at"].dtype)
    assert by_id.loc["t3_c1", "compound"] < by_id.loc["t3_p1", "compound"]
    assert by_id.loc["t3_p1", "urgency"] < by_id.loc["t3_c1", "urgency"]
    assert by_id.loc["t3_c1", "priority"] in ("P1", "P2")
    assert by_id.loc["t3_c1", "rules"], "the complaint's reasons are stored"

    import pandas as pd
    out = config.parent / "mentions.parquet"
    exported = cli(config, "export", "--format", "parquet", "--out", str(out), "--source", "reddit")
    assert exported.returncode == 0, exported.stderr
    back = pd.read_parquet(out)
    assert sorted(back["source_id"]) == ["t3_c1", "t3_p1", "t3_s1"]
    assert back["created_at"].dtype == df["created_at"].dtype

    body = smtp.to("oncall@test.local")[0].get_body(("plain",)).get_content()
    for must in ("Who:", "Where:", "Link:", "Why it was ranked", "urgency"):
        assert must in body

    # The other commands on the same store.
    import json
    complaint_id = str(int(by_id.loc["t3_c1", "id"]))
    explained = cli(config, "explain", complaint_id, "--json")
    assert explained.returncode == 0, explained.stderr
    assert json.loads(explained.stdout)["alerted"] == [by_id.loc["t3_c1", "priority"]]
    labelled = cli(config, "label", complaint_id, "complaint")
    assert labelled.returncode == 0 and "1 labels stored" in labelled.stdout, labelled.stderr
    status = cli(config, "status", "--json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["outbox"]["pending"] == 0 and report["sources"]["reddit"]["last_error"] == "none"
    assert report["sources"]["rss"]["feeds"][feed_url]["mentions_last_hour"] == 1
    page = cli(config, "report", "--out", str(config.parent / "report"))
    assert page.returncode == 0 and (config.parent / "report" / "index.html").exists(), page.stderr


def test_run_with_shipped_config_offline_stays_up(tmp_path):
    """The shipped config with no Reddit credentials and its feeds unreachable: the daemon logs why and keeps
    running. Its feeds are pointed at a closed port on 127.0.0.1, never at their real hosts: whether those
    answer must not decide a test."""
    import os
    import shutil
    import signal

    import yaml

    from tests.servers.smtp import free_port
    shipped = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    closed = f"http://127.0.0.1:{free_port()}"
    for n, feed in enumerate(shipped["sources"]["rss"]["feeds"]):
        feed["url"] = f"{closed}/feed{n}.xml"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(shipped, sort_keys=False), encoding="utf-8")
    shutil.copytree(ROOT / "rules", tmp_path / "rules")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDDIT_")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "monitor.cli", "run"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 60
        lines = []
        while time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "polled rss" in line:
                break
        assert proc.poll() is None, "".join(lines)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        lines.append(out)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = "".join(lines)
    assert proc.returncode == 0, log
    assert log.count("no client_id and client_secret configured") == 1
    assert "feed Hacker News" in log and "failed" in log
    assert "Traceback" not in log

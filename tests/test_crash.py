"""kill -9 at random moments loses nothing: the real daemon against local Reddit, feed and SMTP servers."""

from __future__ import annotations

import random
import signal
import sqlite3
import time
from collections import Counter

from monitor.config import load_config
from tests.daemon_process import Daemon, wait_for
from tests.servers.feeds import rss

KILLS = 4
SEED = 20261123


def complaint_post(n: int) -> dict:
    return {"id": f"k{n}", "title": f"Acme order {n} never arrived",
            "selftext": f"Acme took my money for order {n} and support hung up on me twice. No refund. Furious."}


def complaint_entry(feed: int, n: int) -> dict:
    return {"title": f"Acme lost parcel {feed}-{n}", "link": f"https://blog{feed}.example/acme-{n}",
            "guid": f"parcel-{feed}-{n}", "pubDate": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()),
            "description": f"Acme lost parcel {n}. I have emailed them five times, nobody answers. Disgusting."}


def rows(db, sql):
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute(sql).fetchall()


def test_sigkill_at_random_moments_loses_nothing_and_sends_each_alert(reddit, feeds, smtp, write_config, tmp_path):
    rng = random.Random(SEED)
    entries: dict[int, list[dict]] = {0: [], 1: []}
    feed_urls = [feeds.serve(f"/feed{i}.xml", rss([])) for i in entries]
    path = write_config({
        "sources": {
            "reddit": {"client_id": "test-id", "client_secret": "test-secret", "user_agent": "crash test",
                       "subreddits": ["CustomerService"], "comments": False, "oauth_url": reddit.url,
                       "reddit_url": reddit.url, "interval": 1},
            "rss": {"feeds": [{"url": u} for u in feed_urls], "interval": 1},
        },
        "email": {"smtp": {"host": "127.0.0.1", "port": smtp.port, "timeout": 5}, "send_interval": 1},
    })
    db = load_config(path).store_path
    expected: set[str] = set()
    posted = 0

    def add_items(count: int) -> None:
        nonlocal posted
        for _ in range(count):
            posted += 1
            if rng.random() < 0.5:
                post = complaint_post(posted)
                reddit.add_post(subreddit="CustomerService", author=f"user{posted}", **post)
                expected.add(f"t3_{post['id']}")
            else:
                feed = rng.randrange(len(feed_urls))
                entries[feed].append(complaint_entry(feed, posted))
                feeds.serve(f"/feed{feed}.xml", rss(entries[feed]))
                expected.add(f"{feed_urls[feed]}|{entries[feed][-1]['guid']}")
            # Noise the brand matcher must skip: never stored.
            reddit.add_post(subreddit="CustomerService", id=f"n{posted}", title="Weekend plans",
                            selftext="Going hiking, nothing to complain about.")

    add_items(4)
    for run in range(KILLS):
        daemon = Daemon(path, tmp_path / f"daemon-{run}.log")
        try:
            daemon.wait_running()
            for _ in range(3):
                time.sleep(rng.uniform(0.1, 0.8))
                add_items(rng.randint(1, 3))
            time.sleep(rng.uniform(0.0, 2.0))
            daemon.kill()
        finally:
            daemon.stop()
        assert daemon.proc.returncode == -signal.SIGKILL

    add_items(2)
    final = Daemon(path, tmp_path / "daemon-final.log")
    try:
        final.wait_running()

        def done() -> bool:
            stored = {r[0] for r in rows(db, "SELECT source_id FROM mentions")}
            unsent = rows(db, "SELECT count(*) FROM alerts WHERE status != 'sent'")[0][0]
            return stored >= expected and unsent == 0
        wait_for(done, timeout=60, what="every mention stored and every alert sent")
        final.send(signal.SIGTERM)
        assert final.wait(timeout=30) == 0, final.log()
    finally:
        final.stop()

    mentions = rows(db, "SELECT id, source_id, suppressed FROM mentions")
    assert sorted(m["source_id"] for m in mentions) == sorted(expected), "each mention stored exactly once"
    assert all(m["suppressed"] == 0 for m in mentions)
    alerts = rows(db, "SELECT mention_id, recipient, status, message_id FROM alerts")
    assert {a["mention_id"] for a in alerts} == {m["id"] for m in mentions}, "every mention alerted"
    assert all(a["status"] == "sent" and a["recipient"] == "oncall@test.local" for a in alerts)

    received = Counter(str(msg["Message-ID"]) for rcpts, msg in smtp.messages if "oncall@test.local" in rcpts)
    assert set(received) == {a["message_id"] for a in alerts}, "every alert delivered, nothing else"
    # A resend only in the window the alert design allows (accepted by the server, killed
    # before the commit): then it carries the same Message-ID, which mail clients fold.
    assert sum(received.values()) - len(received) <= KILLS
    assert "Traceback" not in "".join((tmp_path / f"daemon-{i}.log").read_text() for i in range(KILLS))

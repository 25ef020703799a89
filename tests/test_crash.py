"""kill -9 at random moments loses nothing: the real daemon against local Reddit, feed and SMTP servers."""

from __future__ import annotations

import json
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


# Priorities that follow the numbers alone, so a rise is caused only by growth and never falls back.
GROWTH_PACK = """
rules:
  - {name: mentioned, when: 'brand == "Acme"', urgency: 30, tags: [complaint]}
  - {name: noticed, when: score >= 100, virality: 55}
  - {name: viral, when: score >= 1000, virality: 80}
"""
GROWTH_STEPS = [(40, 3), (150, 12), (420, 30), (1100, 75), (1800, 160)]
GROWTH_TITLES = ["Acme kettle leaks", "Acme charged twice", "Acme lost my parcel", "Acme support hung up"]


def test_sigkill_while_posts_grow_keeps_growth_tracking_and_escalates_once(reddit, smtp, write_config, tmp_path):
    rng = random.Random(SEED + 1)
    pack = tmp_path / "growth.yaml"
    pack.write_text(GROWTH_PACK)
    path = write_config({
        "sources": {"reddit": {"client_id": "test-id", "client_secret": "test-secret", "user_agent": "crash test",
                               "subreddits": ["CustomerService"], "comments": False, "oauth_url": reddit.url,
                               "reddit_url": reddit.url, "interval": 1,
                               # Re-read after 0.6 s, the gap doubling up to 2.4 s.
                               "track_first_minutes": 0.01, "track_max_minutes": 0.04}},
        "email": {"smtp": {"host": "127.0.0.1", "port": smtp.port, "timeout": 5}, "send_interval": 1},
        "responders": [{"email": "oncall@test.local", "brands": "all", "min_priority": "P4"},
                       {"email": "lead@test.local", "brands": "all", "min_priority": "P2"}],
        "rules": [str(pack)], "complaint": {"urgency_points": 0},
    })
    db = load_config(path).store_path
    # Every (score, comments) each post ever had on the server: a snapshot must be one of them.
    history: dict[str, list[tuple[int, int]]] = {}
    step: dict[str, int] = {}

    def add_post(n: int) -> None:
        # Titles far apart: each post its own story, so each has its own thread.
        post = {**complaint_post(n), "title": GROWTH_TITLES[n]}
        reddit.add_post(subreddit="CustomerService", author=f"user{n}", score=1, num_comments=0, **post)
        history[f"t3_{post['id']}"], step[f"t3_{post['id']}"] = [(1, 0)], 0
        reddit.add_post(subreddit="CustomerService", id=f"n{n}", title="Weekend plans", selftext="Going hiking.")

    def grow(fullname: str) -> None:
        if step[fullname] < len(GROWTH_STEPS):
            score, comments = GROWTH_STEPS[step[fullname]]
            reddit.update_post(fullname, score=score, num_comments=comments)
            history[fullname].append((score, comments))
            step[fullname] += 1

    for n in range(3):
        add_post(n)
    initial = set(history)
    for run in range(KILLS):
        daemon = Daemon(path, tmp_path / f"growth-{run}.log")
        try:
            daemon.wait_running()
            if run == 0:
                # The first email of each story is out before it grows: every story's rise is an escalation.
                wait_for(lambda: rows(db, "SELECT count(*) FROM alerts WHERE status = 'sent'"
                                          " AND recipient = 'oncall@test.local'")[0][0] == 3,
                         timeout=30, what="the first P3 alerts")
            if run == 1:
                add_post(3)  # tracked from a later run on
            for _ in range(3):
                time.sleep(rng.uniform(0.2, 1.2))
                grow(rng.choice(sorted(history)))
            time.sleep(rng.uniform(0.0, 2.0))
            daemon.kill()
        finally:
            daemon.stop()
        assert daemon.proc.returncode == -signal.SIGKILL
        grow(rng.choice(sorted(history)))  # grows while the daemon is down too

    for fullname in history:
        while step[fullname] < len(GROWTH_STEPS):
            grow(fullname)
    final = Daemon(path, tmp_path / "growth-final.log")
    try:
        final.wait_running()

        def caught_up() -> bool:
            stored = {r["source_id"]: (r["score"], r["comments"]) for r in rows(db, "SELECT * FROM mentions")}
            unsent = rows(db, "SELECT count(*) FROM alerts WHERE status = 'pending'")[0][0]
            return stored == {k: v[-1] for k, v in history.items()} and unsent == 0
        wait_for(caught_up, timeout=60, what="every post's latest numbers stored and every alert sent")
        final.send(signal.SIGTERM)
        assert final.wait(timeout=30) == 0, final.log()
    finally:
        final.stop()

    mentions = {r["source_id"]: r for r in rows(db, "SELECT * FROM mentions")}
    assert set(mentions) == set(history), "each post stored once, the noise never"
    assert set(json.loads(rows(db, "SELECT value FROM source_state WHERE key = 'tracked'")[0][0])) == set(history)
    for fullname, seen in history.items():
        snaps = rows(db, f"SELECT * FROM snapshots WHERE mention_id = {mentions[fullname]['id']} ORDER BY rowid")
        taken = [s["taken_at"] for s in snaps]
        numbers = [(s["score"], s["comments"]) for s in snaps]
        assert taken == sorted(set(taken)), f"{fullname}: snapshots written in time order, one per reading"
        assert numbers == sorted(numbers) and set(numbers) <= set(seen), f"{fullname}: {numbers} vs {seen}"
        assert numbers[-1] == seen[-1] == (mentions[fullname]["score"], mentions[fullname]["comments"])
        reads = sum(1 for _, p in reddit.requests if p.startswith("/api/info") and fullname in p)
        # One snapshot from the listing plus one per re-read; a read in flight at a kill may be lost.
        assert reads + 1 - KILLS <= len(snaps) <= reads + 1, (fullname, len(snaps), reads)

    # A level still queued when a higher one is raised (e.g. across a restart) is superseded, never sent.
    alerts = rows(db, "SELECT * FROM alerts WHERE status = 'sent' ORDER BY id")
    assert {a["status"] for a in rows(db, "SELECT status FROM alerts")} <= {"sent", "superseded"}
    received = Counter(str(msg["Message-ID"]) for _, msg in smtp.messages)
    assert set(received) == {a["message_id"] for a in alerts}, "every alert delivered, nothing else"
    assert sum(received.values()) - len(received) <= KILLS, "resends only in the crash window, same Message-ID"
    emails = {str(msg["Message-ID"]): msg for _, msg in smtp.messages}
    escalations = 0
    for fullname, mention in mentions.items():
        first_emailed_at_p3 = fullname in initial
        for recipient, first in (("oncall@test.local", "P3" if first_emailed_at_p3 else None),
                                 ("lead@test.local", None)):
            thread = [a for a in alerts if a["mention_id"] == mention["id"] and a["recipient"] == recipient]
            levels = [a["priority"] for a in thread]
            assert levels == sorted(set(levels), reverse=True) and levels[-1] == "P1", (fullname, recipient, levels)
            assert first is None or levels[0] == first
            for i, alert in enumerate(thread):
                msg = emails[alert["message_id"]]
                assert msg["To"] == recipient
                title = mention["title"]  # names the brand: the subject does not repeat it
                if i == 0:
                    assert str(msg["Subject"]) == f"[{alert['priority']}] {title}", msg["Subject"]
                    assert msg["In-Reply-To"] is None
                else:
                    escalations += 1
                    before = thread[i - 1]
                    assert str(msg["Subject"]) == f"[{alert['priority']} up from {before['priority']}] {title}"
                    assert msg["In-Reply-To"] == before["message_id"]
                    assert str(msg["References"]).split() == [a["message_id"] for a in thread[:i]]
    assert escalations >= 3, "the three stories whose first email went out before they grew each rose in a thread"
    logs = "".join((tmp_path / f"growth-{i}.log").read_text() for i in range(KILLS))
    assert "Traceback" not in logs + final.log()

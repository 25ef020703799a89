"""Two daemons on one PostgreSQL store while items keep arriving; one of them SIGKILLed at random moments
(and started again): every mention is stored once, every alert sent once (only the email in flight at a kill
may come twice, with the same Message-ID), and a killed daemon's work is taken over within the lease time."""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from email.utils import parsedate_to_datetime

import psycopg

from tests.daemon_process import Daemon, wait_for
from tests.servers.feeds import rss
from tests.test_crash import complaint_entry, complaint_post

KILLS = 3
SEED = 20261129
LEASE_SECONDS = 3
INTERVAL = 1
FEEDS = 6
# A poll's own time and a loaded machine on top of the lease and one interval.
TAKEOVER_SLACK = 8


def rows(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


def test_two_daemons_one_killed_at_random_lose_nothing_and_send_each_alert_once(
        reddit, feeds, smtp, write_config, postgres_url, tmp_path):
    rng = random.Random(SEED)
    entries: dict[int, list[dict]] = {i: [] for i in range(FEEDS)}
    feed_urls = [feeds.serve(f"/feed{i}.xml", rss([])) for i in entries]
    path = write_config({
        "store": postgres_url,
        "lease_seconds": LEASE_SECONDS,
        "sources": {
            "reddit": {"client_id": "test-id", "client_secret": "test-secret", "user_agent": "failover test",
                       "subreddits": ["CustomerService"], "comments": False, "oauth_url": reddit.url,
                       "reddit_url": reddit.url, "interval": INTERVAL},
            "rss": {"feeds": [{"url": u} for u in feed_urls], "interval": INTERVAL},
        },
        # One email per alert (no storm summaries): each Message-ID is one alert's.
        "email": {"smtp": {"host": "127.0.0.1", "port": smtp.port, "timeout": 5}, "send_interval": 1,
                  "storm_threshold": 1000},
    })
    expected: set[str] = set()
    published: dict[str, float] = {}  # source_id -> when it appeared
    posted = 0

    def add_items(count: int) -> None:
        nonlocal posted
        for _ in range(count):
            posted += 1
            if rng.random() < 0.3:
                post = complaint_post(posted)
                reddit.add_post(subreddit="CustomerService", author=f"user{posted}", **post)
                source_id = f"t3_{post['id']}"
            else:
                feed = rng.randrange(FEEDS)
                entries[feed].append(complaint_entry(feed, posted))
                feeds.serve(f"/feed{feed}.xml", rss(entries[feed]))
                source_id = f"{feed_urls[feed]}|{entries[feed][-1]['guid']}"
            expected.add(source_id)
            published[source_id] = time.time()

    def stored() -> dict[str, float]:
        return dict(rows(postgres_url, "SELECT source_id, fetched_at FROM mentions"))

    add_items(4)
    daemons = [Daemon(path, tmp_path / "daemon-0.log"), Daemon(path, tmp_path / "daemon-1.log")]
    logs = [tmp_path / "daemon-0.log", tmp_path / "daemon-1.log"]
    takeovers: list[float] = []
    kills: list[float] = []
    try:
        for d in daemons:
            d.wait_running()
        for kill in range(KILLS):
            for _ in range(4):
                time.sleep(rng.uniform(0.1, 0.8))
                add_items(rng.randint(3, 8))
            time.sleep(rng.uniform(0.0, 1.5))
            victim = rng.randrange(2)
            daemons[victim].kill()
            assert daemons[victim].proc.returncode == -signal.SIGKILL
            killed_at = time.time()
            kills.append(killed_at)
            # Work that arrives now is the survivor's alone until the victim is back: it is taken within
            # the lease time (the victim's leases expire) plus one poll.
            add_items(FEEDS)
            marker = {s for s, t in published.items() if t >= killed_at}
            wait_for(lambda: marker <= stored().keys(), timeout=LEASE_SECONDS + INTERVAL + TAKEOVER_SLACK + 10,
                     what="the survivor to take over the killed daemon's work")
            found = stored()
            takeovers.append(max(found[s] for s in marker) - killed_at)
            log = tmp_path / f"daemon-{victim}-{kill + 1}.log"
            logs.append(log)
            daemons[victim] = Daemon(path, log)
            daemons[victim].wait_running()

        add_items(3)

        def done() -> bool:
            unsent = rows(postgres_url, "SELECT count(*) FROM alerts WHERE status != 'sent'")[0][0]
            return stored().keys() >= expected and unsent == 0
        wait_for(done, timeout=60, what="every mention stored and every alert sent")
        for d in daemons:
            d.send(signal.SIGTERM)
        for d in daemons:
            assert d.wait(timeout=30) == 0, d.log()
    finally:
        for d in daemons:
            d.stop()

    mentions = rows(postgres_url, "SELECT id, source_id FROM mentions")
    assert sorted(m[1] for m in mentions) == sorted(expected), "each mention stored exactly once"
    alerts = rows(postgres_url, "SELECT mention_id, status, message_id FROM alerts")
    assert {a[0] for a in alerts} == {m[0] for m in mentions}, "every mention alerted"
    assert all(a[1] == "sent" for a in alerts)
    received = Counter(str(msg["Message-ID"]) for rcpts, msg in smtp.messages if "oncall@test.local" in rcpts)
    assert set(received) == {a[2] for a in alerts}, ("every alert delivered, nothing else", set(received) ^ {a[2] for a in alerts})
    # Only the email in flight at a kill may come twice, and then with the same Message-ID: its first copy
    # was sent (its Date) just before a kill, and another daemon sent it again once the claim expired.
    twice = {mid for mid, n in received.items() if n > 1}
    assert len(twice) <= KILLS and all(n <= 2 for n in received.values()), received
    for mid in twice:
        sent = min(parsedate_to_datetime(str(m["Date"])).timestamp() for rcpts, m in smtp.messages
                   if str(m["Message-ID"]) == mid)
        assert any(kill - 5 <= sent <= kill + 1 for kill in kills), f"{mid} sent twice, not at a kill"
    assert max(takeovers) <= LEASE_SECONDS + INTERVAL + TAKEOVER_SLACK, takeovers
    assert "Traceback" not in "".join(log.read_text() for log in logs)

"""What a poll of RSS feeds may cost: a feed's archive alerts nobody, a huge feed is read only in part.

Feeds come from the local feed server, through the real pipeline into a real SQLite store.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

from tests.servers.feeds import rss
from tests.test_rss import ALWAYS, monitor_feeds  # noqa: F401 - the RSS source and pipeline fixture, shared


def dated(n: int, age: timedelta, *, now: datetime) -> dict:
    return {"title": f"Acme lost my parcel {n}", "link": f"https://shop.example/{n}", "guid": f"g{n}",
            "description": "Acme never answers. I want a refund.", "pubDate": format_datetime(now - age)}


def alerted(store) -> set[str]:
    return {r["title"] for r in store.query("SELECT DISTINCT m.title FROM alerts a JOIN mentions m"
                                            " ON m.id = a.mention_id")}


def test_a_first_poll_stores_the_archive_but_alerts_only_what_is_younger_than_backfill_hours(feeds, monitor_feeds):
    now = datetime.now(timezone.utc)
    path = "/archive.xml"
    url = feeds.serve(path, rss([dated(1, timedelta(minutes=30), now=now), dated(2, timedelta(hours=30), now=now),
                                 dated(3, timedelta(days=3650), now=now)]))
    harness = monitor_feeds([{"url": url, "interval": ALWAYS}], backfill_hours=24)

    harness.cycle()
    assert [r["title"] for r in harness.stored(url)] == [f"Acme lost my parcel {n}" for n in (1, 2, 3)]
    assert alerted(harness.store) == {"Acme lost my parcel 1"}

    # After the first poll a new entry is news, however old its date says it is.
    time.sleep(1.1)  # a new Last-Modified second, so the feed is read again
    feeds.serve(path, rss([dated(4, timedelta(hours=30), now=now), dated(1, timedelta(minutes=30), now=now)]))
    harness.cycle()
    assert alerted(harness.store) == {"Acme lost my parcel 1", "Acme lost my parcel 4"}


def test_a_huge_feed_is_read_newest_first_up_to_max_entries(feeds, monitor_feeds, caplog):
    now = datetime.now(timezone.utc)
    # Oldest first in the document, as some feeds are: the newest are at its end.
    url = feeds.serve("/huge.xml", rss([dated(n, timedelta(minutes=5000 - n), now=now) for n in range(5000)]))
    harness = monitor_feeds([{"url": url}], max_entries=50)

    started = time.monotonic()
    poll, outcome = harness.cycle()
    assert time.monotonic() - started < 30

    assert poll.failed == {} and outcome.seen == 50
    assert {r["title"] for r in harness.stored(url)} == {f"Acme lost my parcel {n}" for n in range(4950, 5000)}
    assert "max_entries" in harness.state(url)["last_problem"]
    assert len(alerted(harness.store)) <= 50

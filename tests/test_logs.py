"""Logs: one line per event, and no secret in any line, exception text or traceback."""

from __future__ import annotations

import io
import logging
import subprocess
import sys

from monitor.app import Monitor
from monitor.config import load_config
from monitor.logs import EventFormatter, config_secrets
from tests.conftest import ROOT

REDDIT_SECRET = "reddit-client-secret-9f8e7d"
SMTP_PASSWORD = "smtp-pa55word-4c3b2a"
FEED_TOKEN = "feed-token-1a2b3c4d"
ENV_TOKEN = "env-api-token-0z9y8x"


def capture(secrets=()):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    formatter = EventFormatter(secrets)
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"test.logs.{id(stream)}")
    logger.propagate = False
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG)
    return logger, stream, formatter


def connect_with(password):
    raise ConnectionError(f"login refused for monitor:{password}\nserver said no")


def test_secrets_are_replaced_in_messages_exceptions_and_tracebacks():
    logger, stream, _ = capture([REDDIT_SECRET, SMTP_PASSWORD])
    logger.info("using client secret %s", REDDIT_SECRET, extra={"source": "reddit"})
    try:
        connect_with(SMTP_PASSWORD)
    except ConnectionError:
        logger.exception("smtp login failed", extra={"recipient": "oncall@test.local"})
    logger.warning("feed http://127.0.0.1/x.xml?token=%s failed; Authorization: Bearer %s", FEED_TOKEN, ENV_TOKEN)
    out = stream.getvalue()
    for secret in (REDDIT_SECRET, SMTP_PASSWORD, FEED_TOKEN, ENV_TOKEN):
        assert secret not in out
    lines = out.splitlines()
    assert len(lines) == 3, out
    assert "source=reddit" in lines[0] and "***" in lines[0]
    assert "exc=" in lines[1] and "Traceback" in lines[1] and "connect_with" in lines[1]
    assert "monitor:***" in lines[1] and "recipient=oncall@test.local" in lines[1]
    assert "token=***" in lines[2] and "Bearer ***" in lines[2]


def test_one_line_per_event_even_with_newlines_and_quotes():
    logger, stream, _ = capture()
    logger.info('title "Acme\nhacked"\r\nlevel=error fake=event')
    logger.info("plain")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].count(" level=") == 1, "a message cannot forge a second event's fields unquoted"
    assert 'msg="title \\"Acme\\nhacked\\"\\r\\nlevel=error fake=event"' in lines[0]
    assert lines[1].endswith("msg=plain")


def test_config_secrets_finds_nested_and_environment_secrets(write_config):
    path = write_config({
        "email": {"smtp": {"host": "127.0.0.1", "port": 25, "password": SMTP_PASSWORD}},
        "sources": {"reddit": {"client_id": "visible-id", "client_secret": REDDIT_SECRET,
                               "keywords": ["acme outage"]},
                    "custom": {"auth": {"api_key": "nested-api-key-77"}, "tokens": ["list-token-88"]}},
    })
    config = load_config(path)
    found = config_secrets(config, environ={"MONITOR_API_TOKEN": ENV_TOKEN, "HOME": "/root/home"})
    for secret in (SMTP_PASSWORD, REDDIT_SECRET, "nested-api-key-77", "list-token-88", ENV_TOKEN):
        assert secret in found
    for visible in ("visible-id", "acme outage", "/root/home"):
        assert visible not in found


def test_daemon_output_status_and_operator_notes_carry_no_secret(reddit, feeds, write_config, tmp_path):
    """Wrong Reddit secret, a private feed with a token that fails, SMTP with a password: nothing leaks."""
    private = feeds.serve("/private.xml", "denied", status=500, content_type="text/plain")
    path = write_config({
        "sources": {
            "reddit": {"client_id": "test-id", "client_secret": REDDIT_SECRET, "user_agent": "tests",
                       "subreddits": ["CustomerService"], "oauth_url": reddit.url, "reddit_url": reddit.url},
            "rss": {"feeds": [{"url": f"{private}?token={FEED_TOKEN}"}]},
        },
        "email": {"smtp": {"host": "127.0.0.1", "port": 9, "username": "monitor", "password": SMTP_PASSWORD,
                           "timeout": 2}},
        "health": {"operator_email": "ops@test.local", "notify_after_minutes": 0},
    })
    once = subprocess.run([sys.executable, "-m", "monitor.cli", "-v", "--config", str(path), "once"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert once.returncode == 0, once.stderr
    assert "401" in once.stderr or "Unauthorized" in once.stderr or "invalid_client" in once.stderr, once.stderr
    assert f"feed {private} failed" in once.stderr  # named without its token: that stays in the config
    status = subprocess.run([sys.executable, "-m", "monitor.cli", "--config", str(path), "status"],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert status.returncode == 0, status.stderr
    assert private in status.stdout
    notes = "".join(p.read_text() for p in (tmp_path / "outbox").glob("health-*.eml"))
    assert "failing since" in notes
    for text in (once.stdout, once.stderr, status.stdout, notes):
        for secret in (REDDIT_SECRET, SMTP_PASSWORD, FEED_TOKEN):
            assert secret not in text


def test_a_listing_that_fails_after_prawcore_retries_is_one_line(reddit, write_config):
    reddit.fail_next("/r/CustomerService/new", status=500, count=3)  # prawcore tries three times
    path = write_config({"sources": {"reddit": {
        "client_id": "test-id", "client_secret": "test-secret", "user_agent": "tests", "comments": False,
        "subreddits": ["CustomerService"], "oauth_url": reddit.url, "reddit_url": reddit.url}}})
    once = subprocess.run([sys.executable, "-m", "monitor.cli", "--config", str(path), "once"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert once.returncode == 0, once.stderr
    assert reddit.count("/r/CustomerService/new") == 3
    about_it = [line for line in once.stderr.splitlines() if "CustomerService" in line]
    assert len(about_it) == 1, once.stderr
    assert "listing:new:CustomerService failed: ServerError" in about_it[0]


def test_monitor_redacts_errors_it_stores(feeds, write_config):
    url = feeds.serve("/private.xml", "denied", status=500, content_type="text/plain")
    monitor = Monitor.from_config(load_config(write_config(
        {"sources": {"rss": {"feeds": [{"url": f"{url}?api_key={FEED_TOKEN}"}]}}})))
    try:
        report = monitor.poll("rss")
        assert report.errors and all(FEED_TOKEN not in e for e in report.errors)
        stored = monitor.store.query("SELECT errors FROM poll_runs")[0][0]
        failures = monitor.store.query("SELECT subject, last_error FROM failures")
        assert f"feed:{url}: HTTP 404" in stored  # the feed's name carries no key: that stays in the config
        assert failures and all(FEED_TOKEN not in r["last_error"] + r["subject"] for r in failures)
    finally:
        monitor.close()


def test_a_poll_failing_the_same_way_again_is_not_logged_again(write_config, caplog):
    from tests.servers.smtp import free_port
    dead = f"http://127.0.0.1:{free_port()}/feed.xml"  # nothing listens there
    monitor = Monitor.from_config(load_config(write_config({"sources": {"rss": {
        "feeds": [{"url": dead, "interval": 0.001}], "max_backoff": 0.001}}})))
    try:
        with caplog.at_level(logging.DEBUG, logger="complaint_monitor"):
            for _ in range(3):
                assert monitor.poll("rss").errors
    finally:
        monitor.close()
    summaries = [r for r in caplog.records if r.getMessage().startswith("polled rss")]
    assert [r.levelno for r in summaries] == [logging.INFO, logging.DEBUG, logging.DEBUG]


def test_a_new_store_is_made_without_migration_chatter(feeds, write_config):
    """The first start creates the store through Alembic, which logs each plugin it sets up at info level:
    the operator's log starts with what the daemon does, not with a migration tool's internals."""
    path = write_config({"sources": {"rss": {"feeds": [{"url": feeds.serve("/a.xml", "<rss/>")}]}}})
    once = subprocess.run([sys.executable, "-m", "monitor.cli", "--config", str(path), "once"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert once.returncode == 0, once.stderr
    assert "polled rss" in once.stderr and "alembic" not in once.stderr, once.stderr

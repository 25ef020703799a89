"""The daemon's schedule, clean stop after the current step, and one daemon per store."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from monitor.app import Monitor
from monitor.config import load_config
from monitor.daemon import EXIT_ALREADY_RUNNING, REPEAT_SIGNAL_WINDOW, build_scheduler
from tests.conftest import ROOT
from tests.daemon_process import Daemon, wait_for
from tests.servers.feeds import recent, rss
from tests.servers.smtp import free_port

COMPLAINT = {"title": "Acme lost my luggage", "link": "https://blog.example/acme-bag", "guid": "bag-1",
             "description": "Acme lost my bag. Five emails, no answer. Talking to a lawyer. Furious.",
             "pubDate": recent()}


def reddit_section(reddit, **extra):
    return {"client_id": "test-id", "client_secret": "test-secret", "user_agent": "complaint-monitor tests",
            "subreddits": ["CustomerService"], "comments": False, "oauth_url": reddit.url,
            "reddit_url": reddit.url, **extra}


def count(db, sql, *params):
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchone()[0]


def test_jobs_cover_every_source_the_sender_digest_prune_and_spike_check(reddit, feeds, write_config):
    path = write_config({
        "sources": {"reddit": reddit_section(reddit, interval=45), "rss": {"feeds": [], "interval": 600}},
        "email": {"send_interval": 7},
        "responders": [{"email": "oncall@test.local", "digest_below": "P2"}],
    })
    monitor = Monitor.from_config(load_config(path))
    try:
        scheduler = build_scheduler(monitor)
        scheduler.start(paused=True)  # jobs get job_defaults applied when the scheduler starts
        jobs = {job.id: job for job in scheduler.get_jobs()}
        scheduler.shutdown(wait=False)
        assert set(jobs) == {"poll:reddit", "poll:rss", "deliver", "digest", "prune", "spikes"}
        assert jobs["poll:reddit"].trigger.interval == timedelta(seconds=45)
        assert jobs["poll:reddit"].trigger.jitter == 4.5
        assert jobs["poll:rss"].trigger.jitter == 30
        assert jobs["deliver"].trigger.interval == timedelta(seconds=7)
        assert jobs["spikes"].func == monitor.check_spikes
        for job in jobs.values():
            assert (job.coalesce, job.max_instances, job.misfire_grace_time) == (True, 1, None), job.id
    finally:
        monitor.close()


def test_a_slow_source_never_delays_the_others(reddit, feeds, smtp, write_config):
    now = time.time()
    reddit.add_post(subreddit="CustomerService", id="c1", title="Acme double charged me",
                    selftext="Acme charged me twice, support hung up, no refund. Furious, never again.",
                    created_utc=now - 60, score=40, num_comments=12)
    slow = feeds.serve("/slow.xml", rss([COMPLAINT]), delay=6)
    path = write_config({
        "sources": {"reddit": reddit_section(reddit, interval=0.5), "rss": {"feeds": [{"url": slow}], "interval": 1}},
        "email": {"smtp": {"host": "127.0.0.1", "port": smtp.port}, "send_interval": 0.5},
    })
    config = load_config(path)
    monitor = Monitor.from_config(config)
    scheduler = build_scheduler(monitor)
    scheduler.start()
    try:
        wait_for(lambda: count(config.store_path, "SELECT count(*) FROM poll_runs WHERE source = 'reddit'") >= 3,
                 timeout=20, what="three reddit polls")
        assert count(config.store_path, "SELECT count(*) FROM poll_runs WHERE source = 'rss'") == 0, \
            "the slow feed is still in its first poll"
        wait_for(lambda: smtp.to("oncall@test.local"), timeout=20, what="the reddit alert")
        assert count(config.store_path, "SELECT count(*) FROM poll_runs WHERE source = 'rss'") == 0
    finally:
        scheduler.shutdown(wait=True)
        monitor.close()
    # max_instances=1: the slow poll was never started twice while it ran.
    assert feeds.hits("/slow.xml") == 1


def test_sigterm_stops_after_the_current_poll_and_keeps_queued_alerts(feeds, write_config, tmp_path):
    slow = feeds.serve("/slow.xml", rss([COMPLAINT]), delay=3)
    path = write_config({
        "sources": {"rss": {"feeds": [{"url": slow}], "interval": 60}},
        # Nothing listens: the alert the poll queues must survive the stop.
        "email": {"smtp": {"host": "127.0.0.1", "port": free_port(), "timeout": 2}, "send_interval": 1},
    })
    daemon = Daemon(path, tmp_path / "daemon.log")
    try:
        daemon.wait_running()
        wait_for(lambda: feeds.hits("/slow.xml") == 1, timeout=30, what="the poll to start")
        started = time.monotonic()
        daemon.send(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0, daemon.log()
        assert time.monotonic() - started < 15
    finally:
        daemon.stop()
    log = daemon.log()
    assert "received SIGTERM: stopping after the current step" in log
    assert "Traceback" not in log
    db = load_config(path).store_path
    assert count(db, "SELECT count(*) FROM mentions") == 1, "the poll in progress finished and was stored"
    assert count(db, "SELECT count(*) FROM alerts WHERE status = 'pending'") == 1
    assert count(db, "SELECT count(*) FROM source_state WHERE source = 'rss'") == 1


def test_a_second_daemon_on_the_same_store_refuses(feeds, write_config, tmp_path):
    url = feeds.serve("/acme.xml", rss([COMPLAINT]))
    path = write_config({"sources": {"rss": {"feeds": [{"url": url}], "interval": 60}}})
    first = Daemon(path, tmp_path / "first.log")
    try:
        first.wait_running()
        second = subprocess.run([sys.executable, "-m", "monitor.cli", "--config", str(path), "run"],
                                capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert second.returncode == EXIT_ALREADY_RUNNING, second.stderr
        assert f"pid {first.proc.pid}" in second.stderr and "already running" in second.stderr
        assert "several daemons need a PostgreSQL store" in second.stderr
        assert first.proc.poll() is None, "the first daemon is unaffected"
        first.send(signal.SIGINT)
        assert first.wait(timeout=30) == 0, first.log()
    finally:
        first.stop()
    # The lock goes with the process: a new daemon starts fine.
    again = Daemon(path, tmp_path / "again.log")
    try:
        again.wait_running()
        again.send(signal.SIGTERM)
        assert again.wait(timeout=30) == 0, again.log()
    finally:
        again.stop()


def test_prune_drops_old_snapshots_and_poll_records_but_never_mentions_or_alerts(reddit, write_config):
    from monitor.mention import Engagement
    now = time.time()
    reddit.add_post(subreddit="CustomerService", id="c1", title="Acme double charged me",
                    selftext="Acme charged me twice, support hung up, no refund. Furious, never again.",
                    created_utc=now - 60, score=40, num_comments=12)
    path = write_config({"sources": {"reddit": reddit_section(reddit)},
                         "retention": {"snapshots_days": 2, "poll_runs_days": 1}})
    monitor = Monitor.from_config(load_config(path))
    try:
        monitor.poll("reddit")
        mention_id = monitor.store.query("SELECT id FROM mentions")[0][0]
        day = 86400
        for age_days in (3, 1.5):
            monitor.store.add_snapshot(mention_id, Engagement(score=5, comments=1), now - age_days * day)
            monitor.store.record_poll(source="reddit", started_at=now - age_days * day,
                                      finished_at=now - age_days * day + 1, items=1, stored=0, errors=[])
        assert len(monitor.store.snapshots(mention_id)) == 3
        assert monitor.prune() == (1, 2)
        assert sorted(now - s.taken_at < 2 * day for s in monitor.store.snapshots(mention_id)) == [True, True]
        assert monitor.store.query("SELECT count(*) FROM poll_runs")[0][0] == 1
        assert monitor.store.query("SELECT count(*) FROM mentions")[0][0] == 1
        assert monitor.store.query("SELECT count(*) FROM alerts")[0][0] == 1
        assert monitor.prune() == (0, 0)
    finally:
        monitor.close()


def daemon_in_a_slow_poll(feeds, write_config, tmp_path, *, delay: float) -> tuple[Daemon, Path]:
    """A daemon whose only feed answers after ``delay`` seconds, started and waiting for that answer."""
    slow = feeds.serve("/slow.xml", rss([COMPLAINT]), delay=delay)
    path = write_config({"sources": {"rss": {"feeds": [{"url": slow}], "interval": 60}}})
    daemon = Daemon(path, tmp_path / "daemon.log")
    try:
        daemon.wait_running()
        wait_for(lambda: feeds.hits("/slow.xml") == 1, timeout=30, what="the slow poll to start")
    except BaseException:
        daemon.stop()
        raise
    return daemon, path


def test_one_sigterm_delivered_twice_still_stops_after_the_current_step(feeds, write_config, tmp_path):
    # `timeout 40 make run`: timeout signals make's process group and make passes its SIGTERM on,
    # so the daemon gets the same request twice, milliseconds apart.
    daemon, path = daemon_in_a_slow_poll(feeds, write_config, tmp_path, delay=2)
    try:
        daemon.send(signal.SIGTERM)
        time.sleep(0.05)
        daemon.send(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0, daemon.log()
    finally:
        daemon.stop()
    assert "stopped:" in daemon.log()
    db = load_config(path).store_path
    assert count(db, "SELECT count(*) FROM mentions") == 1, "the poll in flight finished and was stored"


def test_a_second_signal_ends_the_process_at_once_and_a_restart_resumes(feeds, write_config, tmp_path):
    daemon, path = daemon_in_a_slow_poll(feeds, write_config, tmp_path, delay=20)
    try:
        daemon.send(signal.SIGTERM)
        wait_for(lambda: "stopping after the current step" in daemon.log(), timeout=30, what="the first signal")
        time.sleep(REPEAT_SIGNAL_WINDOW + 0.2)  # sooner, it would count as the first one delivered twice
        started = time.monotonic()
        daemon.send(signal.SIGTERM)
        assert daemon.wait(timeout=10) == -signal.SIGTERM
        assert time.monotonic() - started < 10, "did not wait for the 20 s poll"
    finally:
        daemon.stop()
    feeds.serve("/slow.xml", rss([COMPLAINT]))
    again = Daemon(path, tmp_path / "again.log")
    try:
        again.wait_running()
        db = load_config(path).store_path
        wait_for(lambda: count(db, "SELECT count(*) FROM mentions") == 1, timeout=30, what="the mention after restart")
        again.send(signal.SIGTERM)
        assert again.wait(timeout=30) == 0, again.log()
    finally:
        again.stop()

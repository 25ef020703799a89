"""Alert delivery against a real SMTP server (aiosmtpd): outages, retries, crashes, threads, digests."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone

import pytest

from monitor.alert import deliver_digests, deliver_pending
from monitor.config import load_config
from monitor.mail import SmtpTransport
from monitor.mention import Engagement, Mention
from monitor.pipeline import Pipeline
from monitor.source import Poll
from monitor.store import Store
from tests.conftest import ROOT
from tests.servers.smtp import SmtpServer, free_port

# Priorities on demand: the words pick the urgency and vouch for a complaint (tag), growth picks the virality;
# the complaint model's own points are off (complaint.urgency_points: 0), so the levels are exact.
PACK = textwrap.dedent("""
    rules:
      - {name: red, when: 'text =~~ "RED"', urgency: 80, tags: [complaint]}
      - {name: amber, when: 'text =~~ "AMBER"', urgency: 55, tags: [complaint]}
      - {name: grey, when: 'text =~~ "GREY"', urgency: 30, tags: [complaint]}
      - {name: faint, when: 'text =~~ "FAINT"', urgency: 5, tags: [complaint]}
      - {name: growing, when: recent_velocity >= 100, virality: 80}
""")
LATER = time.time() + 10 * 24 * 3600  # far enough that every retry is due


@pytest.fixture
def setup(tmp_path, write_config):
    def make(responders=None, smtp_port=None, **email):
        pack = tmp_path / "pack.yaml"
        pack.write_text(PACK)
        overrides = {"rules": [str(pack)], "complaint": {"urgency_points": 0}, "email": {"smtp": {"host": "127.0.0.1", "port": smtp_port or free_port(),
                                                             "timeout": 5}, **email}}
        if responders is not None:
            overrides["responders"] = responders
        config = load_config(write_config(overrides))
        store = Store(config.store_path)
        return config, store, Pipeline(config=config, store=store), SmtpTransport(settings=config.email.smtp)
    return make


def mention(source_id: str, text: str, *, score: int = 1, comments: int = 0, minutes_old: float = 30) -> Mention:
    now = datetime.now(timezone.utc)
    return Mention(source="reddit", source_id=source_id, url=f"https://reddit.example/{source_id}",
                   title=f"Acme {source_id}", text=f"Acme {text}", author="someone", place="r/test",
                   created_at=now - timedelta(minutes=minutes_old), fetched_at=now,
                   engagement=Engagement(score=score, comments=comments))


def test_smtp_down_then_up_delivers_each_alert_once(setup):
    port = free_port()
    config, store, pipeline, transport = setup(smtp_port=port)
    pipeline.process("reddit", Poll(mentions=[mention("a", "RED"), mention("b", "AMBER")]))

    sent, pending, _ = deliver_pending(store, transport, config)
    assert (sent, pending) == (0, 2)
    errors = [r["last_error"] for r in store.query("SELECT last_error FROM alerts WHERE last_error IS NOT NULL")]
    assert len(errors) == 1, "a refused connection stops the round instead of failing every alert"
    assert "Connection refused" in errors[0] or "ConnectionRefused" in errors[0]

    with SmtpServer(port=port) as server:
        assert deliver_pending(store, transport, config, now=LATER)[:2] == (2, 0)
        assert deliver_pending(store, transport, config, now=LATER + 3600)[:2] == (0, 0)
        assert sorted(str(m["Subject"]).split("]")[0] for _, m in server.messages) == ["[P1", "[P2"]


def test_server_rejecting_first_attempts_gets_retried(setup):
    with SmtpServer() as server:
        config, store, pipeline, transport = setup(smtp_port=server.port)
        pipeline.process("reddit", Poll(mentions=[mention("a", "RED")]))
        server.reject_next = 2
        now = time.time()
        assert deliver_pending(store, transport, config, now=now)[:2] == (0, 1)
        assert deliver_pending(store, transport, config, now=now)[:2] == (0, 1)  # not due yet: backoff
        assert deliver_pending(store, transport, config, now=now + 3600)[:2] == (0, 1)
        assert deliver_pending(store, transport, config, now=now + 7200)[:2] == (1, 0)
        assert len(server.messages) == 1
        assert store.query("SELECT attempts FROM alerts")[0][0] == 3


CRASH_AFTER_ACCEPT = """
import os, sys
from monitor.alert import deliver_pending
from monitor.config import load_config
from monitor.mail import SmtpTransport
from monitor.store import Store

class CrashAfterAccept(SmtpTransport):
    def send(self, msg):
        super().send(msg)
        os._exit(9)   # the server has the email; our commit never happens

config = load_config(sys.argv[1])
deliver_pending(Store(config.store_path), CrashAfterAccept(settings=config.email.smtp), config)
"""


def test_crash_between_acceptance_and_commit_resends_with_same_message_id(setup, tmp_path):
    with SmtpServer() as server:
        config, store, pipeline, transport = setup(smtp_port=server.port)
        pipeline.process("reddit", Poll(mentions=[mention("a", "RED")]))
        store.close()
        script = tmp_path / "crash.py"
        script.write_text(CRASH_AFTER_ACCEPT)
        crashed = subprocess.run([sys.executable, str(script), str(config.base_dir / "config.yaml")], cwd=ROOT,
                                 env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=60)
        assert crashed.returncode == 9
        assert len(server.messages) == 1

        store = Store(config.store_path)  # the restart
        assert deliver_pending(store, transport, config)[:2] == (1, 0)
        assert deliver_pending(store, transport, config, now=LATER)[:2] == (0, 0)
        ids = [m["Message-ID"] for _, m in server.messages]
        assert len(ids) == 2 and ids[0] == ids[1]


CRASH_MID_ROUND = """
import os, sys
from monitor.alert import deliver_pending
from monitor.config import load_config
from monitor.mail import SmtpTransport
from monitor.store import Store

class CrashMidRound(SmtpTransport):
    sent = 0
    def send(self, msg):
        super().send(msg)
        self.sent += 1
        if self.sent == int(sys.argv[2]):
            os._exit(9)   # mid-round, over the round's one connection: this email's commit never happens

config = load_config(sys.argv[1])
deliver_pending(Store(config.store_path), CrashMidRound(settings=config.email.smtp), config)
"""


def test_a_round_shares_one_connection_and_a_kill_mid_round_loses_nothing(setup, tmp_path):
    with SmtpServer() as server:
        config, store, pipeline, transport = setup(smtp_port=server.port, storm_threshold=100)
        pipeline.process("reddit", Poll(mentions=[mention(f"m{i}", "RED") for i in range(12)]))
        ids = {a["message_id"] for a in store.query("SELECT message_id FROM alerts")}
        assert len(ids) == 12
        store.close()
        script = tmp_path / "crash.py"
        script.write_text(CRASH_MID_ROUND)
        crashed = subprocess.run([sys.executable, str(script), str(config.base_dir / "config.yaml"), "5"], cwd=ROOT,
                                 env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=60)
        assert crashed.returncode == 9
        assert len(server.messages) == 5
        assert len(set(server.peers)) == 1, "the round's emails share one connection"

        store = Store(config.store_path)  # the restart: the 4 committed stay sent, the rest go now
        assert deliver_pending(store, transport, config)[:2] == (8, 0)
        assert deliver_pending(store, transport, config, now=LATER)[:2] == (0, 0)
        assert len(set(server.peers[5:])) == 1
        received = [str(m["Message-ID"]) for _, m in server.messages]
        assert set(received) == ids, "no alert lost"
        # The one duplicate is the email in flight when the process died, with its Message-ID.
        duplicates = [i for i in set(received) if received.count(i) > 1]
        assert len(received) == 13 and duplicates == [received[4]]


def test_queued_alert_survives_a_crash_before_sending(setup):
    with SmtpServer() as server:
        config, store, pipeline, transport = setup(smtp_port=server.port)
        pipeline.process("reddit", Poll(mentions=[mention("a", "RED")]))
        store.close()  # the process dies here, before any delivery
        store = Store(config.store_path)
        assert deliver_pending(store, transport, config)[:2] == (1, 0)
        assert len(server.messages) == 1


def test_escalation_replies_in_the_same_thread_once_per_level(setup):
    with SmtpServer() as server:
        config, store, pipeline, transport = setup(smtp_port=server.port)
        first = mention("a", "GREY story", score=5, comments=1)
        pipeline.process("reddit", Poll(mentions=[first]))
        assert deliver_pending(store, transport, config)[:2] == (1, 0)

        grown = mention("a", "GREY story", score=900, comments=300)
        grown.fetched_at = first.fetched_at + timedelta(minutes=20)
        pipeline.update_engagement("reddit", [grown])
        again = mention("a", "GREY story", score=1500, comments=400)
        again.fetched_at = first.fetched_at + timedelta(minutes=40)
        pipeline.update_engagement("reddit", [again])  # still P1: no second P1 email
        assert deliver_pending(store, transport, config)[:2] == (1, 0)

        (_, original), (_, follow_up) = server.messages
        assert str(original["Subject"]).strip().startswith("[P3]")
        assert str(follow_up["Subject"]).strip().startswith("[P1 up from P3]")
        assert follow_up["In-Reply-To"] == original["Message-ID"]
        assert original["Message-ID"] in follow_up["References"]
        body = follow_up.get_body(("plain",)).get_content()
        assert "priority P3 -> P1" in body and "score 5 -> 900 (+895)" in body


def test_a_round_with_several_threads_replies_in_each_in_order(setup):
    """Emails are rendered ahead while earlier ones wait on the server: one whose story had an email earlier
    in the same round must still reply to that email, as if rendered after it went out."""
    stories = ["kettle charged me twice and no refund", "router broke after a week and support hung up",
               "blender never arrived though I emailed five times"]
    with SmtpServer() as server:
        # Above the storm threshold, a responder would get one summary instead.
        config, store, pipeline, transport = setup(smtp_port=server.port, storm_threshold=100)
        mentions = []
        for n in range(4):
            for s, words in enumerate(stories):
                m = mention(f"s{s}n{n}", f"RED {words}")
                m.title = f"Acme {words} ({n})"
                mentions.append(m)
        pipeline.process("reddit", Poll(mentions=mentions))
        story_of = {r["source_id"]: r["story_id"] for r in store.query("SELECT source_id, story_id FROM mentions")}
        assert len(set(story_of.values())) == 3
        assert deliver_pending(store, transport, config)[:2] == (12, 0)
        last: dict = {}
        for _, msg in server.messages:
            story = story_of[_source_id(msg)]
            before = last.get(story)
            if before is None:
                assert msg["In-Reply-To"] is None and str(msg["Subject"]).startswith("[P1]")
            else:
                assert msg["In-Reply-To"] == before["Message-ID"]
                assert str(msg["Subject"]) == f"Re: {before['Subject']}".replace("Re: Re: ", "Re: ")
            last[story] = msg
        assert len(last) == 3


def _source_id(msg) -> str:
    return str(msg.get_body(("plain",)).get_content()).split("reddit.example/", 1)[1].split()[0]


def test_a_story_that_rose_before_its_first_email_went_out_is_sent_once_at_the_level_it_reached(setup):
    with SmtpServer() as server:
        config, store, pipeline, transport = setup(smtp_port=server.port)
        first = mention("a", "GREY story", score=5, comments=1)
        pipeline.process("reddit", Poll(mentions=[first]))  # P3 queued, not yet sent (SMTP down, a restart)
        grown = mention("a", "GREY story", score=900, comments=300)
        grown.fetched_at = first.fetched_at + timedelta(minutes=20)
        pipeline.update_engagement("reddit", [grown])  # P1 queued
        calm = mention("a", "GREY story", score=905, comments=301)
        calm.fetched_at = first.fetched_at + timedelta(minutes=60)
        # Growth stopped: the story itself falls below P1 again (900 points in 90 minutes still count as spread).
        pipeline.update_engagement("reddit", [calm])
        assert store.find_mention("reddit", "a").priority in ("P2", "P3")

        assert deliver_pending(store, transport, config)[:2] == (1, 0)
        assert deliver_pending(store, transport, config)[:2] == (0, 0)
        [(_, only)] = server.messages
        # The level the alert was raised at, not the story's level when the outbox ran; the
        # stale P3 alert would arrive beside it as a second, unthreaded email about the same story.
        assert str(only["Subject"]).strip() == "[P1] Acme a"  # the title names the brand: not repeated
        assert only["In-Reply-To"] is None
        assert [(a["priority"], a["status"]) for a in store.query("SELECT * FROM alerts ORDER BY id")] == [
            ("P3", "superseded"), ("P1", "sent")]


def test_digest_gathers_lower_priorities_into_one_email(setup):
    responders = [{"email": "oncall@test.local", "min_priority": "P4", "digest_below": "P2"}]
    with SmtpServer() as server:
        config, store, pipeline, transport = setup(responders=responders, smtp_port=server.port, digest_minutes=30)
        pipeline.process("reddit", Poll(mentions=[mention("a", "GREY one"), mention("b", "GREY two"),
                                                  mention("c", "FAINT"), mention("d", "AMBER now")]))
        assert deliver_pending(store, transport, config)[:2] == (1, 3)  # P2 goes at once
        assert deliver_digests(store, transport, config) == 0  # the digest waits for its interval
        assert deliver_digests(store, transport, config, now=time.time() + 31 * 60) == 1
        assert deliver_digests(store, transport, config, now=time.time() + 120 * 60) == 0
        subjects = [str(m["Subject"]) for _, m in server.messages]
        assert len(subjects) == 2 and subjects[1].startswith("Digest: 3 lower-priority")
        digest = server.messages[1][1].get_body(("plain",)).get_content()
        assert digest.count("[P3]") == 2 and digest.count("[P4]") == 1


def test_quiet_hours_hold_everything_but_p1(setup):
    now = datetime.now(timezone.utc)
    quiet = f"{(now - timedelta(hours=1)):%H:%M}-{(now + timedelta(hours=2)):%H:%M}"
    responders = [{"email": "sleepy@test.local", "min_priority": "P4", "quiet_hours": quiet, "timezone": "UTC"}]
    with SmtpServer() as server:
        config, store, pipeline, transport = setup(responders=responders, smtp_port=server.port)
        pipeline.process("reddit", Poll(mentions=[mention("a", "RED"), mention("b", "AMBER")]))
        assert deliver_pending(store, transport, config)[:2] == (1, 1)
        assert [str(m["Subject"])[:4] for _, m in server.messages] == ["[P1]"]
        assert deliver_pending(store, transport, config, now=time.time() + 3600)[:2] == (0, 1)  # still quiet
        assert deliver_pending(store, transport, config, now=time.time() + 3 * 3600)[:2] == (1, 0)


def test_once_exits_zero_and_reports_pending_when_smtp_is_down(feeds, write_config):
    from tests.servers.feeds import rss
    url = feeds.serve("/f.xml", rss([{"title": "Acme refund scam", "link": "https://x.example/1", "guid": "1",
                                      "description": "Acme stole my money, I want a refund, talking to my lawyer"}]))
    config = write_config({"sources": {"rss": {"feeds": [{"url": url}]}},
                           "email": {"smtp": {"host": "127.0.0.1", "port": free_port(), "timeout": 5}}})
    result = subprocess.run([sys.executable, "-m", "monitor.cli", "--config", str(config), "once"],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "1 pending" in result.stdout and "stay queued" in result.stderr


def test_test_email_command_reaches_smtp(smtp, write_config):
    config = write_config({"email": {"smtp": {"host": "127.0.0.1", "port": smtp.port}}})
    result = subprocess.run([sys.executable, "-m", "monitor.cli", "--config", str(config), "test-email",
                             "--to", "check@test.local"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert [r for r, _ in smtp.messages] == [["check@test.local"]]
    assert "[TEST]" in str(smtp.messages[0][1]["Subject"])


def test_once_refuses_while_a_daemon_holds_the_store(write_config):
    from monitor.daemon import StoreLock
    config_path = write_config({"email": {"smtp": {"host": "127.0.0.1", "port": free_port(), "timeout": 5}}})
    config = load_config(config_path)
    # Another process stands in for the running daemon: flock locks belong to the open file.
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from monitor.daemon import StoreLock
        with StoreLock({str(config.store_path)!r}):
            print("locked", flush=True)
            sys.stdin.read()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = subprocess.run([sys.executable, "-m", "monitor.cli", "--config", str(config_path), "once"],
                                capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert result.returncode == 3
        assert "already running" in result.stderr and "Traceback" not in result.stderr
    finally:
        holder.communicate("", timeout=30)
    with StoreLock(config.store_path):  # released when the holder exited
        pass


def test_permanent_refusal_fails_that_alert_only_and_is_not_retried(setup):
    responders = [{"email": "gone@test.local", "brands": "all", "min_priority": "P4"},
                  {"email": "oncall@test.local", "brands": "all", "min_priority": "P4"}]
    with SmtpServer() as server:
        server.unknown_recipients.add("gone@test.local")
        config, store, pipeline, transport = setup(responders=responders, smtp_port=server.port)
        pipeline.process("reddit", Poll(mentions=[mention("a", "RED")]))
        assert deliver_pending(store, transport, config)[:2] == (1, 0)
        assert deliver_pending(store, transport, config, now=LATER)[:2] == (0, 0)
        assert [rcpts for rcpts, _ in server.messages] == [["oncall@test.local"]]
        failed = store.query("SELECT recipient, status, attempts, last_error FROM alerts WHERE status = 'failed'")
        assert [(r["recipient"], r["attempts"]) for r in failed] == [("gone@test.local", 1)]
        assert "550" in failed[0]["last_error"]


def test_one_message_refused_for_now_does_not_hold_back_the_others(setup):
    with SmtpServer() as server:
        config, store, pipeline, transport = setup(smtp_port=server.port)
        pipeline.process("reddit", Poll(mentions=[mention("a", "RED"), mention("b", "AMBER")]))
        server.reject_next = 1  # a 451 for the first message of the round
        delivery = deliver_pending(store, transport, config)
        assert (delivery.sent, delivery.pending, delivery.connection_error) == (1, 1, None)
        assert deliver_pending(store, transport, config, now=LATER)[:2] == (1, 0)
        assert sorted(str(m["Subject"])[:4] for _, m in server.messages) == ["[P1]", "[P2]"]


def _next_utc(hour: int, minute: int = 0) -> datetime:
    now = datetime.now(timezone.utc)
    at = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return at if at > now else at + timedelta(days=1)


def test_quiet_hours_to_midnight_hold_that_alert_and_the_round_goes_on(setup):
    responders = [{"email": "late@test.local", "min_priority": "P4", "quiet_hours": "22:00-24:00"},
                  {"email": "oncall@test.local", "min_priority": "P4"}]
    with SmtpServer() as server:
        config, store, pipeline, transport = setup(responders=responders, smtp_port=server.port)
        pipeline.process("reddit", Poll(mentions=[mention("a", "AMBER")]))
        eleven = _next_utc(23)
        assert deliver_pending(store, transport, config, now=eleven.timestamp())[:2] == (1, 1)
        assert [r for r, _ in server.messages] == [["oncall@test.local"]]
        held = store.query("SELECT next_attempt_at FROM alerts WHERE recipient = 'late@test.local'")[0][0]
        assert held == (eleven + timedelta(hours=1)).timestamp()  # midnight


def test_one_alert_that_cannot_be_handled_does_not_stop_the_round(setup):
    from monitor.config import Responder
    responders = [{"email": "odd@test.local", "min_priority": "P4"}, {"email": "oncall@test.local", "min_priority": "P4"}]
    with SmtpServer() as server:
        config, store, pipeline, transport = setup(responders=responders, smtp_port=server.port)
        # Built past validation (as an older check-config let it through): its quiet hours cannot be read.
        config.responders[0] = Responder.model_construct(email="odd@test.local", quiet_hours="18:00-25:00")
        pipeline.process("reddit", Poll(mentions=[mention("a", "AMBER")]))
        assert deliver_pending(store, transport, config, now=_next_utc(19).timestamp())[:2] == (1, 1)
        assert [r for r, _ in server.messages] == [["oncall@test.local"]]
        error = store.query("SELECT last_error FROM alerts WHERE recipient = 'odd@test.local'")[0][0]
        assert "25:00" in error


def test_digest_lists_the_highest_first_at_the_level_alerted(setup):
    responders = [{"email": "oncall@test.local", "min_priority": "P4", "digest_below": "P2"}]
    with SmtpServer() as server:
        config, store, pipeline, transport = setup(responders=responders, smtp_port=server.port, digest_minutes=30)
        pipeline.process("reddit", Poll(mentions=[mention("calm", "FAINT"), mention("grey", "GREY again"),
                                                  mention("quiet", "FAINT either")]))
        # The P3 story calms down before the digest goes: it was alerted as P3 and is listed so.
        with store.transaction() as db:
            db.exec_driver_sql("UPDATE mentions SET priority = 'P4' WHERE source_id = 'grey'")
        assert deliver_digests(store, transport, config, now=time.time() + 31 * 60) == 1
        digest = server.messages[0][1].get_body(("plain",)).get_content()
        levels = [line[:4] for line in digest.splitlines() if line.startswith("[P")]
        assert levels == ["[P3]", "[P4]", "[P4]"], digest
        assert digest.index("Acme grey") < digest.index("Acme calm") < digest.index("Acme quiet")


def test_once_and_status_tell_held_alerts_from_failing_ones(feeds, write_config, tmp_path):
    from tests.servers.feeds import rss
    pack = tmp_path / "pack.yaml"
    pack.write_text(PACK)
    url = feeds.serve("/f.xml", rss([{"title": "Acme AMBER thing", "link": "https://x.example/1", "guid": "1",
                                      "description": "Acme AMBER: it broke"},
                                     {"title": "Acme GREY thing", "link": "https://x.example/2", "guid": "2",
                                      "description": "Acme GREY: it wobbled"}]))
    now = datetime.now(timezone.utc)
    quiet = f"{(now - timedelta(hours=1)):%H:%M}-{(now + timedelta(hours=2)):%H:%M}"
    config = write_config({
        "rules": [str(pack)], "complaint": {"urgency_points": 0}, "sources": {"rss": {"feeds": [{"url": url}]}},
        "email": {"smtp": {"host": "127.0.0.1", "port": free_port(), "timeout": 5}, "digest_minutes": 30},
        "responders": [{"email": "digest@test.local", "min_priority": "P4", "digest_below": "P2"},
                       {"email": "sleepy@test.local", "min_priority": "P4", "quiet_hours": quiet}]})

    def cli(*args):
        result = subprocess.run([sys.executable, "-m", "monitor.cli", "--config", str(config), *args],
                                capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert result.returncode == 0, result.stderr
        return result

    # SMTP is down: the P2 to digest@ fails; its P3 waits for the digest, both of sleepy@'s for the morning.
    once = cli("once")
    assert "4 pending" in once.stdout
    assert "held: 1 alert for the digest to digest@test.local, until 20" in once.stdout
    assert "held: 2 alerts to sleepy@test.local through quiet hours, until 20" in once.stdout
    assert "1 alerts could not be delivered yet" in once.stderr
    assert "failing: 1 alert to digest@test.local, next try 20" in once.stderr
    assert "last error: Connection" in once.stderr
    assert "held" not in once.stderr
    lines = cli("status").stdout.splitlines()
    assert "  held: 2 alerts to sleepy@test.local through quiet hours, until" in "\n".join(lines)
    assert any(line.startswith("  failing: 1 alert to digest@test.local") and "last error" in line for line in lines)
    waiting = json.loads(cli("status", "--json").stdout)["outbox"]["waiting"]
    assert sorted((w["reason"], w["recipient"], w["count"]) for w in waiting) == [
        ("digest", "digest@test.local", 1), ("failing", "digest@test.local", 1), ("quiet hours", "sleepy@test.local", 2)]

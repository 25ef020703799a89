"""What lands in the responder's inbox: one thread per incident, subjects and first lines that say what
happened, times in the responder's timezone, follow-ups when a story keeps growing.

Real local things only: the Reddit-compatible server (praw), a feed server, an aiosmtpd SMTP server, SQLite.
"""

from __future__ import annotations

import email.utils
import textwrap
import time
from datetime import timedelta

import pytest

from monitor.alert import deliver_pending
from monitor.app import Monitor
from monitor.config import load_config
from monitor.source import Poll
from tests.conftest import local_sources
from tests.servers.feeds import rss
from tests.test_alerts import mention, setup  # noqa: F401  (setup is a fixture)

PACK = textwrap.dedent("""
    rules:
      - {name: red, when: 'text =~~ "RED"', urgency: 80, tags: [complaint]}
      - {name: grey, when: 'text =~~ "GREY"', urgency: 30, tags: [complaint]}
""")


def words(msg) -> str:
    """The subject after its [P..] bracket: what Gmail and Outlook thread on must stay the same."""
    return str(msg["Subject"]).split("] ", 1)[1]


@pytest.fixture
def monitor(reddit, feeds, smtp, write_config, tmp_path):
    def make(feed_items: list[dict], **email):
        pack = tmp_path / "pack.yaml"
        pack.write_text(PACK)
        feed_url = feeds.serve("/news.xml", rss(feed_items))
        sources = local_sources(reddit, subreddits=["Travel"], feeds=[{"url": feed_url, "name": "Daily News"}])
        config = load_config(write_config({
            "rules": [str(pack)], "complaint": {"urgency_points": 0}, "sources": sources,
            "email": {"smtp": {"host": "127.0.0.1", "port": smtp.port, "timeout": 5}, **email},
            "responders": [{"email": "oncall@test.local", "min_priority": "P4", "timezone": "America/New_York"}]}))
        return Monitor.from_config(config)
    return make


def test_one_incident_in_three_places_is_one_thread(reddit, smtp, monitor):
    now = time.time()
    reddit.add_post(subreddit="Travel", id="s1", title="Acme stranded us at the gate for nine hours",
                    selftext="RED no food, no hotel, no answers from Acme.", created_utc=now - 300, score=40)
    reddit.add_comment(subreddit="Travel", id="k1", link_id="t3_s1", body="Acme did the same to me in May GREY",
                       created_utc=now - 200)
    m = monitor([{"title": "Passengers stranded for nine hours", "link": "https://news.example/stranded",
                  "guid": "n1", "description": 'GREY Acme passengers <a href="https://www.reddit.com/r/Travel/'
                                               'comments/s1/post/">told their story on Reddit</a>.'}],
                follow_up_minutes=0)
    m.poll("reddit")
    m.deliver()
    (_, original), (_, comment) = smtp.messages  # the comment is a customer too, answered in the post's thread
    assert str(original["Subject"]) == "[P1] Acme stranded us at the gate for nine hours"
    assert str(comment["Subject"]) == "Re: [P1] Acme stranded us at the gate for nine hours"
    assert comment["In-Reply-To"] == original["Message-ID"]

    # The press links the post: same story, a new place, in the same thread.
    m.poll("rss")
    m.deliver()
    stories = m.store.query("SELECT story_id FROM mentions ORDER BY id")
    assert len(stories) == 3 and len({r["story_id"] for r in stories}) == 1 and stories[0]["story_id"]
    assert len(smtp.messages) == 3
    follow_up = smtp.messages[2][1]
    # Re: the last subject, which Gmail needs to keep the conversation together.
    assert str(follow_up["Subject"]) == "Re: [P1] Acme stranded us at the gate for nine hours"
    assert follow_up["In-Reply-To"] == comment["Message-ID"] and original["Message-ID"] in follow_up["References"]
    assert follow_up["Thread-Topic"] == original["Thread-Topic"] == words(original)
    body = follow_up.get_body(("plain",)).get_content()
    assert "Update since the last email" in body and "now also in Daily News (rss)" in body
    m.close()


def test_a_comment_shows_the_post_it_answers_and_times_are_local(reddit, smtp, monitor):
    now = time.time()
    reddit.add_post(subreddit="Travel", id="p9", title="Worst airport lounge ever?", selftext="Asking for a friend.",
                    created_utc=now - 300)
    reddit.add_comment(subreddit="Travel", id="k9", link_id="t3_p9", body="Acme lost my bag there RED",
                       created_utc=now - 200)
    m = monitor([])
    m.poll("reddit")
    m.deliver()
    [(_, msg)] = smtp.messages
    body = msg.get_body(("plain",)).get_content()
    first_line = body.splitlines()[0]
    assert first_line == "Acme lost my bag there RED"  # what happened, not the scores
    assert "In:    Worst airport lounge ever? https://www.reddit.com/r/Travel/comments/p9/post/" in body
    assert "? comments" not in body and "comments" not in body.split("Growth:")[1].splitlines()[0]
    assert " EST (" in body or " EDT (" in body  # the responder's timezone, UTC beside it
    html = msg.get_body(("html",)).get_content()
    assert "Worst airport lounge ever?</a>" in html
    m.close()


def test_growth_follow_up_at_the_same_level_at_most_every_n_minutes(setup):  # noqa: F811
    from tests.servers.smtp import SmtpServer
    with SmtpServer() as server:
        config, store, pipeline, transport = setup(smtp_port=server.port, follow_up_growth=4, follow_up_minutes=30)
        first = mention("a", "RED story", score=20, comments=5)
        pipeline.process("reddit", Poll(mentions=[first]))
        assert deliver_pending(store, transport, config)[:2] == (1, 0)

        def reread(minutes: int, score: int, comments: int) -> None:
            grown = mention("a", "RED story", score=score, comments=comments)
            grown.fetched_at = first.fetched_at + timedelta(minutes=minutes)
            pipeline.update_engagement("reddit", [grown])

        reread(10, 60, 10)  # x2.8: not news
        assert deliver_pending(store, transport, config)[:2] == (0, 0)
        store.query("UPDATE alerts SET created_at = created_at - 40 * 60")  # the P1 email went 40 minutes ago
        reread(20, 180, 40)  # x8.8 at the same level: a follow-up
        assert deliver_pending(store, transport, config)[:2] == (1, 0)
        reread(25, 900, 100)  # x4.5 again, but within 30 minutes of the last email: waits
        assert deliver_pending(store, transport, config)[:2] == (0, 1)
        assert deliver_pending(store, transport, config, now=time.time() + 31 * 60)[:2] == (1, 0)

        subjects = [str(msg["Subject"]) for _, msg in server.messages]
        assert subjects == ["[P1] Acme a", "Re: [P1] Acme a", "Re: [P1] Acme a"]
        ids = [msg["Message-ID"] for _, msg in server.messages]
        assert [msg["In-Reply-To"] for _, msg in server.messages] == [None, ids[0], ids[1]]
        body = server.messages[1][1].get_body(("plain",)).get_content()
        assert "score 20 -> 180 (+160)" in body and "priority" not in body.split("Update since")[1].splitlines()[1]
        kinds = [(a["priority"], a["kind"], a["status"]) for a in store.query("SELECT * FROM alerts ORDER BY id")]
        assert kinds == [("P1", "alert", "sent"), ("P1", "follow_up", "sent"), ("P1", "follow_up", "sent")]


def test_an_escalation_by_an_edit_says_what_changed_and_keeps_the_thread(setup):  # noqa: F811
    from tests.servers.smtp import SmtpServer
    with SmtpServer() as server:
        config, store, pipeline, transport = setup(smtp_port=server.port)
        first = mention("a", "GREY kettle arrived dented.", score=3)
        pipeline.process("reddit", Poll(mentions=[first]))
        assert deliver_pending(store, transport, config)[:2] == (1, 0)
        edited = mention("a", "GREY kettle arrived dented. RED it caught fire, my lawyer will call", score=4)
        edited.fetched_at = first.fetched_at + timedelta(minutes=10)
        edited.extra = {"edited_at": time.time()}
        pipeline.update_engagement("reddit", [edited])
        assert deliver_pending(store, transport, config)[:2] == (1, 0)
        (_, original), (_, escalation) = server.messages
        assert str(original["Subject"]) == "[P3] Acme a"
        assert str(escalation["Subject"]) == "[P1 up from P3] Acme a"  # the words after the bracket stay
        assert escalation["In-Reply-To"] == original["Message-ID"]
        assert escalation["Thread-Topic"] == original["Thread-Topic"] == "Acme a"
        body = escalation.get_body(("plain",)).get_content()
        assert "Escalated from P3 since the last email" in body, body
        assert "the author edited it, adding: \u201cRED it caught fire, my lawyer will call\u201d" in body

        # News at the level reached: Re: the last subject, which Gmail keeps in the conversation.
        store.query("UPDATE alerts SET created_at = created_at - 3600")
        grown = mention("a", "GREY kettle arrived dented. RED it caught fire, my lawyer will call", score=400)
        grown.fetched_at = first.fetched_at + timedelta(minutes=30)
        pipeline.update_engagement("reddit", [grown])
        assert deliver_pending(store, transport, config)[:2] == (1, 0)
        latest = server.messages[-1][1]
        assert str(latest["Subject"]) == "Re: [P1 up from P3] Acme a"
        assert latest["In-Reply-To"] == escalation["Message-ID"] and latest["Thread-Topic"] == "Acme a"


def test_an_alert_held_through_quiet_hours_is_dated_when_it_is_sent(setup):  # noqa: F811
    from datetime import datetime, timezone
    from tests.servers.smtp import SmtpServer
    now = datetime.now(timezone.utc)
    quiet = f"{(now - timedelta(hours=1)):%H:%M}-{(now + timedelta(hours=2)):%H:%M}"
    responders = [{"email": "sleepy@test.local", "min_priority": "P4", "quiet_hours": quiet, "timezone": "UTC"}]
    with SmtpServer() as server:
        config, store, pipeline, transport = setup(responders=responders, smtp_port=server.port)
        pipeline.process("reddit", Poll(mentions=[mention("b", "GREY at night")]))
        assert deliver_pending(store, transport, config)[:2] == (0, 1)
        # Queued in the night, eight hours ago; sent when the responder wakes.
        store.query("UPDATE alerts SET created_at = created_at - 8 * 3600")
        before = time.time()
        assert deliver_pending(store, transport, config, now=time.time() + 3 * 3600)[:2] == (1, 0)
        [(_, msg)] = server.messages
        assert email.utils.parsedate_to_datetime(msg["Date"]).timestamp() >= int(before)


def test_a_storm_of_alerts_is_one_summary_highest_first_each_recorded_once(setup):  # noqa: F811
    from tests.servers.smtp import SmtpServer
    responders = [{"email": "oncall@test.local", "min_priority": "P4"},
                  {"email": "boss@test.local", "min_priority": "P1"}]
    with SmtpServer() as server:
        config, store, pipeline, transport = setup(responders=responders, smtp_port=server.port, storm_threshold=10)
        storm = [mention(f"g{i}", "GREY again") for i in range(10)] + [mention("r1", "RED on fire"),
                                                                       mention("r2", "RED smoke")]
        pipeline.process("reddit", Poll(mentions=storm))
        assert deliver_pending(store, transport, config)[:2] == (3, 0)  # one summary + boss's two P1s
        summary = server.to("oncall@test.local")
        assert len(summary) == 1 and str(summary[0]["Subject"]) == "[P1] Storm: 12 alerts about Acme"
        body = summary[0].get_body(("plain",)).get_content()
        assert body.startswith("12 alerts at once (2 P1, 10 P3), highest first")
        assert body.index("[P1]") < body.index("[P3]") and body.count("https://reddit.example/") == 12
        assert len(server.to("boss@test.local")) == 2, "below the threshold: one email each"
        statuses = store.query("SELECT status, count(*) FROM alerts WHERE recipient = 'oncall@test.local'"
                               " GROUP BY status")
        assert [tuple(r) for r in statuses] == [("sent", 12)]
        assert deliver_pending(store, transport, config)[:2] == (0, 0)


def test_an_escalation_replaces_a_follow_up_still_waiting(setup):  # noqa: F811
    config, store, pipeline, transport = setup(follow_up_minutes=30)
    first = mention("a", "GREY story", score=20, comments=5, minutes_old=600)
    pipeline.process("reddit", Poll(mentions=[first]))
    store.mark_sent([a.id for a in store.due_alerts(1e12)], time.time(), subject="[P3] Acme a")

    def reread(minutes: int, score: int) -> None:
        grown = mention("a", "GREY story", score=score, comments=5, minutes_old=600)
        grown.fetched_at = first.fetched_at + timedelta(minutes=minutes)
        pipeline.update_engagement("reddit", [grown])

    reread(600, 200)  # x8 slowly: a follow-up at P3, held for 30 minutes after the last email
    reread(610, 1500)  # now fast: P1
    rows = [(a["priority"], a["kind"], a["status"]) for a in store.query("SELECT * FROM alerts ORDER BY id")]
    assert rows == [("P3", "alert", "sent"), ("P3", "follow_up", "superseded"), ("P1", "alert", "pending")]
    store.close()

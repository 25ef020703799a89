"""The alert email: hostile text stays data, and the format is pinned by golden files."""

from __future__ import annotations

import email
import email.message
import email.parser
import email.policy
import os
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from monitor.alert import alert_context, deliver_pending
from monitor.config import load_config
from monitor.mail import (PARSE_POLICY, SMTP_POLICY, FolderTransport, SmtpTransport, build_message, header_safe,
                          render)
from monitor.mention import Engagement, Mention
from monitor.pipeline import Pipeline
from monitor.store import Store

GOLDEN = Path(__file__).parent / "golden"
INJECTION = "=?utf-8?q?=0D=0ABcc:_attacker@evil.example?="


def test_header_safe_strips_controls_and_encoded_words():
    cleaned = header_safe("Bad\r\nBcc: x@evil\u2028more " + INJECTION)
    assert "\r" not in cleaned and "\n" not in cleaned and "\u2028" not in cleaned
    assert "=?" not in cleaned


def test_a_long_thread_references_its_root_and_latest_emails_by_whole_ids():
    # 80 earlier alerts of one story: more than the header's 2,000 characters.
    thread = [f"<alert-{i}.mention-{i * 7919}@complaint-monitor.example>" for i in range(80)]
    msg = build_message(sender="monitor@example.com", recipient="oncall@example.com", subject="[P1] Acme",
                        text="t", html="<p>t</p>", message_id="<new@complaint-monitor.example>",
                        in_reply_to=thread[-1], references=thread)
    parsed = email.message_from_bytes(msg.as_bytes(), policy=PARSE_POLICY)
    ids = str(parsed["References"]).split()
    assert set(ids) <= set(thread), "every id is whole: none cut in half"
    assert ids[0] == thread[0] and ids[-1] == thread[-1]  # the root, and the email this one answers
    assert ids[1:] == thread[len(thread) - len(ids) + 1:]  # then the latest, in order
    assert len(" ".join(ids)) <= 2000 and len(ids) < len(thread)
    short = thread[:3]
    reply = build_message(sender="monitor@example.com", recipient="oncall@example.com", subject="[P1] Acme",
                          text="t", html="<p>t</p>", message_id="<new@complaint-monitor.example>",
                          in_reply_to=short[-1], references=short)
    assert str(email.message_from_bytes(reply.as_bytes(), policy=PARSE_POLICY)["References"]).split() == short


@pytest.mark.parametrize("subject", [
    "x" * 80 + " " + INJECTION,
    INJECTION + " " + "y" * 200,
    "Acme \r\nBcc: attacker@evil.example",
    "Acme \nX-Injected: yes",
    "Àcme " * 40 + INJECTION,
])
def test_hostile_subject_never_adds_a_header(subject):
    msg = build_message(sender="m@test.local", recipient="oncall@test.local", subject=subject, text="t",
                        html="<p>t</p>", message_id="<1@test>")
    parsed = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    assert parsed["Bcc"] is None and parsed["X-Injected"] is None
    assert sorted(parsed.keys()) == sorted(msg.keys())


@pytest.mark.parametrize("subject", [
    "Acme broke my kettle", "x" * 80 + " " + INJECTION, "Àcme " * 40, "Acme \u2019quotes\u2019 and \U0001f621",
    "a" * 300, "Re: [P1] Acme: =?= ?= \"quoted\" <not@address> (comment)",
])
def test_the_policies_with_header_classes_made_once_write_what_the_standard_ones_write(subject):
    """SMTP_POLICY and PARSE_POLICY only reuse the header classes: the bytes, and the headers read back,
    are the standard policies'."""
    built = []
    for policy in (SMTP_POLICY, email.policy.SMTP):
        msg = email.message.EmailMessage(policy=policy)
        for name, value in [("From", "Monitor <m@test.local>"), ("To", "oncall@test.local, b@test.local"),
                            ("Subject", subject), ("Message-ID", "<1@test>"), ("References", "<0@test> <1@test>"),
                            ("Thread-Topic", subject)]:
            msg[name] = value
        msg.set_content("text \u00e9 " * 50)
        msg.add_alternative("<p>html</p>", subtype="html")
        msg.set_boundary("===boundary===")  # else random in each
        built.append(msg.as_bytes())
    assert built[0] == built[1]
    ours, standard = (email.parser.BytesParser(policy=p).parsebytes(built[0]) for p in (PARSE_POLICY,
                                                                                      email.policy.default))
    assert [(k, str(v)) for k, v in ours.items()] == [(k, str(v)) for k, v in standard.items()]
    assert ours["To"].addresses == standard["To"].addresses and ours["Subject"] == standard["Subject"]


def _stored_alert(tmp_path, write_config, *, title, text, author="angry_customer"):
    config = load_config(write_config())
    store = Store(config.store_path)
    pipeline = Pipeline(config=config, store=store)
    mention = Mention(source="rss", source_id="golden-1", kind="entry", url="https://example.com/post/1",
                      title=title, text=text, author=author, place="Example Forum",
                      created_at=datetime(2026, 11, 20, 9, 30, tzinfo=timezone.utc),
                      fetched_at=datetime(2026, 11, 20, 9, 45, tzinfo=timezone.utc),
                      engagement=Engagement(score=120, comments=45), reach=3000.0)
    from monitor.source import Poll
    outcome = pipeline.process("rss", Poll(mentions=[mention]), now=datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc))
    assert outcome.stored and outcome.alerts == 1
    alert = store.due_alerts(now=1e12)[0]
    return config, store, alert


def test_golden_alert_email(tmp_path, write_config):
    config, store, alert = _stored_alert(
        tmp_path, write_config, title="Acme charged me twice and nobody answers",
        text="I was charged twice by Acme for one order. Third time I call and still no refund. "
             "Never again, switching to Globex.")
    # In the responder's timezone (UTC beside it), led by what happened rather than the scores.
    text, html = render("alert", alert_context(store, alert, store.mention(alert.mention_id),
                                               zone=ZoneInfo("Europe/Berlin")))
    assert text.startswith("Acme charged me twice and nobody answers\n")
    assert "2026-11-20 10:30 CET (09:30 UTC)" in text
    # Ids differ by nothing but are not the point of the format.
    for name, body in (("alert.txt", text), ("alert.html", html)):
        golden = GOLDEN / name
        if os.environ.get("UPDATE_GOLDEN"):
            golden.write_text(body, encoding="utf-8")
        assert body == golden.read_text(encoding="utf-8"), f"{name} changed: run with UPDATE_GOLDEN=1 and review the diff"
    # Nothing loads from elsewhere when the responder opens it: no images, scripts, styles or trackers.
    lowered = html.lower()
    assert not any(tag in lowered for tag in ("<img", "<script", "<link", "<iframe", "src=", "url("))


def test_hostile_title_and_body_over_real_smtp(tmp_path, write_config, smtp):
    body = "<script>alert('x')</script> Acme <b>burned</b> my house " + "é€😀 " + "spam " * 300_000
    config, store, alert = _stored_alert(tmp_path, write_config, title="Acme " + INJECTION + "\r\nX-Evil: 1",
                                         text=body)
    from monitor.config import SmtpSettings
    transport = SmtpTransport(settings=SmtpSettings(host="127.0.0.1", port=smtp.port))
    sent, pending, _ = deliver_pending(store, transport, config)
    assert (sent, pending) == (1, 0)
    assert len(smtp.messages) == 1
    rcpts, msg = smtp.messages[0]
    assert rcpts == ["oncall@test.local"]
    assert msg["Bcc"] is None and msg["X-Evil"] is None
    assert str(msg["Subject"]).strip().startswith("[P") and "Acme" in msg["Subject"]
    html = msg.get_body(("html",)).get_content()
    plain = msg.get_body(("plain",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "é€😀" in plain and "é€😀" in html
    assert len(plain) < 20_000  # a megabyte post is trimmed; the link has the rest


def test_folder_transport_writes_one_file_per_alert(tmp_path):
    transport = FolderTransport(folder=tmp_path / "outbox")
    msg = build_message(sender="a@b", recipient="c@d", subject="s", text="t", html="<p>t</p>",
                        message_id="<alert-1-m1@complaint-monitor>")
    transport.send(msg)
    transport.send(msg)  # a resend of the same alert replaces its own file
    files = list((tmp_path / "outbox").iterdir())
    assert [f.suffix for f in files] == [".eml"]
    parsed = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert parsed["Message-ID"] == "<alert-1-m1@complaint-monitor>"

"""The fast path for alert emails against the email package, its oracle, on Hypothesis builds.

``build_message`` writes a plain email's bytes itself (``mail_fast``); the email package, given the same headers
and bodies (``EmailMessage``, ``set_content``, ``add_alternative``, ``as_bytes``), must write the same bytes but
for the random MIME boundary. Headers are drawn from what alerts carry and what the fast path must leave to the
email package (long, non-ASCII, encoded-word openers, display names); bodies from short and long lines, every
kind of line break and text that needs 8bit, quoted-printable or base64.
"""

from __future__ import annotations

import email.message
import email.policy
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.mail import SMTP_POLICY, build_message, header_safe
from monitor.mail_fast import _header_lines, alternative_wire, header_date

WORDS = ["Acme", "[P1]", "Re:", "kettle", "order", "12:", "(refund)", "\"quoted\"", "<not@address>", "=?",
         "?=", "é", "€", "😀", "a" * 70, "b" * 40, "c" * 60, "d" * 64, "e" * 65, "f" * 66, "x", ",", ";", "\\", "", " "]
LINES = ["Acme broke my kettle.", "", " ", "x" * 77, "y" * 78, "z" * 79, "é" * 40, "€😀 mixed ascii", "=3D",
         "tab\there", "-- signature", "--===============1234==", "<p>&amp;</p>", "From the start"]
BREAKS = ["\n", "\r\n", "\r", "\n\n"]


def _by_the_email_package(headers, text, html) -> bytes:
    # The standard policy, not the project's SMTP_POLICY (which test_mail holds to it): the oracle is untouched.
    msg = email.message.EmailMessage(policy=email.policy.SMTP)
    for name, value in headers:
        msg[name] = value
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    wire = msg.as_bytes()
    return wire, msg.get_boundary()


def _same_but_boundary(ours: bytes, theirs: bytes, their_boundary: str) -> bool:
    our_boundary = re.search(rb'boundary="([^"]+)"', ours).group(1)
    return theirs.replace(their_boundary.encode(), our_boundary) == ours


@st.composite
def body(draw) -> str:
    lines = draw(st.lists(st.sampled_from(LINES), max_size=30))
    return "".join(line + draw(st.sampled_from(BREAKS)) for line in lines) + draw(st.sampled_from(["", "end"]))


@st.composite
def header_text(draw) -> str:
    return " ".join(draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=30))).strip() or "x"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subject=header_text(), topic=header_text(), text=body(), html=body(),
       sender=st.sampled_from(["monitor@test.local", "Monitor <m@test.local>", "m.o-n+1@sub.test.local"]),
       thread=st.sampled_from([[], ["<alert-1-m1@complaint-monitor>"],
                               [f"<alert-{i}-m{i}@complaint-monitor>" for i in range(1, 9)]]))
def test_the_fast_path_writes_what_the_email_package_writes(subject, topic, text, html, sender, thread):
    # Cleaned as build_message cleans them; the fast path must decline what it cannot write, cleaned or not.
    for raw in (False, True):
        _compare(subject if raw else header_safe(subject), topic if raw else header_safe(topic), text, html,
                 sender, thread)
    built = build_message(sender=sender, recipient="oncall@test.local", subject=subject, text=text, html=html,
                          message_id="<alert-9-m1@complaint-monitor>", in_reply_to=thread[-1] if thread else None,
                          references=thread,
                          date=1.8e9, thread_topic=topic)
    # build_message (the fast path or, for the others, the email package) writes the same either way.
    theirs, boundary = _by_the_email_package(_headers(header_safe(subject), header_safe(topic), sender, thread),
                                             text, html)
    assert _same_but_boundary(built.wire, theirs, boundary)
    # Sent with the header's address as the envelope's only when the header is that bare address.
    assert built.envelope == ((sender, ["oncall@test.local"]) if "<" not in sender else None)


def _headers(subject, topic, sender, thread):
    headers = [("From", sender), ("To", "oncall@test.local"), ("Subject", subject), ("Date", header_date(1.8e9)),
               ("Message-ID", "<alert-9-m1@complaint-monitor>")]
    if thread:
        headers += [("In-Reply-To", thread[-1]), ("References", " ".join(thread))]
    return headers + [("Thread-Topic", topic), ("Auto-Submitted", "auto-generated")]


def _compare(subject, topic, text, html, sender, thread):
    headers = _headers(subject, topic, sender, thread)
    ours = alternative_wire(headers, text=text, html=html, policy=SMTP_POLICY)
    theirs, boundary = _by_the_email_package(headers, text, html)
    if ours is not None:
        assert _same_but_boundary(ours, theirs, boundary)


def test_an_ordinary_alert_takes_the_fast_path_and_reads_like_one_built_by_the_email_package():
    subject = "[P1] Acme kettle: charged me twice, " + ("support hung up on me and nobody answers " * 2).rstrip()
    headers = [("From", "monitor@test.local"), ("To", "oncall@test.local"),
               ("Subject", subject), ("Date", header_date(1.8e9)),
               ("Message-ID", "<alert-1-m1@complaint-monitor>"), ("Auto-Submitted", "auto-generated")]
    text, html = "Acme charged me twice \u2019\n" + "long line " * 20 + "\n", "<p>Acme &amp; me</p>\n"
    assert alternative_wire(headers, text=text, html=html, policy=SMTP_POLICY) is not None
    # Every header written here, the folded subject too: none left to the email package's header objects.
    assert all(_header_lines(name, value, SMTP_POLICY) for name, value in headers)
    msg = build_message(sender="monitor@test.local", recipient="oncall@test.local",
                        subject=subject, text=text, html=html,
                        message_id="<alert-1-m1@complaint-monitor>", date=1.8e9)
    assert str(msg["Subject"]) == subject and re.search(rb"\r\nSubject: [^\r]+\r\n \S", msg.wire)  # folded
    assert msg["Date"].datetime.timestamp() == 1.8e9
    # The parts are read from the bytes when asked for, as the email package reads the bytes it wrote.
    assert msg.get_body(("plain",)).get_content() == text
    assert msg.get_body(("html",)).get_content() == html
    assert bytes(msg) == msg.as_bytes() == msg.wire
    reread = email.message_from_bytes(msg.wire, policy=email.policy.default)
    assert [(k, str(v)) for k, v in reread.items()] == [(k, str(v)) for k, v in msg.items()]

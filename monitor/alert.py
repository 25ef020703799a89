"""Decide who hears about a mention, and deliver the queued alerts.

Alerts are queued in the store together with the mention (see ``Pipeline``).
``deliver_pending`` sends what is due, one email per alert, and records the
outcome; ``deliver_digests`` gathers the lower priorities a responder asked
to get as a digest. A failure leaves alerts queued with a later retry time,
so an SMTP outage delays alerts but never loses them. The only duplicate is
a crash between the server's acceptance and our commit, and the resend then
carries the same Message-ID, so mail clients show it once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import smtplib
import time
from datetime import datetime, timedelta, timezone
from typing import NamedTuple
from zoneinfo import ZoneInfo

from .config import Config, Responder
from .mail import Transport, build_message, header_safe, render, trim
from .store import Store, from_epoch

log = logging.getLogger("complaint_monitor.alert")

RETRY_BASE_SECONDS = 30
RETRY_MAX_SECONDS = 1800
DIGEST_MAX_ITEMS = 50

_SESSION_ERRORS = (smtplib.SMTPConnectError, smtplib.SMTPServerDisconnected, smtplib.SMTPAuthenticationError,
                   smtplib.SMTPHeloError, smtplib.SMTPNotSupportedError)


def _server_unusable(err: Exception) -> bool:
    """The connection or session failed, so every other alert would fail the same way:
    the round stops instead of waiting out a timeout per alert. A refusal of one
    message or recipient (also an OSError, as all SMTP errors are) is not that."""
    if isinstance(err, _SESSION_ERRORS):
        return True
    return isinstance(err, OSError) and not isinstance(err, smtplib.SMTPException)


def recipients(config: Config, *, brand: str | None, priority: str, suppressed: bool,
               notify: list[str] = (), kind: str = "complaint") -> list[tuple[str, bool]]:
    """(address, as_digest) for everyone who should hear about it: complaints by each responder's
    ``min_priority``, mentions that spread without being complaints only by their ``viral_min_priority``."""
    if suppressed:
        return []
    found = [(r.email, r.digests(priority)) for r in config.responders if r.wants(brand, priority, kind=kind)]
    if kind == "complaint":
        found.extend((e, False) for e in notify if e not in {a for a, _ in found})
    return found


# -- quiet hours ---------------------------------------------------------


def quiet_until(responder: Responder | None, now: float) -> float | None:
    """End of the responder's quiet hours as a timestamp, or None when they are awake."""
    window = responder.quiet_window if responder is not None else None
    if window is None:
        return None
    start, end = window
    local = datetime.fromtimestamp(now, ZoneInfo(responder.timezone))
    minute = local.hour * 60 + local.minute
    inside = (start <= minute < end) if start < end else (minute >= start or minute < end)
    if not inside:
        return None
    # Counted from local midnight, so an end of 24:00 is the next midnight.
    wake = local.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(minutes=end)
    if wake <= local:
        wake += timedelta(days=1)
    return wake.timestamp()


def _responder(config: Config, address: str) -> Responder | None:
    return next((r for r in config.responders if r.email == address), None)


# -- rendering -----------------------------------------------------------


def subject_for(mention, *, priority: str, previous_priority: str | None = None, kind: str = "complaint") -> str:
    """``priority`` is the level the alert was raised at: the story may have calmed down before it is sent."""
    words = header_safe(mention["title"] or mention["quote"] or mention["text"], limit=90)
    level = priority if previous_priority is None else f"{priority} up from {previous_priority}"
    if kind != "complaint":
        level = f"Viral {level}"
    return f"[{level}] {mention['brand']}: {words}"


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:+.{digits}f}"


def _reasons(mention) -> list[str]:
    lines = []
    for r in json.loads(mention["reasons"] or "[]"):
        if r["kind"] == "rule":
            effects = [f"{k} {r[k]:+g}" for k in ("urgency", "virality") if r[k]]
            lines.append(f"rule {r['name']}: {', '.join(effects) or 'no points'}"
                         + (f" ({r['detail']})" if r["detail"] else ""))
        elif r["kind"] == "model":
            lines.append(f"{r['detail']}: urgency {r['urgency']:+g}")
        elif r["kind"] == "signal":  # a growth signal's share of the virality risk, with its value
            lines.append(f"signal {r['name']}: "
                         + (f"virality {r['virality']:+g} ({r['detail']})" if r["virality"] else r["detail"]))
    return lines


def _changes(previous, alert) -> list[str]:
    """What moved between the last email and this one, in words."""
    changes = [f"priority {previous['priority']} -> {alert['priority']}"]
    for label, key in (("urgency", "urgency"), ("virality risk", "virality")):
        if previous[key] is not None and alert[key] is not None and previous[key] != alert[key]:
            changes.append(f"{label} {previous[key]:.0f} -> {alert[key]:.0f}")
    for label, key in (("score", "score"), ("comments", "comments")):
        if previous[key] is not None and alert[key] is not None and previous[key] != alert[key]:
            changes.append(f"{label} {previous[key]} -> {alert[key]} ({alert[key] - previous[key]:+d})")
    return changes


def alert_context(store: Store, alert, mention, previous=None) -> dict:
    snapshots = store.snapshots(mention["id"])
    if snapshots:
        growth_line = "; ".join(
            f"{from_epoch(s['taken_at']):%H:%M} UTC: score {s['score'] if s['score'] is not None else '?'},"
            f" {s['comments'] if s['comments'] is not None else '?'} comments" for s in snapshots[-6:])
    else:
        growth_line = "no engagement numbers from this source"
    elsewhere = []
    if mention["story_id"] is not None:
        elsewhere = [f"{r['place'] or r['source']}: {r['url']}" for r in store.query(
            "SELECT place, source, url FROM mentions WHERE story_id = ? AND id != ? ORDER BY created_at LIMIT 10",
            (mention["story_id"], mention["id"]))]
    posted = from_epoch(mention["created_at"])
    extra = json.loads(mention["extra"] or "{}")
    kind = alert["kind"] if "kind" in alert.keys() else "complaint"
    complaint = mention["complaint"]
    return {
        # The level it was alerted at: the story may have calmed down (or grown) since. A viral alert's level is
        # its spread (the mention itself is P4 as a complaint).
        "alert_id": alert["id"], "mention_id": mention["id"], "priority": alert["priority"], "kind": kind,
        "what": "complaint" if kind == "complaint" else "viral mention (not a complaint)",
        "complaint": "n/a" if complaint is None else f"{complaint:.2f} (complaint model, 0-1)",
        "brand": mention["brand"], "urgency": f"{mention['urgency']:.0f}", "virality": f"{mention['virality']:.0f}",
        "quote": trim(mention["quote"] or mention["text"], 400), "title": header_safe(mention["title"], 300),
        "text": trim(mention["text"]), "author": mention["author"] or "unknown author",
        # Edited since it was first read: the responder sees both, the first text is what may have been seen.
        "first_text": trim(extra["first_text"]) if extra.get("first_text") else "",
        "place": mention["place"] or mention["source"], "source": mention["source"], "url": mention["url"],
        "posted": f"{posted:%Y-%m-%d %H:%M} UTC",
        "compound": _fmt(mention["compound"]), "min_sentence": _fmt(mention["min_sentence"]),
        "negative_share": f"{(mention['negative_share'] or 0):.0%}",
        "growth_line": growth_line, "reasons": _reasons(mention), "elsewhere": elsewhere,
        "changes": _changes(previous, alert) if previous is not None else [],
        "since": f"{from_epoch(previous['sent_at'] or previous['created_at']):%Y-%m-%d %H:%M} UTC" if previous else "",
    }


def render_alert(store: Store, alert, config: Config):
    mention = store.mention(alert["mention_id"])
    earlier = store.earlier_alerts(alert)
    previous = earlier[-1] if earlier else None
    text, html = render("alert", alert_context(store, alert, mention, previous))
    return build_message(
        sender=config.email.from_, recipient=alert["recipient"],
        subject=subject_for(mention, priority=alert["priority"],
                            previous_priority=previous["priority"] if previous else None, kind=alert["kind"]),
        text=text, html=html, message_id=alert["message_id"], date=alert["created_at"],
        in_reply_to=previous["message_id"] if previous else None,
        references=[a["message_id"] for a in earlier])


# -- delivery ------------------------------------------------------------


def _retry_at(config: Config, alert, now: float) -> float | None:
    if now - alert["created_at"] > config.email.max_retry_hours * 3600:
        return None  # given up: stays visible as failed
    attempts = alert["attempts"] + 1
    delay = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** (attempts - 1))
    return now + delay * random.uniform(0.8, 1.2)


def _permanent(err: Exception) -> bool:
    """A 5xx answer about this message or recipient will not change on retry."""
    if isinstance(err, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in err.recipients.values())
    return isinstance(err, (smtplib.SMTPDataError, smtplib.SMTPSenderRefused)) and err.smtp_code >= 500


class Delivery(NamedTuple):
    sent: int
    pending: int
    connection_error: str | None = None  # set when the server could not be reached at all


def deliver_pending(store: Store, transport: Transport, config: Config, *, now: float | None = None) -> Delivery:
    """Send every due alert once."""
    now = time.time() if now is None else now
    sent = 0
    connection_error = None
    for alert in store.due_alerts(now):
        # Everything about one alert is inside the try: whatever fails costs that alert a retry, never the round.
        try:
            if alert["priority"] != "P1":
                wake = quiet_until(_responder(config, alert["recipient"]), now)
                if wake is not None:
                    store.postpone(alert["id"], wake)
                    continue
            msg = render_alert(store, alert, config)
            transport.send(msg)
        except Exception as err:  # kept queued whatever went wrong; the log says what
            retry = None if _permanent(err) else _retry_at(config, alert, now)
            store.mark_failed(alert["id"], f"{type(err).__name__}: {err}", retry_at=retry)
            log.warning("alert %s to %s not delivered via %s (attempt %d): %s: %s", alert["id"], alert["recipient"],
                        transport.description, alert["attempts"] + 1, type(err).__name__, err)
            if _server_unusable(err):
                connection_error = f"{type(err).__name__}: {err}"
                break
            continue
        store.mark_sent(alert["id"], time.time())
        sent += 1
        log.info("alert %s (%s, mention %s) sent to %s", alert["id"], alert["priority"], alert["mention_id"],
                 alert["recipient"])
    return Delivery(sent, store.pending_count(), connection_error)


def digest_due(config: Config, recipient: str, alerts, now: float) -> float:
    """When the digest of these pending alerts may go: its oldest has waited ``digest_minutes``, and not in
    the recipient's quiet hours."""
    due = min(a["created_at"] for a in alerts) + config.email.digest_minutes * 60
    return max(due, quiet_until(_responder(config, recipient), max(now, due)) or due)


def deliver_digests(store: Store, transport: Transport, config: Config, *, now: float | None = None) -> int:
    """One email per responder with the lower-priority alerts gathered over ``digest_minutes``."""
    now = time.time() if now is None else now
    by_recipient: dict[str, list] = {}
    for alert in store.pending_digest_alerts():
        by_recipient.setdefault(alert["recipient"], []).append(alert)
    sent = 0
    for recipient, alerts in by_recipient.items():
        # Everything about one responder's digest is inside the try: a failure costs that digest, never the round.
        try:
            if digest_due(config, recipient, alerts, now) > now:
                continue
            batch = alerts[:DIGEST_MAX_ITEMS]
            items = [alert_context(store, a, store.mention(a["mention_id"])) for a in batch]
            # Same batch, same Message-ID: a resend after a crash is recognisably the same email.
            key = hashlib.sha1(f"{recipient}|{','.join(str(a['id']) for a in batch)}".encode()).hexdigest()[:16]
            text, html = render("digest", {"items": items, "count": len(batch), "more": len(alerts) - len(batch)})
            brands = sorted({i["brand"] for i in items})
            msg = build_message(sender=config.email.from_, recipient=recipient,
                                subject=f"Digest: {len(batch)} lower-priority mentions of {', '.join(brands)}",
                                text=text, html=html, message_id=f"<digest-{key}@complaint-monitor>", date=now)
            transport.send(msg)
        except Exception as err:
            log.warning("digest to %s not delivered via %s: %s: %s", recipient, transport.description,
                        type(err).__name__, err)
            if _server_unusable(err):
                break
            continue
        store.mark_sent([a["id"] for a in batch], time.time())
        sent += 1
        log.info("digest of %d alerts sent to %s", len(batch), recipient)
    return sent


class Waiting(NamedTuple):
    """One recipient's queued alerts that wait for one reason."""
    reason: str  # "digest", "quiet hours" (both held on purpose), "failing", "queued" (not tried yet)
    recipient: str
    count: int
    until: float | None  # when they may go (digest, quiet hours) or are tried again (failing)
    last_error: str | None = None

    @property
    def held(self) -> bool:
        """Held back on purpose: what the responder asked for, not a problem."""
        return self.reason in ("digest", "quiet hours")


def waiting(store: Store, config: Config, *, now: float | None = None) -> list[Waiting]:
    """Why the pending alerts have not gone out: held on purpose, or failing with the last error."""
    now = time.time() if now is None else now
    groups: dict[tuple[str, str], list] = {}
    for alert in store.pending_alerts():
        if alert["digest"]:
            reason = "digest"
        elif alert["last_error"]:
            reason = "failing"
        # Postponed (the one thing that postpones an alert that has not failed), or not tried yet and due
        # inside the quiet hours, where the next round will postpone it.
        elif alert["next_attempt_at"] > now or (alert["priority"] != "P1" and quiet_until(
                _responder(config, alert["recipient"]), now)):
            reason = "quiet hours"
        else:
            reason = "queued"
        groups.setdefault((reason, alert["recipient"]), []).append(alert)
    found = []
    for (reason, recipient), alerts in groups.items():
        if reason == "digest":
            until = digest_due(config, recipient, alerts, now)
        elif reason == "quiet hours":
            until = max([a["next_attempt_at"] for a in alerts] + [quiet_until(_responder(config, recipient), now) or 0])
        elif reason == "failing":
            until = min(a["next_attempt_at"] for a in alerts)
        else:
            until = None
        last_error = max(alerts, key=lambda a: a["attempts"])["last_error"]
        found.append(Waiting(reason, recipient, len(alerts), until, last_error))
    return found


def send_test_email(transport: Transport, config: Config, *, to: str) -> str:
    """A sample alert through the configured transport; returns its Message-ID."""
    now = datetime.now(timezone.utc)
    context = {
        "alert_id": 0, "mention_id": 0, "priority": "P1", "kind": "complaint", "what": "complaint",
        "complaint": "0.95 (complaint model, 0-1)", "brand": config.brands[0].name, "urgency": "80",
        "virality": "40", "quote": f"This is a test alert from complaint-monitor about {config.brands[0].name}.",
        "title": "complaint-monitor test email", "text": "If you can read this, alert emails reach you.",
        "author": "complaint-monitor", "place": "test-email", "source": "test", "url": "https://example.invalid/",
        "posted": f"{now:%Y-%m-%d %H:%M} UTC", "compound": "+0.00", "min_sentence": "+0.00",
        "negative_share": "0%", "growth_line": "none (test)", "reasons": ["test-email: no rules ran"],
        "elsewhere": [], "changes": [], "since": "", "first_text": "",
    }
    text, html = render("alert", context)
    message_id = f"<test-{int(now.timestamp())}@complaint-monitor>"
    transport.send(build_message(sender=config.email.from_, recipient=to, subject="[TEST] complaint-monitor test alert",
                                 text=text, html=html, message_id=message_id))
    return message_id

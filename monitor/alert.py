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

import difflib
import hashlib
import logging
import queue
import random
import re
import smtplib
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import NamedTuple
from zoneinfo import ZoneInfo

from .config import PRIORITIES, Config, Responder
from .mail import SUBJECT_WORDS_LIMIT, Transport, build_message, header_safe, render, trim
from .sharing import AlertClaims, OwnAlerts
from .store import Store, from_epoch

log = logging.getLogger("complaint_monitor.alert")

Claims = AlertClaims | OwnAlerts

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
               notify: list[str] = (), about: str = "complaint") -> list[tuple[str, bool]]:
    """(address, as_digest) for everyone who should hear about it: complaints by each responder's
    ``min_priority``, mentions that spread without being complaints only by their ``viral_min_priority``."""
    if suppressed:
        return []
    found = [(r.email, r.digests(priority)) for r in config.responders if r.wants(brand, priority, about=about)]
    if about == "complaint":
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


def _held(config: Config, recipient: str, now: float) -> bool:
    """In the recipient's quiet hours. Settings that cannot be read count as awake here: the alert's own
    delivery then fails on them and records why, without stopping the round."""
    try:
        return quiet_until(_responder(config, recipient), now) is not None
    except Exception:
        return False


def _responder(config: Config, address: str) -> Responder | None:
    return next((r for r in config.responders if r.email == address), None)


# -- rendering -----------------------------------------------------------


def subject_words(mention) -> str:
    """What happened, for the subject: the title (or what was said), led by the brand only when it does not
    name it already ("Acme Air stranded us", not "Acme Air: Acme Air stranded us")."""
    words = header_safe(mention.title or mention.quote or mention.text, limit=SUBJECT_WORDS_LIMIT)
    brand = mention.brand or ""
    if brand and not re.search(rf"(?<!\w){re.escape(brand)}(?!\w)", words, re.IGNORECASE):
        words = f"{header_safe(brand)}: {words}"
    return words


def subject_for(words: str, *, priority: str, previous_priority: str | None = None,
                previous_subject: str | None = None, about: str = "complaint") -> str:
    """``priority`` is the level the alert was raised at: the story may have calmed down before it is sent;
    ``previous_priority`` is the highest level the thread reached before, ``previous_subject`` the last
    email's subject. Gmail keeps a conversation together only while the subject stays the same but for
    ``Re:``, so news at a level already reached is ``Re:`` the last subject; a rise in priority must show
    (``[P1 up from P3]``) and keeps the words after the bracket, which Outlook's Thread-Topic carries.
    A mention that spreads without being a complaint says so first: ``[Viral P2]``."""
    level = priority if about == "complaint" else f"Viral {priority}"
    if previous_priority is None:
        return f"[{level}] {words}"
    if priority < previous_priority:  # "P1" < "P3": higher
        return f"[{level} up from {previous_priority}] {words}"
    return f"Re: {_bare(previous_subject) or f'[{previous_priority}] {words}'}"


def _bare(subject: str | None) -> str:
    return (subject or "").removeprefix("Re: ")


def _thread_words(subject: str | None) -> str | None:
    """The words after the bracket of a subject this module wrote."""
    bare = _bare(subject)
    return bare.split("] ", 1)[1] if bare.startswith("[") and "] " in bare else None


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:+.{digits}f}"


def _when(epoch: float, zone: ZoneInfo) -> str:
    """The responder's local time, with UTC beside it for comparing with logs and colleagues."""
    utc = from_epoch(epoch)
    if zone.key == "UTC":
        return f"{utc:%Y-%m-%d %H:%M} UTC"
    return f"{utc.astimezone(zone):%Y-%m-%d %H:%M %Z} ({utc:%H:%M} UTC)"


def _reasons(mention) -> list[str]:
    lines = []
    for r in mention.reasons:
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


def _edit(first: str, now: str, limit: int = 300) -> str:
    """What an author's edit changed, in their words: the text added (or, failing that, removed)."""
    a, b = first.split(), now.split()
    added, removed = [], []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op in ("insert", "replace"):
            added.append(" ".join(b[j1:j2]))
        if op in ("delete", "replace"):
            removed.append(" ".join(a[i1:i2]))
    if added:
        return f"the author edited it, adding: \u201c{trim(' … '.join(added), limit)}\u201d"
    return f"the author edited it, removing: \u201c{trim(' … '.join(removed), limit)}\u201d" if removed else ""


def _changes(store: Store, previous, best: str, alert, mention) -> list[str]:
    """What moved between the last email of the thread (``best``: the highest level it reached) and this one."""
    changes = []
    if alert.priority < best:
        changes.append(f"priority {best} -> {alert.priority}")
    extra = mention.extra
    # Edited since the last email (Reddit's edit time): the news may be in the words, not the numbers.
    if extra.get("first_text") and float(extra.get("edited_at") or 0) >= previous.created_at:
        edit = _edit(extra["first_text"], mention.text)
        if edit:
            changes.append(edit)
    # Places the story reached since the last email (this mention's own, when it is new to the thread).
    places = [] if mention.story_id is None else [
        f"{p.place or p.source} ({p.source})" for p in store.story_places_since(
            mention.story_id, since=previous.created_at, besides=previous.mention_id)]
    if places:
        changes.append(f"the story is now also in {', '.join(places)}")
    if previous.mention_id != alert.mention_id:
        return changes  # another mention of the story: its numbers do not compare with the last email's
    for label, before, now in (("urgency", previous.urgency, alert.urgency),
                               ("virality risk", previous.virality, alert.virality)):
        if before is not None and now is not None and before != now:
            changes.append(f"{label} {before:.0f} -> {now:.0f}")
    for label, before, now in (("score", previous.score, alert.score), ("comments", previous.comments, alert.comments)):
        if before is not None and now is not None and before != now:
            changes.append(f"{label} {before} -> {now} ({now - before:+d})")
    return changes


def _web_link(url) -> str:
    # Autoescape stops markup, not a javascript: URL in an href.
    return url if isinstance(url, str) and url.lower().startswith(("https://", "http://")) else ""


def _growth_line(snapshots, zone: ZoneInfo) -> str:
    if not snapshots:
        return "no engagement numbers from this source"
    readings = []
    for s in snapshots[-6:]:
        numbers = [f"score {s.score}" if s.score is not None else "",
                   f"{s.comments} comments" if s.comments is not None else ""]
        clock = f"{from_epoch(s.taken_at).astimezone(zone):%H:%M %Z}"
        readings.append(f"{clock}: {', '.join(n for n in numbers if n) or 'no numbers'}")
    return "; ".join(readings)


def alert_context(store: Store, alert, mention, previous=None, *, best: str | None = None,
                  zone: ZoneInfo = ZoneInfo("UTC"), snapshots: list | None = None) -> dict:
    """Everything an alert email shows; ``previous`` is the thread's last email and ``best`` the highest
    level the thread reached (default: the previous email's); times in ``zone``, the responder's timezone.
    ``snapshots``: the mention's engagement readings, when the caller read them already (a round reads all
    of its mentions' at once)."""
    best = best or (previous.priority if previous is not None else None)
    elsewhere = []
    if mention.story_id is not None:
        elsewhere = [f"{p.place or p.source}: {p.url}" for p in store.story_places(mention.story_id,
                                                                                     besides=mention.id)]
    extra = mention.extra
    about = alert.about
    complaint = mention.complaint
    changes = _changes(store, previous, best, alert, mention) if previous is not None else []
    escalated = previous is not None and alert.priority < best
    return {
        # The level it was alerted at: the story may have calmed down (or grown) since. A viral alert's level is
        # its spread (the mention itself is P4 as a complaint).
        "alert_id": alert.id, "mention_id": mention.id, "priority": alert.priority, "about": about,
        "what": "complaint" if about == "complaint" else "viral mention (not a complaint)",
        "complaint": "n/a" if complaint is None else f"{complaint:.2f} (complaint model, 0-1)",
        "brand": mention.brand, "urgency": f"{mention.urgency:.0f}", "virality": f"{mention.virality:.0f}",
        # The first line, which phones show as the preview: what happened, not the scores.
        "headline": header_safe(mention.title or mention.quote or mention.text, 200),
        "quote": trim(mention.quote or mention.text, 400), "title": header_safe(mention.title, 300),
        "text": trim(mention.text), "author": mention.author or "unknown author",
        # A comment's thread: the post it answers.
        "thread_title": header_safe(extra.get("post_title"), 300) if mention.kind == "comment" else "",
        "thread_url": _web_link(extra.get("post_url")) if mention.kind == "comment" else "",
        # Edited since it was first read: the responder sees both, the first text is what may have been seen.
        "first_text": trim(extra["first_text"]) if extra.get("first_text") else "",
        "place": mention.place or mention.source, "source": mention.source, "url": mention.url,
        "posted": _when(mention.created_at, zone),
        "compound": _fmt(mention.compound), "min_sentence": _fmt(mention.min_sentence),
        "negative_share": f"{(mention.negative_share or 0):.0%}",
        "growth_line": _growth_line(store.snapshots(mention.id) if snapshots is None else snapshots, zone),
        "reasons": _reasons(mention),
        "elsewhere": elsewhere, "changes": changes,
        "change_heading": (f"Escalated from {best}" if escalated else "Update") if previous else "",
        "since": _when(previous.sent_at or previous.created_at, zone) if previous else "",
    }


def _zone(config: Config, address: str) -> ZoneInfo:
    responder = _responder(config, address)
    return ZoneInfo(responder.timezone if responder else "UTC")


def render_alert(store: Store, alert, config: Config, *, now: float | None = None, round_: Round | None = None):
    """The email and its subject (kept with the alert for the thread). Date is the sending time: an alert
    held through quiet hours arrives on top of the inbox, not sorted back into the night. ``round_``: what
    a delivery round read for all its alerts at once."""
    mention = round_.mentions.get(alert.mention_id) if round_ is not None else None
    mention = mention or store.mention(alert.mention_id)
    earlier = round_.earlier_alerts(alert) if round_ is not None else None
    if earlier is None:
        earlier = store.earlier_alerts(alert)
    previous = earlier[-1] if earlier else None
    best = min(a.priority for a in earlier) if earlier else None
    words = next((w for a in earlier if (w := _thread_words(a.subject))), None) or subject_words(mention)
    context = alert_context(store, alert, mention, previous, best=best, zone=_zone(config, alert.recipient),
                            snapshots=None if round_ is None else round_.snapshots.get(alert.mention_id, []))
    text, html = render("alert", context)
    subject = subject_for(words, priority=alert.priority, previous_priority=best,
                          previous_subject=previous.subject if previous else None, about=alert.about)
    return build_message(
        sender=config.email.from_, recipient=alert.recipient, subject=subject,
        text=text, html=html, message_id=alert.message_id, date=time.time() if now is None else now,
        in_reply_to=previous.message_id if previous else None,
        references=[a.message_id for a in earlier], thread_topic=words), subject


# -- delivery ------------------------------------------------------------


def _retry_at(config: Config, alert, now: float) -> float | None:
    if now - alert.created_at > config.email.max_retry_hours * 3600:
        return None  # given up: stays visible as failed
    attempts = alert.attempts + 1
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


def _batch_message_id(kind: str, recipient: str, batch) -> str:
    # Same batch, same Message-ID: a resend after a crash is recognisably the same email.
    key = hashlib.sha1(f"{recipient}|{','.join(str(a.id) for a in batch)}".encode()).hexdigest()[:16]
    return f"<{kind}-{key}@complaint-monitor>"


def _send_storms(store: Store, transport: Transport, config: Config, due: list, now: float,
                 claims: Claims) -> tuple[list, int]:
    """A responder who would get more than ``email.storm_threshold`` alerts in this round gets one summary
    email listing them, highest priority first, each with its link; each alert is recorded as sent in
    it. Returns the alerts left to send one by one, and the number of summaries sent."""
    by_recipient: dict[str, list] = {}
    for alert in due:
        # What quiet hours hold back is not sent now, so it is not part of the storm either.
        if alert.priority == "P1" or not _held(config, alert.recipient, now):
            by_recipient.setdefault(alert.recipient, []).append(alert)
    storms = {r: batch for r, batch in by_recipient.items() if len(batch) > config.email.storm_threshold}
    sent = 0
    for recipient, batch in storms.items():
        zone = _zone(config, recipient)
        items = sorted((alert_context(store, a, store.mention(a.mention_id), zone=zone) for a in batch),
                       key=lambda i: (i["priority"], -float(i["urgency"])))
        brands = sorted({i["brand"] or "?" for i in items})
        levels = ", ".join(f"{n} {p}" for p in PRIORITIES if (n := sum(i["priority"] == p for i in items)))
        text, html = render("digest", {"items": items, "count": len(items), "more": 0,
                                       "intro": f"{len(items)} alerts at once ({levels}), highest first"})
        try:
            transport.send(build_message(
                sender=config.email.from_, recipient=recipient,
                subject=f"[{items[0]['priority']}] Storm: {len(items)} alerts about {', '.join(brands)}",
                text=text, html=html, message_id=_batch_message_id("storm", recipient, batch), date=time.time()))
        except Exception as err:  # the alerts stay queued for the next round's summary, never one email each
            log.warning("storm summary to %s not delivered via %s: %s: %s", recipient, transport.description,
                        type(err).__name__, err)
            continue
        store.mark_sent([a.id for a in batch], time.time())
        claims.done([a.id for a in batch])
        sent += 1
        log.info("storm summary of %d alerts sent to %s", len(batch), recipient)
    in_storms = {a.id for batch in storms.values() for a in batch}
    return [a for a in due if a.id not in in_storms], sent


def deliver_pending(store: Store, transport: Transport, config: Config, *, now: float | None = None,
                    claims: Claims | None = None) -> Delivery:
    """Send every due alert once; a storm of them as one summary per responder. ``claims``: the alerts this
    daemon may send when several share the store (``sharing.AlertClaims``); all of them otherwise."""
    now = time.time() if now is None else now
    claims = claims or OwnAlerts()
    # One SMTP connection for the round. Each alert is still recorded as sent in its own commit before the
    # next one goes (a commit in WAL mode without fsync costs far less than the email): a crash mid-round
    # resends at most the one email in flight, with the same Message-ID.
    try:
        with transport.session():
            return _deliver_due(store, transport, config, now, claims)
    finally:
        claims.finish()


def _thread_key(recipient: str, mention_id: int, story_id: int | None) -> tuple:
    # A recipient's emails about one story (or, with no story, one mention) are a thread: ``earlier_alerts``.
    return (recipient, "story", story_id) if story_id is not None else (recipient, "mention", mention_id)


@dataclass(frozen=True)
class Round:
    """What a delivery round's alerts are about, read in a few queries for the round, not several per alert:
    the mentions, their engagement readings, and the threads they reply in (the emails sent in them, kept up
    to date with what the round itself sends). An email another daemon sends in one of these threads while
    the round runs is seen from the next round on."""
    mentions: dict
    snapshots: dict
    threads: dict = field(default_factory=dict)  # thread key -> its sent alerts

    @classmethod
    def read(cls, store: Store, alerts: list) -> "Round":
        ids = [a.mention_id for a in alerts]
        mentions = store.mentions_by_id(ids)
        threads: dict[tuple, list] = {}
        for sent, story in store.sent_in_threads(
                recipients=[a.recipient for a in alerts], mention_ids=ids,
                story_ids=[m.story_id for m in mentions.values() if m.story_id is not None]):
            threads.setdefault(_thread_key(sent.recipient, sent.mention_id, story), []).append(sent)
        return cls(mentions=mentions, snapshots=store.snapshots_of(ids), threads=threads)

    def thread_of(self, alert) -> tuple | None:
        mention = self.mentions.get(alert.mention_id)
        return None if mention is None else _thread_key(alert.recipient, alert.mention_id, mention.story_id)

    def earlier_alerts(self, alert) -> list | None:
        """``store.earlier_alerts(alert)`` from what the round read and sent; None for an alert it did not read."""
        key = self.thread_of(alert)
        if key is None:
            return None
        return sorted((a for a in self.threads.get(key, ()) if a.id < alert.id), key=lambda a: a.id)

    def sent(self, alert, *, subject: str, at: float) -> None:
        """The alert went out: the rest of its thread replies to it, as ``mark_sent`` recorded it."""
        key = self.thread_of(alert)
        if key is not None:
            self.threads.setdefault(key, []).append(replace(alert, status="sent", sent_at=at, subject=subject,
                                                            attempts=alert.attempts + 1, last_error=None))


class _Ahead:
    """Renders a round's emails on a thread of its own, in order, while the round's thread waits on the SMTP
    server for the email before (waiting on a socket lets the other thread run): the emails go out as fast
    as the server answers instead of after each one's rendering. Sending and recording stay on the round's
    thread, one email at a time, so what a crash can cost is unchanged.

    An email replies in its thread (``Round.earlier_alerts``), so one whose thread has an earlier alert in
    the same round is rendered only once that alert's outcome is recorded: it then replies to that email,
    as it did when each email was rendered after the one before had gone."""

    _DONE = object()

    def __init__(self, store: Store, config: Config, due: list, round_: Round, now: float, *, depth: int = 8):
        self._store, self._config, self._due, self._round, self._now = store, config, due, round_, now
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._changed = threading.Condition()
        self._recorded: set[int] = set()
        self._stopped = False
        # The alert before each one in its thread in this round.
        last: dict[tuple, int] = {}
        self._waits_for: dict[int, int] = {}
        for alert in due:
            key = round_.thread_of(alert) or _thread_key(alert.recipient, alert.mention_id, None)
            if key in last:
                self._waits_for[alert.id] = last[key]
            last[key] = alert.id
        self._thread = threading.Thread(target=self._render_all, name="alert-render", daemon=True)

    def __enter__(self) -> "_Ahead":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify_all()
        while self._thread.is_alive():  # a renderer blocked on a full queue gets its place and sees the stop
            try:
                self._queue.get(timeout=0.05)
            except queue.Empty:
                pass
        self._thread.join()

    def __iter__(self):
        """(alert, outcome) in order: outcome is (message, subject), a ``float`` (held until then by quiet
        hours) or the exception rendering raised."""
        while (item := self._queue.get()) is not self._DONE:
            yield item

    def recorded(self, alert) -> None:
        """The alert's outcome is in the store: the next email of its thread may read it."""
        with self._changed:
            self._recorded.add(alert.id)
            self._changed.notify_all()

    def _render_all(self) -> None:
        try:
            for alert in self._due:
                before = self._waits_for.get(alert.id)
                with self._changed:
                    while before is not None and before not in self._recorded and not self._stopped:
                        self._changed.wait()
                    if self._stopped:
                        return
                self._put((alert, self._render(alert)))
        finally:
            self._put(self._DONE)

    def _render(self, alert):
        # Everything about one alert: whatever fails costs that alert a retry, never the round.
        try:
            if alert.priority != "P1":
                wake = quiet_until(_responder(self._config, alert.recipient), self._now)
                if wake is not None:
                    return wake
            return render_alert(self._store, alert, self._config, round_=self._round)
        except Exception as err:
            return err

    def _put(self, item) -> None:
        while not self._stopped:
            try:
                self._queue.put(item, timeout=0.05)
                return
            except queue.Full:
                pass


def _deliver_due(store: Store, transport: Transport, config: Config, now: float, claims: Claims) -> Delivery:
    due, sent = _send_storms(store, transport, config, claims.take(store.due_alerts(now)), now, claims)
    connection_error = None
    round_ = Round.read(store, due)
    with _Ahead(store, config, due, round_, now) as rendered:
        for alert, outcome in rendered:
            # Everything about one alert is inside the try: whatever fails costs that alert a retry, never the round.
            try:
                if isinstance(outcome, Exception):
                    raise outcome
                if isinstance(outcome, float):
                    store.postpone(alert.id, outcome)
                    rendered.recorded(alert)
                    continue
                msg, subject = outcome
                transport.send(msg)
            except Exception as err:  # kept queued whatever went wrong; the log says what
                retry = None if _permanent(err) else _retry_at(config, alert, now)
                store.mark_failed(alert.id, f"{type(err).__name__}: {err}", retry_at=retry)
                rendered.recorded(alert)
                log.warning("alert %s to %s not delivered via %s (attempt %d): %s: %s", alert.id, alert.recipient,
                            transport.description, alert.attempts + 1, type(err).__name__, err)
                if _server_unusable(err):
                    connection_error = f"{type(err).__name__}: {err}"
                    break
                continue
            sent_at = time.time()
            store.mark_sent(alert.id, sent_at, subject=subject)
            round_.sent(alert, subject=subject, at=sent_at)
            rendered.recorded(alert)
            claims.done([alert.id])
            sent += 1
            log.info("alert %s (%s, mention %s) sent to %s", alert.id, alert.priority, alert.mention_id,
                     alert.recipient)
    return Delivery(sent, store.pending_count(), connection_error)


def digest_due(config: Config, recipient: str, alerts, now: float) -> float:
    """When the digest of these pending alerts may go: its oldest has waited ``digest_minutes``, and not in
    the recipient's quiet hours."""
    due = min(a.created_at for a in alerts) + config.email.digest_minutes * 60
    return max(due, quiet_until(_responder(config, recipient), max(now, due)) or due)


def deliver_digests(store: Store, transport: Transport, config: Config, *, now: float | None = None,
                    claims: Claims | None = None) -> int:
    """One email per responder with the lower-priority alerts gathered over ``digest_minutes``."""
    now = time.time() if now is None else now
    claims = claims or OwnAlerts()
    try:
        by_recipient: dict[str, list] = {}
        for alert in claims.take(store.pending_digest_alerts()):
            by_recipient.setdefault(alert.recipient, []).append(alert)
        with transport.session():
            return _deliver_digests(store, transport, config, by_recipient, now, claims)
    finally:
        claims.finish()


def _deliver_digests(store: Store, transport: Transport, config: Config, by_recipient: dict[str, list],
                     now: float, claims: Claims) -> int:
    sent = 0
    for recipient, alerts in by_recipient.items():
        # Everything about one responder's digest is inside the try: a failure costs that digest, never the round.
        try:
            if digest_due(config, recipient, alerts, now) > now:
                continue
            batch = alerts[:DIGEST_MAX_ITEMS]
            zone = _zone(config, recipient)
            items = [alert_context(store, a, store.mention(a.mention_id), zone=zone) for a in batch]
            text, html = render("digest", {"items": items, "count": len(batch), "more": len(alerts) - len(batch),
                                           "intro": f"{len(batch)} lower-priority mentions since the last digest"})
            brands = sorted({i["brand"] for i in items})
            msg = build_message(sender=config.email.from_, recipient=recipient,
                                subject=f"Digest: {len(batch)} lower-priority mentions of {', '.join(brands)}",
                                text=text, html=html, message_id=_batch_message_id("digest", recipient, batch),
                                date=now)
            transport.send(msg)
        except Exception as err:
            log.warning("digest to %s not delivered via %s: %s: %s", recipient, transport.description,
                        type(err).__name__, err)
            if _server_unusable(err):
                break
            continue
        store.mark_sent([a.id for a in batch], time.time())
        claims.done([a.id for a in batch])
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
        if alert.digest:
            reason = "digest"
        elif alert.last_error:
            reason = "failing"
        # Postponed (the one thing that postpones an alert that has not failed), or not tried yet and due
        # inside the quiet hours, where the next round will postpone it.
        elif alert.next_attempt_at > now or (alert.priority != "P1" and quiet_until(
                _responder(config, alert.recipient), now)):
            reason = "quiet hours"
        else:
            reason = "queued"
        groups.setdefault((reason, alert.recipient), []).append(alert)
    found = []
    for (reason, recipient), alerts in groups.items():
        if reason == "digest":
            until = digest_due(config, recipient, alerts, now)
        elif reason == "quiet hours":
            until = max([a.next_attempt_at for a in alerts] + [quiet_until(_responder(config, recipient), now) or 0])
        elif reason == "failing":
            until = min(a.next_attempt_at for a in alerts)
        else:
            until = None
        last_error = max(alerts, key=lambda a: a.attempts).last_error
        found.append(Waiting(reason, recipient, len(alerts), until, last_error))
    return found


def send_test_email(transport: Transport, config: Config, *, to: str) -> str:
    """A sample alert through the configured transport; returns its Message-ID."""
    now = datetime.now(timezone.utc)
    context = {
        "alert_id": 0, "mention_id": 0, "priority": "P1", "about": "complaint", "what": "complaint",
        "complaint": "0.95 (complaint model, 0-1)", "brand": config.brands[0].name, "urgency": "80",
        "virality": "40", "quote": f"This is a test alert from complaint-monitor about {config.brands[0].name}.",
        "title": "complaint-monitor test email", "text": "If you can read this, alert emails reach you.",
        "author": "complaint-monitor", "place": "test-email", "source": "test", "url": "https://example.invalid/",
        "posted": f"{now:%Y-%m-%d %H:%M} UTC", "compound": "+0.00", "min_sentence": "+0.00",
        "negative_share": "0%", "growth_line": "none (test)", "reasons": ["test-email: no rules ran"],
        "elsewhere": [], "changes": [], "since": "", "first_text": "", "change_heading": "",
        "headline": "complaint-monitor test email: alert emails reach you", "thread_title": "", "thread_url": "",
    }
    text, html = render("alert", context)
    message_id = f"<test-{int(now.timestamp())}@complaint-monitor>"
    transport.send(build_message(sender=config.email.from_, recipient=to, subject="[TEST] complaint-monitor test alert",
                                 text=text, html=html, message_id=message_id))
    return message_id

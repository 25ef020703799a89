"""Is the daemon doing its job? Poll records, repeated failures, and the status report.

A failure that repeats (a feed down for a day, bad Reddit credentials, SMTP
refusing) becomes one email to the operator when it has lasted
``health.notify_after_minutes``, and one more when it recovers; never one
per poll.
"""

from __future__ import annotations

import html
import logging
import time
from datetime import datetime, timezone
from typing import Any

from .alert import Waiting
from .logs import Redactor
from .mail import FolderTransport, Transport, build_message
from .store import SourceHealth, Store

log = logging.getLogger("complaint_monitor.health")


def subject_names(sources: dict[str, dict[str, Any]]) -> dict[str, str]:
    """What the operator calls a failing thing: a feed by its configured name, not its URL."""
    names = {}
    for source, section in sources.items():
        for feed in (section or {}).get("feeds") or []:
            if isinstance(feed, dict) and feed.get("url") and feed.get("name"):
                names[f"{source} feed:{feed['url']}"] = f"feed \u201c{feed['name']}\u201d"
    return names


class Health:
    def __init__(self, *, store: Store, transport: Transport, fallback: FolderTransport, sender: str,
                 operator: str | None, notify_after: float, redact: Redactor | None = None,
                 names: dict[str, str] | None = None):
        self.store = store
        self.names = dict(names or {})  # subject -> what the operator calls it (subject_names)
        self.transport = transport
        self.fallback = fallback  # where operator emails go when SMTP itself is what fails
        self.sender = sender
        self.operator = operator
        self.notify_after = notify_after
        # Error text is stored, printed by status and emailed: it is redacted first.
        self.redact = redact or Redactor()
        # Subjects arrive redacted (a feed URL may carry a token): known by that form too.
        self.names.update({self.redact(k): v for k, v in list(self.names.items())})

    def failed(self, subject: str, error: str, *, now: float | None = None) -> None:
        now = time.time() if now is None else now
        subject, error = self.redact(subject), self.redact(error)  # a feed URL may carry a token
        row = self.store.record_failure(subject, error, now)
        if self.operator and not row.notified and now - row.since >= self.notify_after:
            name = self._name(subject)
            # Short first line (a phone shows little of subject and preview); the details below it.
            self._tell_operator(
                subject, f"{name} failing since {_ts(row.since, short=True)}",
                f"{name} has failed {row.count} times since {_ts(row.since, short=True)}.\n\n"
                f"What: {subject}\nLast error ({_ts(row.last_at)}):\n{error}\n\n"
                "You get one more email when it works again, none in between.\n", smtp_down=subject == "smtp")
            self.store.mark_failure_notified(subject)

    def succeeded_all(self, subjects: list[str]) -> None:
        """``succeeded`` for many subjects (a poll's feeds) at the cost of one read: only a subject with a
        recorded failure has anything to clear, so a poll where nothing failed writes nothing."""
        if not subjects:
            return
        failing = {row.subject for row in self.store.failures()}
        if failing:
            for subject in subjects:
                if self.redact(subject) in failing:
                    self.succeeded(subject)

    def succeeded(self, subject: str) -> None:
        row = self.store.clear_failure(self.redact(subject))
        if row is not None and row.notified and self.operator:
            name = self._name(subject)
            self._tell_operator(subject, f"{name} works again",
                                f"{name} works again after {row.count} failures since"
                                f" {_ts(row.since, short=True)}.\n\nWhat: {self.redact(subject)}\n",
                                smtp_down=False)

    def _name(self, subject: str) -> str:
        return self.names.get(self.redact(subject)) or self.redact(subject)

    def _tell_operator(self, subject: str, title: str, body: str, *, smtp_down: bool) -> None:
        key = "".join(c if c.isalnum() else "-" for c in subject)[:60]
        # Wrapped, not <pre>: a long URL or error must not run off a phone's screen.
        msg = build_message(sender=self.sender, recipient=self.operator, subject=f"complaint-monitor: {title}",
                            text=body, html=f'<div style="white-space: pre-wrap; overflow-wrap: anywhere;">'
                                            f"{html.escape(body)}</div>",
                            message_id=f"<health-{key}-{int(time.time())}@complaint-monitor>")
        # While SMTP is what fails, the note goes to the outbox folder; once it works, by email.
        transport = self.fallback if smtp_down else self.transport
        try:
            transport.send(msg)
        except Exception as err:
            log.warning("operator email about %s not sent via %s: %s; written to %s", subject,
                        transport.description, err, self.fallback.description)
            self.fallback.send(msg)


def _ts(value: float | None, *, short: bool = False) -> str:
    if not value:
        return "never"
    return f"{datetime.fromtimestamp(value, timezone.utc):%b %d %H:%M UTC}" if short else \
        f"{datetime.fromtimestamp(value, timezone.utc):%Y-%m-%d %H:%M:%S} UTC"


def _next_run(due: float, now: float) -> str:
    # Well past due means no daemon is polling: say so rather than show a time in the past.
    late = now - due
    return _ts(due) + (f" (overdue by {late / 60:.0f} min: is the daemon running?)" if late > 300 else "")


def _when(iso: str | None) -> str | None:
    """A stored ISO time in the same form as every other time status prints."""
    if not iso:
        return None
    try:
        return _ts(datetime.fromisoformat(iso).timestamp())
    except ValueError:
        return iso


def waiting_lines(groups: list[Waiting], *, now: float | None = None) -> list[str]:
    """Why queued alerts have not gone out, one line per recipient and reason: held on purpose or failing."""
    now = time.time() if now is None else now
    lines = []
    for w in groups:
        alerts = f"{w.count} alert{'s' if w.count != 1 else ''}"
        if w.reason == "digest":
            lines.append(f"held: {alerts} for the digest to {w.recipient}, "
                         + ("due now" if w.until <= now else f"until {_ts(w.until)}"))
        elif w.reason == "quiet hours":
            lines.append(f"held: {alerts} to {w.recipient} through quiet hours, until {_ts(w.until)}")
        elif w.reason == "failing":
            lines.append(f"failing: {alerts} to {w.recipient}, next try {_ts(w.until)}; last error: {w.last_error}")
        else:
            lines.append(f"queued: {alerts} to {w.recipient}, not tried yet")
    return lines


def status(store: Store, intervals: dict[str, float], *, now: float | None = None,
           waiting: list[Waiting] = ()) -> dict[str, Any]:
    """Everything ``complaint-monitor status`` prints, as data; ``waiting``: why pending alerts wait."""
    now = time.time() if now is None else now
    hour_ago = now - 3600
    sources = {}
    for name, interval in intervals.items():
        health = store.source_health(name, since=hour_ago)
        last, last_err = health.last, health.last_error
        sources[name] = {
            "last_poll": _ts(last.started_at) if last else "never",
            "last_success": _ts(health.last_success),
            "last_error": f"{_ts(last_err.finished_at)}: {'; '.join(last_err.errors)}" if last_err else "none",
            "items_last_hour": health.items_since, "mentions_last_hour": health.mentions_since,
            # The interval the daemon ran the source at (an RSS source runs at its most frequent feed's).
            "next_run": _next_run(last.started_at + (last.interval or interval), now) if last else "at start",
            "feeds": _feeds(store, name, health),
            "stream": _stream(store, name),
        }
    oldest = store.oldest_pending()
    return {
        "sources": sources,
        "outbox": {"pending": store.pending_count(), "oldest_pending": _ts(oldest), "failed": store.failed_count(),
                   "waiting": [{**w._asdict(), "until": _ts(w.until) if w.until else None,
                                "line": line} for w, line in zip(waiting, waiting_lines(waiting, now=now))]},
        "failing": [{"subject": f.subject, "since": _ts(f.since), "count": f.count,
                     "last_error": f.last_error} for f in store.failures()],
    }


def _feeds(store: Store, name: str, health: SourceHealth) -> dict[str, dict[str, Any]]:
    """Per feed: what its cursor says, its ongoing failure, its mentions in the last hour."""
    feeds: dict[str, dict[str, Any]] = {}
    for key, value in store.source_state(name).items():
        if key.startswith("feed:") and isinstance(value, dict):
            feeds[key[5:]] = {"last_success": _when(value.get("last_success")),
                              "next_poll": _when(value.get("next_poll")),
                              "disabled": value.get("disabled_reason") if value.get("disabled") else None,
                              "moved_to": value.get("current_url"), "problem": value.get("last_problem")}
            if value.get("failures") or value.get("disabled"):  # the feed's own record; a failure row below wins
                feeds[key[5:]]["last_error"] = (f"{_when(value.get('last_error_at'))}: {value.get('last_error')}"
                                                f" ({value.get('failures') or 1} in a row)")
    # A feed that never worked has no cursor yet; its failure row still names it.
    for row in store.failures(prefix=f"{name} feed:"):
        feed = feeds.setdefault(row.subject[len(name) + 6:], {"last_success": None})
        feed["last_error"] = f"{_ts(row.last_at)}: {row.last_error} (failing since {_ts(row.since)})"
    for url, count in health.mentions_by_feed.items():
        feeds.setdefault(url, {"last_success": None})["mentions_last_hour"] = count
    return feeds


def _stream(store: Store, name: str) -> dict[str, dict[str, Any]]:
    """Per site-wide listing (``stream:comments``, ``stream:new`` in the state): its rate, how far behind
    real time it read, and the ids of gaps not yet read back."""
    streams = {}
    for key, value in store.source_state(name).items():
        if not key.startswith("stream:") or not isinstance(value, dict):
            continue
        gaps = value.get("gaps") or []
        read_at, newest = value.get("read_at"), value.get("newest_created")
        streams[key[7:]] = {
            "rate": round(value.get("rate") or 0.0, 1), "last_read": _ts(read_at),
            "lag_seconds": round(read_at - newest, 1) if read_at and newest else None,
            "unfilled_ids": int(sum(gap[1] - gap[0] + 1 for gap in gaps)),
            "unfilled_since": _ts(min(gap[2] for gap in gaps)) if gaps else None,
            **(value.get("counts") or {}),
        }
    return streams


def format_status(report: dict[str, Any]) -> str:
    lines = []
    for name, s in report["sources"].items():
        lines.append(f"source {name}")
        for key in ("last_poll", "last_success", "last_error", "items_last_hour", "mentions_last_hour", "next_run"):
            lines.append(f"  {key.replace('_', ' ')}: {s[key]}")
        for url, feed in s["feeds"].items():
            state = f"disabled: {feed['disabled']}" if feed.get("disabled") else (
                "failing" if feed.get("last_error") else "ok")
            moved = f"; moved to {feed['moved_to']}" if feed.get("moved_to") else ""
            problem = f"; problem: {feed['problem']}" if feed.get("problem") else ""
            lines.append(f"  feed {url}: {state}; last success {feed.get('last_success') or 'never'};"
                         f" last error {feed.get('last_error') or 'none'};"
                         f" mentions last hour {feed.get('mentions_last_hour', 0)};"
                         f" {'looked at again' if feed.get('disabled') else 'next poll'}"
                         f" {feed.get('next_poll') or 'at the next run'}"
                         f"{moved}{problem}")
        for listing, st in s.get("stream", {}).items():
            gap = (f"{st['unfilled_ids']} ids not read back yet (the oldest gap ends {st['unfilled_since']})"
                   if st["unfilled_ids"] else "none")
            lines.append(f"  stream {listing}: {st['rate']} items/s; lag {st['lag_seconds']} s at the last read"
                         f" ({st['last_read']}); unfilled gap: {gap}; read {st.get('read', 0)},"
                         f" read back {st.get('filled', 0)}, invisible {st.get('invisible', 0)},"
                         f" given up (older than backfill_hours) {st.get('dropped', 0)}")
    o = report["outbox"]
    lines.append(f"outbox: {o['pending']} pending (oldest {o['oldest_pending']}), {o['failed']} failed")
    lines.extend(f"  {w['line']}" for w in o.get("waiting", ()))
    for f in report["failing"]:
        lines.append(f"failing: {f['subject']} since {f['since']} ({f['count']} times): {f['last_error']}")
    return "\n".join(lines)

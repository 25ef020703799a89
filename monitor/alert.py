"""Decide who hears about a mention, and deliver the queued alerts.

Alerts are queued in the store together with the mention (see
``Pipeline``); ``deliver_pending`` sends what is due, one email per alert
row, and records the outcome. A failure leaves the alert queued with a later
retry time, so an SMTP outage delays alerts but never loses them.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from .config import Config
from .mail import Transport, build_message, header_safe, render, trim
from .store import Store, from_epoch

log = logging.getLogger("complaint_monitor.alert")

RETRY_BASE_SECONDS = 30
RETRY_MAX_SECONDS = 1800


def recipients(config: Config, *, brand: str | None, priority: str, suppressed: bool,
               notify: list[str] = ()) -> list[str]:
    if suppressed:
        return []
    found = [r.email for r in config.responders if r.wants(brand, priority)]
    found.extend(e for e in notify if e not in found)
    return found


def subject_for(row) -> str:
    words = row["title"] or row["quote"] or row["text"]
    words = header_safe(words, limit=90)
    return f"[{row['priority']}] {row['brand']}: {words}"


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:+.{digits}f}"


def alert_context(store: Store, alert, mention) -> dict:
    reasons = []
    for r in json.loads(mention["reasons"] or "[]"):
        if r["kind"] == "rule":
            effects = [f"{k} {r[k]:+g}" for k in ("urgency", "virality") if r[k]]
            reasons.append(f"rule {r['name']}: {', '.join(effects) or 'no points'}"
                           + (f" ({r['detail']})" if r["detail"] else ""))
        elif r["kind"] == "signal":
            reasons.append(f"signal {r['name']}: {r['detail']}")
    snapshots = store.query("SELECT taken_at, score, comments FROM snapshots WHERE mention_id = ? ORDER BY taken_at",
                            (mention["id"],))
    if snapshots:
        growth_line = "; ".join(
            f"{from_epoch(s['taken_at']):%H:%M} UTC: score {s['score'] if s['score'] is not None else '?'},"
            f" {s['comments'] if s['comments'] is not None else '?'} comments" for s in snapshots[-6:])
    else:
        growth_line = "no engagement numbers from this source"
    posted = from_epoch(mention["created_at"])
    return {
        "alert_id": alert["id"], "mention_id": mention["id"], "priority": mention["priority"],
        "brand": mention["brand"], "urgency": f"{mention['urgency']:.0f}", "virality": f"{mention['virality']:.0f}",
        "quote": trim(mention["quote"] or mention["text"], 400), "title": header_safe(mention["title"], 300),
        "text": trim(mention["text"]), "author": mention["author"] or "unknown author",
        "place": mention["place"] or mention["source"], "source": mention["source"], "url": mention["url"],
        "posted": f"{posted:%Y-%m-%d %H:%M} UTC",
        "compound": _fmt(mention["compound"]), "min_sentence": _fmt(mention["min_sentence"]),
        "negative_share": f"{(mention['negative_share'] or 0):.0%}",
        "growth_line": growth_line, "reasons": reasons,
    }


def deliver_pending(store: Store, transport: Transport, config: Config, *, now: float | None = None) -> tuple[int, int]:
    """Send every due alert once; returns (sent, still pending)."""
    now = time.time() if now is None else now
    sent = 0
    for alert in store.due_alerts(now):
        mention = store.mention(alert["mention_id"])
        try:
            text, html = render("alert", alert_context(store, alert, mention))
            msg = build_message(sender=config.email.from_, recipient=alert["recipient"],
                                subject=subject_for(mention), text=text, html=html,
                                message_id=alert["message_id"], date=alert["created_at"])
            transport.send(msg)
        except Exception as err:  # any transport or rendering failure: keep the alert queued
            attempts = alert["attempts"] + 1
            delay = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** (attempts - 1)) * random.uniform(0.8, 1.2)
            give_up = now - alert["created_at"] > config.email.max_retry_hours * 3600
            store.mark_failed(alert["id"], f"{type(err).__name__}: {err}", retry_at=None if give_up else now + delay)
            log.warning("alert %s to %s not delivered via %s (attempt %d): %s: %s", alert["id"], alert["recipient"],
                        transport.description, attempts, type(err).__name__, err)
            continue
        store.mark_sent(alert["id"], time.time())
        sent += 1
        log.info("alert %s (%s, mention %s) sent to %s", alert["id"], mention["priority"], mention["id"],
                 alert["recipient"])
    return sent, store.pending_count()


def _now() -> datetime:
    return datetime.now(timezone.utc)

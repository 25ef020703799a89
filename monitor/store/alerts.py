"""The alert outbox: queued, sent once, threaded per recipient and story."""

from __future__ import annotations

from sqlalchemy import Integer, bindparam, case, cast, func, or_, select, union

from .records import AlertRecord, ThreadSummary
from .schema import alerts, mentions

a = alerts.c
_DUE = (select(alerts).where(a.status == "pending", a.digest == 0, a.next_attempt_at <= bindparam("now"))
        .order_by(a.priority, a.id).limit(bindparam("limit")))
# Highest priority first ('P3' < 'P4'): the top of a digest is what most deserves a look.
_DIGEST = select(alerts).where(a.status == "pending", a.digest == 1).order_by(a.recipient, a.priority, a.id)
_PENDING_COUNT = select(func.count()).select_from(alerts).where(a.status == "pending")
_PENDING = select(alerts).where(a.status == "pending").order_by(a.recipient, a.priority, a.id)
_MARK_SENT = alerts.update().where(a.id == bindparam("alert_id")).values(
    status="sent", sent_at=bindparam("now"), attempts=a.attempts + 1, last_error=None,
    subject=func.coalesce(bindparam("subject"), a.subject))


# The mention and, when it belongs to a story, every mention of that story: one incident, one thread.
_STORY = select(mentions.c.story_id).where(mentions.c.id == bindparam("mention_id")).scalar_subquery()
# IN (the mention UNION its story's mentions), not "= mention OR IN (...)": SQLite looks each one up in the
# (recipient, mention_id) index instead of reading every alert of the recipient.
_THREAD = (a.recipient == bindparam("recipient")) & a.mention_id.in_(union(
    select(cast(bindparam("mention_id"), Integer)), select(mentions.c.id).where(mentions.c.story_id == _STORY)))
_THREAD_ALERTS = select(alerts).where(_THREAD).order_by(a.id)
_LIVE = a.status != "superseded"
_THREAD_AGGREGATES = select(func.min(a.priority), func.max(a.created_at),
                            func.coalesce(func.sum(case((a.status == "pending", 1), else_=0)), 0)).where(_THREAD, _LIVE)
_OWN_ALERTS = select(alerts).where(a.recipient == bindparam("recipient"), a.mention_id == bindparam("mention_id"),
                                   _LIVE).order_by(a.id)
_WAITING_FOLLOW_UPS = select(a.id).where(_THREAD, a.status == "pending", a.kind == "follow_up",
                                         a.id != bindparam("besides"))
_EARLIER_ALERTS = select(alerts).where(_THREAD, a.status == "sent", a.id < bindparam("alert_id")).order_by(a.id)
# A delivery round's threads at once: the sent alerts to its recipients about its mentions or their stories,
# each with its mention's story.
_SENT_IN_THREADS = (select(alerts, mentions.c.story_id.label("thread_story_id"))
                    .join(mentions, mentions.c.id == a.mention_id)
                    .where(a.status == "sent", a.recipient.in_(bindparam("recipients", expanding=True)),
                           or_(a.mention_id.in_(bindparam("mention_ids", expanding=True)),
                               mentions.c.story_id.in_(bindparam("story_ids", expanding=True))))
                    .order_by(a.id))
_ALERT_COLUMNS = ("mention_id", "recipient", "priority", "next_attempt_at", "message_id", "created_at", "urgency",
                  "virality", "score", "comments", "digest", "kind", "held_until", "about")
_SET_MESSAGE_ID = alerts.update().where(a.id == bindparam("alert_id")).values(message_id=bindparam("message_id"))
_SUPERSEDE_LOWER = alerts.update().where(
    a.mention_id == bindparam("of_mention"), a.recipient == bindparam("to"), a.status == "pending",
    a.priority > bindparam("below")).values(status="superseded")


def _enqueue(insert):
    return insert(alerts).values({c: bindparam(c) for c in _ALERT_COLUMNS}).on_conflict_do_nothing().returning(a.id)


def _alerts(rows) -> list[AlertRecord]:
    return AlertRecord.from_rows(rows)


class AlertStore:
    def enqueue_alert(self, *, mention_id: int, recipient: str, priority: str, now: float, urgency: float = 0,
                      virality: float = 0, score: int | None = None, comments: int | None = None,
                      digest: bool = False, kind: str = "alert", not_before: float | None = None,
                      about: str = "complaint", supersede_lower: bool = True) -> int | None:
        """``kind`` "alert" is the first at its level (once per mention, recipient and level: a unique index
        on first alerts); "follow_up" is news at a level already alerted, sent from ``not_before`` on.
        ``about``: a complaint, or a mention that spreads without being one ("viral"). ``supersede_lower``:
        False when the mention has no alert yet (stored in this transaction), saving a statement."""
        with self.transaction() as db:
            alert_id = db.execute(self._prepared(_enqueue), dict(
                mention_id=mention_id, recipient=recipient, priority=priority,
                next_attempt_at=max(now, not_before or now), message_id="", created_at=now, urgency=urgency,
                virality=virality, score=score, comments=comments, digest=int(digest), kind=kind,
                held_until=not_before if not_before and not_before > now else None, about=about)).scalar()
            if alert_id is None:
                return None
            # Fixed before the first attempt, so a resend after a crash carries
            # the same Message-ID and the recipient's mail client folds it.
            db.execute(_SET_MESSAGE_ID, {"alert_id": alert_id,
                                         "message_id": f"<alert-{alert_id}-m{mention_id}@complaint-monitor>"})
            # A lower level still waiting (SMTP down, a restart) would arrive beside this one as a
            # second, unthreaded email about the same story with old news: this one replaces it.
            if supersede_lower:
                db.execute(_SUPERSEDE_LOWER, {"of_mention": mention_id, "to": recipient, "below": priority})
            return alert_id

    def supersede(self, alert_ids: list[int]) -> None:
        """Pending alerts replaced by a later one that tells the same news."""
        if alert_ids:
            with self.transaction() as db:
                db.execute(alerts.update().where(a.id.in_(alert_ids), a.status == "pending")
                           .values(status="superseded"))

    def due_alerts(self, now: float, limit: int = 200) -> list[AlertRecord]:
        return _alerts(self._rows(_DUE, {"now": now, "limit": limit}))

    def pending_digest_alerts(self) -> list[AlertRecord]:
        return _alerts(self._rows(_DIGEST))

    def earlier_alerts(self, alert: AlertRecord) -> list[AlertRecord]:
        """Alerts already sent to the same recipient about the same mention or its story: the thread to reply in."""
        return _alerts(self._rows(_EARLIER_ALERTS, {"mention_id": alert.mention_id, "recipient": alert.recipient,
                                                    "alert_id": alert.id}))

    def sent_in_threads(self, *, recipients, mention_ids, story_ids) -> list[tuple[AlertRecord, int | None]]:
        """The sent alerts to any of ``recipients`` about any of ``mention_ids`` or a mention of ``story_ids``,
        oldest first, each with its mention's story: ``earlier_alerts`` for a delivery round in one query."""
        if not recipients or not (mention_ids or story_ids):
            return []
        rows = self._rows(_SENT_IN_THREADS, {"recipients": sorted(set(recipients)),
                                             "mention_ids": sorted(set(mention_ids)), "story_ids": sorted(set(story_ids))})
        return list(zip(_alerts(rows), (r.thread_story_id for r in rows)))

    def thread_alerts(self, mention_id: int, recipient: str) -> list[AlertRecord]:
        """Every alert (any status) queued for the recipient about the mention or its story, oldest first."""
        return _alerts(self._rows(_THREAD_ALERTS, {"mention_id": mention_id, "recipient": recipient}))

    def thread_summary(self, mention_id: int, recipient: str) -> ThreadSummary:
        """``thread_alerts`` as ``ThreadSummary``: the mention's own alerts, and of the thread only aggregates."""
        params = {"mention_id": mention_id, "recipient": recipient}
        best, latest, pending = self._rows(_THREAD_AGGREGATES, params)[0]
        return ThreadSummary(own=self.own_alerts(mention_id, recipient), best=best, latest=latest,
                             pending=int(pending))

    def own_alerts(self, mention_id: int, recipient: str) -> tuple[AlertRecord, ...]:
        """The mention's own alerts to the recipient (superseded ones left out), oldest first."""
        return tuple(_alerts(self._rows(_OWN_ALERTS, {"mention_id": mention_id, "recipient": recipient})))

    def supersede_follow_ups(self, mention_id: int, recipient: str, *, besides: int) -> int:
        """The thread's follow-ups still waiting, but ``besides``: an escalation queued since tells all the news.
        How many there were."""
        waiting = [row[0] for row in self._rows(_WAITING_FOLLOW_UPS, {"mention_id": mention_id, "recipient": recipient,
                                                                      "besides": besides})]
        self.supersede(waiting)
        return len(waiting)

    def sent_priorities(self, mention_id: int) -> list[str]:
        """The levels the mention was alerted at (sent), highest first."""
        return [r[0] for r in self._rows(select(a.priority).distinct()
                                         .where(a.mention_id == mention_id, a.status == "sent").order_by(a.priority))]

    def postpone(self, alert_id: int, until: float) -> None:
        """Held on purpose (quiet hours): analysts tell that wait from a delay by ``held_until``."""
        with self.transaction() as db:
            db.execute(alerts.update().where(a.id == alert_id).values(next_attempt_at=until, held_until=until))

    def mark_sent(self, alert_ids: int | list[int], now: float, *, subject: str | None = None) -> None:
        """``subject``: the subject the email carried; the rest of its thread keeps its words."""
        ids = [alert_ids] if isinstance(alert_ids, int) else alert_ids
        if ids:
            with self.transaction() as db:
                db.execute(_MARK_SENT, [{"alert_id": i, "now": now, "subject": subject} for i in ids])

    def mark_failed(self, alert_id: int, error: str, *, retry_at: float | None) -> None:
        tried = {"attempts": a.attempts + 1, "last_error": error}
        with self.transaction() as db:
            if retry_at is None:
                db.execute(alerts.update().where(a.id == alert_id).values(status="failed", **tried))
            else:
                db.execute(alerts.update().where(a.id == alert_id).values(next_attempt_at=retry_at, **tried))

    def pending_alerts(self) -> list[AlertRecord]:
        return _alerts(self._rows(_PENDING))

    def pending_count(self) -> int:
        return self._value(_PENDING_COUNT)

    def failed_count(self) -> int:
        return self._value(select(func.count()).select_from(alerts).where(a.status == "failed"))

    def oldest_pending(self) -> float | None:
        return self._value(select(func.min(a.created_at)).where(a.status == "pending"))

"""The alert outbox: queued, sent once, threaded per recipient and story."""

from __future__ import annotations

from .records import AlertRecord


def _alerts(rows) -> list[AlertRecord]:
    return [AlertRecord.from_row(r) for r in rows]


class AlertStore:
    def enqueue_alert(self, *, mention_id: int, recipient: str, priority: str, now: float, urgency: float = 0,
                      virality: float = 0, score: int | None = None, comments: int | None = None,
                      digest: bool = False, kind: str = "alert", not_before: float | None = None,
                      about: str = "complaint") -> int | None:
        """``kind`` "alert" is the first at its level (once per mention, recipient and level);
        "follow_up" is news at a level already alerted, sent from ``not_before`` on. ``about``: a complaint,
        or a mention that spreads without being one ("viral")."""
        with self.transaction() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO alerts (mention_id, recipient, priority, next_attempt_at, message_id,"
                " created_at, urgency, virality, score, comments, digest, kind, held_until, about)"
                " VALUES (?, ?, ?, ?, '', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (mention_id, recipient, priority, max(now, not_before or now), now, urgency, virality, score, comments,
                 int(digest), kind, not_before if not_before and not_before > now else None, about))
            if cur.rowcount == 0:
                return None
            alert_id = cur.lastrowid
            # Fixed before the first attempt, so a resend after a crash carries
            # the same Message-ID and the recipient's mail client folds it.
            db.execute("UPDATE alerts SET message_id = ? WHERE id = ?",
                       (f"<alert-{alert_id}-m{mention_id}@complaint-monitor>", alert_id))
            # A lower level still waiting (SMTP down, a restart) would arrive beside this one as a
            # second, unthreaded email about the same story with old news: this one replaces it.
            db.execute("UPDATE alerts SET status = 'superseded' WHERE mention_id = ? AND recipient = ?"
                       " AND status = 'pending' AND priority > ?", (mention_id, recipient, priority))
            return alert_id

    def supersede(self, alert_ids: list[int]) -> None:
        """Pending alerts replaced by a later one that tells the same news."""
        with self.transaction() as db:
            db.executemany("UPDATE alerts SET status = 'superseded' WHERE id = ? AND status = 'pending'",
                           [(i,) for i in alert_ids])

    def due_alerts(self, now: float, limit: int = 200) -> list[AlertRecord]:
        return _alerts(self._rows("SELECT * FROM alerts WHERE status = 'pending' AND digest = 0"
                                  " AND next_attempt_at <= ? ORDER BY priority, id LIMIT ?", (now, limit)))

    def pending_digest_alerts(self) -> list[AlertRecord]:
        # Highest priority first ('P3' < 'P4'): the top of a digest is what most deserves a look.
        return _alerts(self._rows("SELECT * FROM alerts WHERE status = 'pending' AND digest = 1"
                                  " ORDER BY recipient, priority, id"))

    # The mention and, when it belongs to a story, every mention of that story: one incident, one thread.
    _THREAD = ("recipient = ? AND mention_id IN (SELECT ? UNION SELECT id FROM mentions WHERE story_id ="
               " (SELECT story_id FROM mentions WHERE id = ?))")

    def earlier_alerts(self, alert: AlertRecord) -> list[AlertRecord]:
        """Alerts already sent to the same recipient about the same mention or its story: the thread to reply in."""
        return _alerts(self._rows(
            f"SELECT * FROM alerts WHERE {self._THREAD} AND status = 'sent' AND id < ? ORDER BY id",
            (alert.recipient, alert.mention_id, alert.mention_id, alert.id)))

    def thread_alerts(self, mention_id: int, recipient: str) -> list[AlertRecord]:
        """Every alert (any status) queued for the recipient about the mention or its story, oldest first."""
        return _alerts(self._rows(f"SELECT * FROM alerts WHERE {self._THREAD} ORDER BY id",
                                  (recipient, mention_id, mention_id)))

    def sent_priorities(self, mention_id: int) -> list[str]:
        """The levels the mention was alerted at (sent), highest first."""
        return [r[0] for r in self._rows("SELECT DISTINCT priority FROM alerts WHERE mention_id = ?"
                                         " AND status = 'sent' ORDER BY priority", (mention_id,))]

    def postpone(self, alert_id: int, until: float) -> None:
        """Held on purpose (quiet hours): analysts tell that wait from a delay by ``held_until``."""
        with self.transaction() as db:
            db.execute("UPDATE alerts SET next_attempt_at = ?, held_until = ? WHERE id = ?", (until, until, alert_id))

    def mark_sent(self, alert_ids: int | list[int], now: float, *, subject: str | None = None) -> None:
        """``subject``: the subject the email carried; the rest of its thread keeps its words."""
        ids = [alert_ids] if isinstance(alert_ids, int) else alert_ids
        with self.transaction() as db:
            db.executemany("UPDATE alerts SET status = 'sent', sent_at = ?, attempts = attempts + 1,"
                           " last_error = NULL, subject = coalesce(?, subject) WHERE id = ?",
                           [(now, subject, i) for i in ids])

    def mark_failed(self, alert_id: int, error: str, *, retry_at: float | None) -> None:
        with self.transaction() as db:
            if retry_at is None:
                db.execute("UPDATE alerts SET status = 'failed', attempts = attempts + 1, last_error = ?"
                           " WHERE id = ?", (error, alert_id))
            else:
                db.execute("UPDATE alerts SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?"
                           " WHERE id = ?", (error, retry_at, alert_id))

    def pending_alerts(self) -> list[AlertRecord]:
        return _alerts(self._rows("SELECT * FROM alerts WHERE status = 'pending' ORDER BY recipient, priority, id"))

    def pending_count(self) -> int:
        return self._value("SELECT count(*) FROM alerts WHERE status = 'pending'")

    def failed_count(self) -> int:
        return self._value("SELECT count(*) FROM alerts WHERE status = 'failed'")

    def oldest_pending(self) -> float | None:
        return self._value("SELECT min(created_at) FROM alerts WHERE status = 'pending'")

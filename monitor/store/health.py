"""The daemon's own health: one record per poll, failures that repeat, and pruning old records."""

from __future__ import annotations

import json

from .records import FailureRecord, PollRunRecord, SourceHealth


class HealthStore:
    def record_poll(self, *, source: str, started_at: float, finished_at: float, items: int, stored: int,
                    errors: list[str], interval: float | None = None) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO poll_runs (source, started_at, finished_at, items, stored, errors, interval)"
                       " VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (source, started_at, finished_at, items, stored, json.dumps(errors), interval))

    def last_success(self, source: str) -> float | None:
        """When the source's latest poll without errors finished."""
        return self._value("SELECT max(finished_at) FROM poll_runs WHERE source = ? AND errors = '[]'", (source,))

    def source_health(self, source: str, *, since: float) -> SourceHealth:
        last = self._rows("SELECT * FROM poll_runs WHERE source = ? ORDER BY started_at DESC LIMIT 1", (source,))
        last_error = self._rows("SELECT * FROM poll_runs WHERE source = ? AND errors != '[]'"
                                " ORDER BY started_at DESC LIMIT 1", (source,))
        by_feed = {url: count for url, count in self._rows(
            "SELECT json_extract(extra, '$.feed_url'), count(*) FROM mentions"
            " WHERE source = ? AND fetched_at >= ? GROUP BY 1", (source, since)) if url is not None}
        return SourceHealth(
            last=PollRunRecord.from_row(last[0]) if last else None, last_success=self.last_success(source),
            last_error=PollRunRecord.from_row(last_error[0]) if last_error else None,
            items_since=self._value("SELECT coalesce(sum(items), 0) FROM poll_runs WHERE source = ?"
                                    " AND started_at >= ?", (source, since)),
            mentions_since=self._value("SELECT count(*) FROM mentions WHERE source = ? AND fetched_at >= ?",
                                       (source, since)),
            mentions_by_feed=by_feed)

    def record_failure(self, subject: str, error: str, now: float) -> FailureRecord:
        with self.transaction() as db:
            db.execute("INSERT INTO failures (subject, since, last_at, count, last_error) VALUES (?, ?, ?, 1, ?)"
                       " ON CONFLICT (subject) DO UPDATE SET last_at = excluded.last_at, count = count + 1,"
                       " last_error = excluded.last_error", (subject, now, now, error))
            return FailureRecord.from_row(db.execute("SELECT * FROM failures WHERE subject = ?", (subject,)).fetchone())

    def clear_failure(self, subject: str) -> FailureRecord | None:
        with self.transaction() as db:
            row = db.execute("SELECT * FROM failures WHERE subject = ?", (subject,)).fetchone()
            db.execute("DELETE FROM failures WHERE subject = ?", (subject,))
            return None if row is None else FailureRecord.from_row(row)

    def mark_failure_notified(self, subject: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE failures SET notified = 1 WHERE subject = ?", (subject,))

    def failures(self, *, prefix: str | None = None) -> list[FailureRecord]:
        """Ongoing failures, oldest first; ``prefix``: only subjects starting so, in subject order."""
        if prefix is None:
            rows = self._rows("SELECT * FROM failures ORDER BY since")
        else:
            rows = self._rows("SELECT * FROM failures WHERE substr(subject, 1, ?) = ? ORDER BY subject",
                              (len(prefix), prefix))
        return [FailureRecord.from_row(r) for r in rows]

    def prune(self, *, snapshots_before: float, poll_runs_before: float) -> tuple[int, int]:
        """Drop old growth snapshots and poll records; mentions and alerts are kept for good."""
        with self.transaction() as db:
            snaps = db.execute("DELETE FROM snapshots WHERE taken_at < ?", (snapshots_before,)).rowcount
            runs = db.execute("DELETE FROM poll_runs WHERE started_at < ?", (poll_runs_before,)).rowcount
        return snaps, runs

"""The daemon's own health: one record per poll, failures that repeat, and pruning old records."""

from __future__ import annotations

import json
from collections import Counter

from sqlalchemy import bindparam, func, select

from .records import FailureRecord, PollRunRecord, SourceHealth
from .schema import failures, mentions, poll_runs, snapshots

p, f = poll_runs.c, failures.c
NO_ERRORS = "[]"  # a poll's errors as stored when it had none
_RECORD_POLL = poll_runs.insert().values({c: bindparam(c) for c in ("source", "started_at", "finished_at", "items",
                                                                    "stored", "errors", "interval")})
_ALL_FAILURES = select(failures).order_by(f.since)


class HealthStore:
    def record_poll(self, *, source: str, started_at: float, finished_at: float, items: int, stored: int,
                    errors: list[str], interval: float | None = None) -> None:
        with self.transaction() as db:
            db.execute(_RECORD_POLL, dict(source=source, started_at=started_at, finished_at=finished_at, items=items,
                                          stored=stored, errors=json.dumps(errors), interval=interval))

    def last_success(self, source: str) -> float | None:
        """When the source's latest poll without errors finished."""
        return self._value(select(func.max(p.finished_at)).where(p.source == source, p.errors == NO_ERRORS))

    def source_health(self, source: str, *, since: float) -> SourceHealth:
        latest = select(poll_runs).where(p.source == source).order_by(p.started_at.desc()).limit(1)
        last = self._rows(latest)
        last_error = self._rows(latest.where(p.errors != NO_ERRORS))
        # The feed is in each mention's extra (JSON text): read here rather than with each backend's JSON
        # functions; ``status`` reads one hour of mentions.
        by_feed = Counter(json.loads(extra or "{}").get("feed_url") for (extra,) in self._rows(
            select(mentions.c.extra).where(mentions.c.source == source, mentions.c.fetched_at >= since)))
        by_feed.pop(None, None)
        return SourceHealth(
            last=PollRunRecord.from_row(last[0]) if last else None, last_success=self.last_success(source),
            last_error=PollRunRecord.from_row(last_error[0]) if last_error else None,
            items_since=self._value(select(func.coalesce(func.sum(p["items"]), 0))
                                    .where(p.source == source, p.started_at >= since)),
            mentions_since=self._value(select(func.count()).select_from(mentions)
                                       .where(mentions.c.source == source, mentions.c.fetched_at >= since)),
            mentions_by_feed=dict(by_feed))

    def record_failure(self, subject: str, error: str, now: float) -> FailureRecord:
        upsert = self._insert(failures).values(subject=subject, since=now, last_at=now, count=1, last_error=error)
        with self.transaction() as db:
            row = db.execute(upsert.on_conflict_do_update(
                index_elements=["subject"], set_={"last_at": upsert.excluded.last_at, "count": f["count"] + 1,
                                                  "last_error": upsert.excluded.last_error})
                .returning(*failures.c)).one()
            return FailureRecord.from_row(row)

    def clear_failure(self, subject: str) -> FailureRecord | None:
        with self.transaction() as db:
            row = db.execute(failures.delete().where(f.subject == subject).returning(*failures.c)).first()
            return None if row is None else FailureRecord.from_row(row)

    def mark_failure_notified(self, subject: str) -> None:
        with self.transaction() as db:
            db.execute(failures.update().where(f.subject == subject).values(notified=1))

    def failures(self, *, prefix: str | None = None) -> list[FailureRecord]:
        """Ongoing failures, oldest first; ``prefix``: only subjects starting so, in subject order."""
        query = _ALL_FAILURES
        if prefix is not None:
            query = (select(failures).where(func.substr(f.subject, 1, len(prefix)) == prefix)
                     .order_by(f.subject))
        return [FailureRecord.from_row(r) for r in self._rows(query)]

    def prune(self, *, snapshots_before: float, poll_runs_before: float) -> tuple[int, int]:
        """Drop old growth snapshots and poll records; mentions and alerts are kept for good."""
        with self.transaction() as db:
            snaps = db.execute(snapshots.delete().where(snapshots.c.taken_at < snapshots_before)).rowcount
            runs = db.execute(poll_runs.delete().where(p.started_at < poll_runs_before)).rowcount
        return snaps, runs

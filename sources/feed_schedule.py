"""Each feed's own schedule: when it is due, backoff after failures, and when it is given up.

The state is a plain dict stored under ``feed:<configured URL without credentials>`` in the
``source_state`` table; ``complaint-monitor status`` prints its
``last_success``, ``last_error``, ``next_poll`` and ``disabled_reason``.
Times are ISO 8601 strings in UTC so the stored state reads well as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timedelta, timezone
from typing import Any


GONE_RECHECK_HOURS = 24  # a disabled (410 Gone) feed is asked again this often


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="seconds")


def _parse(value: Any) -> datetime | None:
    try:
        when = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


@dataclass(kw_only=True)
class FeedState:
    etag: str | None = None
    last_modified: str | None = None
    # Where to ask next time after a permanent redirect; the configured URL stays the feed's identity.
    current_url: str | None = None
    last_success: str | None = None
    last_error: str | None = None
    last_error_at: str | None = None
    # Not a failure, but worth knowing: a body cut off at the size limit, XML that is not well-formed.
    last_problem: str | None = None
    failures: int = 0
    next_poll: str | None = None
    disabled: bool = False
    disabled_reason: str | None = None

    @classmethod
    def from_dict(cls, raw: Any) -> "FeedState":
        """The stored state; anything unreadable in it is dropped (the feed is then simply due)."""
        if not isinstance(raw, dict):
            return cls()
        state = cls(**{f.name: raw[f.name] for f in fields(cls) if f.name in raw})
        if _parse(state.next_poll) is None:
            state.next_poll = None
        return state

    def as_dict(self) -> dict[str, Any]:
        # Every field is a plain scalar: no deep copy (dataclasses.asdict) needed, for 1,000 feeds a poll.
        return {name: getattr(self, name) for name in _FIELD_NAMES}

    def is_due(self, now: datetime, *, slack: float = 0.0) -> bool:
        when = _parse(self.next_poll)
        if self.disabled:
            return when is not None and when <= now  # the once-a-day look whether it is back
        return when is None or when <= now + timedelta(seconds=slack)

    def succeeded(self, now: datetime, *, interval: float, problem: str | None = None) -> None:
        self.disabled = False
        self.disabled_reason = None
        self.last_success = _iso(now)
        self.last_problem = problem
        self.failures = 0
        self.next_poll = _iso(now + timedelta(seconds=interval))

    def failed(self, now: datetime, reason: str, *, interval: float, max_backoff: float,
               retry_after: float | None = None) -> float:
        """Back off exponentially (interval, 2x, 4x, ... up to ``max_backoff``), never before ``retry_after``.

        Returns the delay until the next try.
        """
        self.failures += 1
        self.last_error = reason
        self.last_error_at = _iso(now)
        delay = min(interval * 2 ** (self.failures - 1), max(max_backoff, interval))
        if retry_after is not None:
            delay = max(delay, retry_after)
        if self.disabled:  # a gone feed that does not answer either: still once a day
            delay = max(delay, GONE_RECHECK_HOURS * 3600)
        self.next_poll = _iso(now + timedelta(seconds=delay))
        return delay

    def disable(self, now: datetime, reason: str) -> None:
        """Not polled any more, but looked at once a day: a feed removed by mistake that comes back is
        read again without anyone editing the config."""
        if not self.disabled:
            self.disabled_reason = f"{reason} (since {_iso(now)})"
        self.disabled = True
        self.last_error = reason
        self.last_error_at = _iso(now)
        self.next_poll = _iso(now + timedelta(hours=GONE_RECHECK_HOURS))


_FIELD_NAMES = tuple(f.name for f in fields(FeedState))

"""How a daemon shares the work with the other daemons on the same PostgreSQL store, through the leases of
``monitor/store/leases.py``. On SQLite there is one daemon (``daemon.StoreLock``) and none of this is used.

- A source's poll claims its share of the source's work units first: each feed of an RSS source, each
  listing of a Reddit source and its growth re-reads (a source whose ``work_units()`` names them and whose
  ``poll(state, units=...)`` reads only those), the whole source otherwise (``work_units()`` absent or None:
  the Reddit stream, Hacker News...). Records that several units change (a Reddit source's growth schedule,
  its client's pause) are merged into the stored value inside the store's transaction, never written whole
  from one poll's copy. Its cursors are read after the claim, so they are the last holder's; before the results are
  stored the claim is checked, and the cursors of units lost meanwhile are not written over their new
  holder's. Units go back when the poll is done, except a source that paces itself (the stream, asked
  every second), which keeps its unit while it runs.
- Jobs that must run once (deliver, digest, spikes, prune) run on one daemon at a time (``once``).
- Each alert is claimed before it is sent and recorded done after (``AlertClaims``): only the daemon that
  holds an alert's claim sends it, and an alert done is never claimed again. A daemon that dies after the
  server took an email but before recording it leaves the one possible duplicate, which carries the same
  Message-ID.
- ``Heartbeat`` renews, from its own thread, the daemon's own row and everything it holds.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from .source import Poll
from .store import Store
from .store.database import is_url
from .store.leases import Leases

log = logging.getLogger("complaint_monitor.sharing")

WHOLE_SOURCE = "source"  # the unit name of a source that does not split its work


def daemon_identity() -> str:
    """host:pid:random. The random part tells apart two runs that got the same pid (a restarted container)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def is_shared_store(store: str) -> bool:
    """A store several daemons may share: PostgreSQL (a URL). A path (SQLite) is one daemon's."""
    return is_url(store)


@dataclass
class SourceWork:
    """The units one poll of one source holds."""

    source: str
    leases: Leases
    names: dict[str, str]  # lease name -> the unit's key in the source's state
    whole: bool
    sticky: bool
    lost: set[str] = field(default_factory=set)

    @property
    def units(self) -> set[str] | None:
        """What to hand the source's poll: None for a source that does not split its work."""
        return None if self.whole else set(self.names.values())

    def drop_lost(self, poll: Poll) -> Poll:
        """The poll without the cursors (and re-reads) of units another daemon took meanwhile: its holder
        read them after us, and ours would go back over its. Mentions are kept: each is stored once anyway."""
        kept = self.leases.still_held(self.names)
        self.lost = set(self.names) - kept
        if not self.lost:
            return poll
        lost_keys = {self.names[name] for name in self.lost}
        log.warning("%s: %d units were taken over by another daemon during this poll (this one was too slow);"
                    " their cursors are left to it", self.source, len(self.lost))
        if self.whole:
            return Poll(mentions=poll.mentions, failed=poll.failed, succeeded=poll.succeeded)
        # Records merged into the stored value (a callable, see monitor/store/state.py) are kept: they add to
        # the new holder's changes, never write over them; so are fresh numbers (at worst read twice).
        state = {key: value for key, value in poll.state.items() if key not in lost_keys}
        return Poll(mentions=poll.mentions, updates=poll.updates, state=state, failed=poll.failed,
                    succeeded=poll.succeeded)

    def finish(self) -> None:
        if not self.sticky:
            self.leases.release(self.names)


class Sharing:
    """One daemon's side of the shared work."""

    def __init__(self, *, leases: Leases):
        self.leases = leases

    @classmethod
    def for_store(cls, store: Store, *, lease_seconds: float) -> "Sharing":
        """This daemon's side of the work on a PostgreSQL store, under a new identity."""
        return cls(leases=Leases(engine=store.engine, holder=daemon_identity(), lease_seconds=lease_seconds))

    @property
    def identity(self) -> str:
        return self.leases.holder

    @contextmanager
    def source_work(self, name: str, source: Any) -> Iterator[SourceWork]:
        """Claim this daemon's share of the source's units for one poll; give them back after it."""
        declared = getattr(source, "work_units", None)
        declared = declared() if declared is not None else None
        sticky = bool(getattr(source, "paces_itself", False))
        if declared is not None:
            # Each unit's own schedule (a feed's next poll, a listing's last read, in its cursor) says
            # whether it is due.
            by_name = {f"{name}:{key}": key for key in declared}
            claimed = self.leases.claim_share(list(by_name))
        else:
            # The source's interval is its only schedule: each daemon's job ticks at it, so the source is
            # taken only when no daemon polled it within the interval (with room for the ticks' jitter).
            by_name = {f"{name}:{WHOLE_SOURCE}": WHOLE_SOURCE}
            claimed = self.leases.claim_each(list(by_name), every=0 if sticky else source.interval * 0.8)
        work = SourceWork(source=name, leases=self.leases, names={n: by_name[n] for n in claimed},
                          whole=declared is None, sticky=sticky)
        try:
            yield work
        finally:
            work.finish()

    def once(self, job: str, func: Callable[[], Any], *, every: float = 0) -> Callable[[], Any]:
        """``func`` as a job that runs on one daemon at a time, and with ``every`` once per that many
        seconds between all of them."""
        name = f"job:{job}"

        def run_once() -> Any:
            if not self.leases.claim(name, every=every):
                return None  # another daemon runs it (or ran it this period)
            try:
                return func()
            finally:
                self.leases.release([name])

        return run_once

    def prune(self) -> int:
        """Forget the claims of alerts sent a day ago: the outbox never offers a sent alert again."""
        return self.leases.forget_done("alert:", older_than=86400)

    def alert_claims(self) -> "AlertClaims":
        return AlertClaims(leases=self.leases)


class AlertClaims:
    """The alerts this daemon may send in one delivery round. ``take`` before sending, ``done`` once recorded
    sent, ``finish`` at the end of the round gives back what was taken and not sent (a retry, quiet hours)."""

    def __init__(self, *, leases: Leases):
        self.leases = leases
        self._taken: set[str] = set()

    @staticmethod
    def _name(alert_id: int) -> str:
        return f"alert:{alert_id}"

    def take(self, alerts: list) -> list:
        """The alerts of ``alerts`` that are ours to send: claimed now, by no one else, and never done."""
        wanted = {self._name(a.id): a for a in alerts}
        got = set(self.leases.claim_each(list(wanted), once=True))
        self._taken |= got
        return [a for name, a in wanted.items() if name in got]

    def done(self, alert_ids: list[int]) -> None:
        names = [self._name(i) for i in alert_ids]
        self.leases.release(names, done=True)
        self._taken.difference_update(names)

    def finish(self) -> None:
        self.leases.release(self._taken, done=False)
        self._taken.clear()


class OwnAlerts:
    """One daemon alone on its store (SQLite): every alert is its to send, nothing to record."""

    def take(self, alerts: list) -> list:
        return alerts

    def done(self, alert_ids: list[int]) -> None:
        pass

    def finish(self) -> None:
        pass


class Heartbeat:
    """Renews the daemon's row and everything it holds every third of ``lease_seconds``, from its own
    thread, so a long poll or a slow SMTP server does not lose its leases; a daemon that dies stops."""

    def __init__(self, *, leases: Leases):
        self.leases = leases
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="lease-heartbeat", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self.leases.heartbeat()  # counted among the daemons before the first claim
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        try:
            self.leases.leave()
        except Exception:  # the store is gone: the leases expire on their own
            log.exception("could not give back the leases; they expire in %.0f s", self.leases.lease_seconds)

    def _beat(self) -> None:
        while not self._stop.wait(self.leases.lease_seconds / 3):
            try:
                lost = self.leases.heartbeat()
            except Exception:  # the store is unreachable: try again; past lease_seconds the leases are gone
                log.exception("lease heartbeat failed")
                continue
            if lost:
                log.warning("lost %d leases to another daemon (%s); their work is given up", len(lost),
                            ", ".join(sorted(lost)[:5]))


def daemons_status(store: Store) -> list[dict[str, Any]]:
    """For ``status`` on a PostgreSQL store: each daemon with a live heartbeat, and what it holds now (work units
    per source, jobs, alerts being sent); a holder whose heartbeat expired shows as not alive until its leases are
    taken over."""
    leases = Leases(engine=store.engine, holder="status", lease_seconds=0)
    alive = set(leases.alive())
    holders: dict[str, dict[str, Any]] = {}
    for lease in leases.current():
        entry = holders.setdefault(lease.holder, {"identity": lease.holder, "alive": lease.holder in alive,
                                                  "jobs": [], "units": {}, "alerts": 0})
        kind, _, rest = lease.name.partition(":")
        if kind == "daemon":
            entry["heartbeat_expires_in"] = round(lease.expires_in, 1)
        elif kind == "job":
            entry["jobs"].append(rest)
        elif kind == "alert":
            entry["alerts"] += 1
        else:  # "<source>:<unit>"
            entry["units"][kind] = entry["units"].get(kind, 0) + 1
    return sorted(holders.values(), key=lambda d: d["identity"])


def format_daemons(daemons: list[dict[str, Any]]) -> list[str]:
    if not daemons:
        return ["daemons: none running"]
    lines = [f"daemons: {sum(d['alive'] for d in daemons)} running"]
    for d in daemons:
        units = ", ".join(f"{n} {source}" for source, n in sorted(d["units"].items())) or "no work units"
        jobs = ", ".join(sorted(d["jobs"])) or "no jobs"
        state = "alive" if d["alive"] else "not alive (its leases expire and are taken over)"
        lines.append(f"  daemon {d['identity']}: {state}; holds {units}; {jobs}; {d['alerts']} alerts being sent")
    return lines

"""Leases: how several daemons on one PostgreSQL store share the work, and take it over from one that died.

A lease is one row of the ``leases`` table (``schema.leases``, migration 0003): a name ("rss:feed:https://...", "job:deliver", "alert:42",
"daemon:HOLDER"), the daemon holding it and when that expires. Times are the database's clock, never a
daemon's, so two machines whose clocks disagree still agree on who holds what.

- Work units (each feed, a whole source) are claimed for one poll with ``claim_share``:
  ``SELECT ... FOR UPDATE SKIP LOCKED`` picks free or expired rows, least recently done first, and two
  daemons claiming at the same moment never block each other nor get the same row. Each daemon takes at
  most its share (units / live daemons), so the work spreads instead of going to whoever asks first.
- Jobs that must run once (deliver, digest, spikes, prune) are claimed with ``claim``: an atomic upsert
  that only succeeds while the row is free, expired or already ours, and, with ``every``, only when the
  job was last done that long ago, so two daemons run the digest once per period between them.
- A daemon renews what it holds while it works (``renew``, from its heartbeat) and releases it when done;
  one that dies stops renewing and loses everything after ``lease_seconds``. One that was too slow to renew
  finds out from ``renew``/``still_held`` and gives that work up instead of writing over its successor.
- ``heartbeat`` keeps the daemon's own row alive: ``alive()`` is who is running, for shares and ``status``.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Callable, Iterable

from sqlalchemy import Engine, Float, and_, delete, literal, or_, select, update
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement, FunctionElement

from .schema import leases as leases_table

DAEMON_PREFIX = "daemon:"


class database_epoch(FunctionElement):
    """The database server's clock in unix seconds (a float), as each dialect spells it."""

    type = Float()
    inherit_cache = True


@compiles(database_epoch, "postgresql")
def _postgresql_epoch(element, compiler, **kw) -> str:
    # clock_timestamp(), not now(): now() is frozen at the start of the transaction.
    return "CAST(extract(epoch FROM clock_timestamp()) AS double precision)"


@compiles(database_epoch, "sqlite")
def _sqlite_epoch(element, compiler, **kw) -> str:
    return "((julianday('now') - 2440587.5) * 86400.0)"


@dataclass(frozen=True)
class Lease:
    name: str
    holder: str | None
    expires_in: float  # seconds from now; negative: expired
    done_at: float | None


class Leases:
    """The leases one daemon (``holder``) takes, renews and gives back."""

    def __init__(self, *, engine: Engine, holder: str, lease_seconds: float,
                 clock: Callable[[], float] | None = None):
        self.engine = engine
        self.holder = holder
        self.lease_seconds = lease_seconds
        self._clock = clock  # None: the database's clock (tests pass a clock they move)
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._known: set[str] = set()  # names whose row exists: no insert needed to claim them
        if engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        self._insert = insert

    # -- time ------------------------------------------------------------

    def _now(self) -> ColumnElement:
        return literal(self._clock(), Float) if self._clock is not None else database_epoch()

    def _expiry(self) -> ColumnElement:
        return self._now() + self.lease_seconds

    def _free_or_mine(self) -> ColumnElement:
        t = leases_table.c
        return or_(t.holder.is_(None), t.holder == self.holder, t.expires_at < self._now())

    # -- claiming --------------------------------------------------------

    def claim(self, name: str, *, every: float = 0) -> bool:
        """Take ``name`` if it is free, expired or ours; with ``every``, only if it was last done at least
        that many seconds ago (a periodic job run by several daemons runs once per period between them)."""
        return bool(self.claim_each([name], every=every))

    def claim_each(self, names: list[str], *, every: float = 0, once: bool = False) -> list[str]:
        """``claim`` for many names in one statement; with ``once``, a name whose work was ever done
        (an alert sent) is never taken again. Returns the names taken."""
        names = list(dict.fromkeys(names))  # one statement may not update a row twice
        if not names:
            return []
        t = leases_table.c
        condition = self._free_or_mine()
        if once:
            condition = and_(condition, t.done_at.is_(None))
        elif every > 0:
            condition = and_(condition, or_(t.done_at.is_(None), t.done_at <= self._now() - every))
        statement = (self._insert(leases_table)
                     .values([{"name": n, "holder": self.holder, "expires_at": self._expiry()} for n in names])
                     .on_conflict_do_update(index_elements=[t.name],
                                            set_={"holder": self.holder, "expires_at": self._expiry()},
                                            where=condition)
                     .returning(t.name))
        with self.engine.begin() as db:
            taken = [row[0] for row in db.execute(statement)]
        with self._lock:
            self._held.update(taken)
            self._known.update(taken)
        return taken

    def claim_share(self, names: list[str], *, share: int | None = None) -> list[str]:
        """Take up to ``share`` (default: this daemon's fair share, see ``share_of``) of ``names`` that are
        free, expired or ours, those done longest ago first. Rows locked by another daemon's claim at this
        very moment are skipped, not waited for."""
        if not names:
            return []
        self._ensure_rows(names)
        limit = self.share_of(len(names)) if share is None else share
        t = leases_table.c
        chosen = (select(t.name).where(t.name.in_(names), self._free_or_mine())
                  .order_by(t.done_at.asc().nulls_first(), t.name).limit(limit)
                  .with_for_update(skip_locked=True))
        with self.engine.begin() as db:
            picked = [row[0] for row in db.execute(chosen)]
            if picked:
                db.execute(update(leases_table).where(t.name.in_(picked))
                           .values(holder=self.holder, expires_at=self._expiry()))
        with self._lock:
            self._held.update(picked)
        return picked

    def _ensure_rows(self, names: list[str]) -> None:
        missing = [n for n in names if n not in self._known]
        if missing:
            with self.engine.begin() as db:
                db.execute(self._insert(leases_table).on_conflict_do_nothing(index_elements=["name"]),
                           [{"name": n, "holder": None, "expires_at": 0.0} for n in missing])
            self._known.update(missing)

    def share_of(self, units: int) -> int:
        """This daemon's fair share of ``units``: all of them alone, half with one other daemon running, ..."""
        return max(1, math.ceil(units / max(1, len(self.alive()))))

    # -- holding ---------------------------------------------------------

    def renew(self, names: Iterable[str] | None = None) -> set[str]:
        """Push the expiry of what we hold (default: everything this process holds) ``lease_seconds`` ahead;
        returns what is still ours. A lease another daemon took after ours expired is not ours any more:
        it is forgotten here, and the work on it must be given up."""
        with self._lock:
            wanted = set(self._held if names is None else names)
        if not wanted:
            return set()
        t = leases_table.c
        with self.engine.begin() as db:
            kept = {row[0] for row in db.execute(
                update(leases_table).where(t.name.in_(sorted(wanted)), t.holder == self.holder)
                .values(expires_at=self._expiry()).returning(t.name))}
        with self._lock:
            self._held -= wanted - kept
        return kept

    def still_held(self, names: Iterable[str]) -> set[str]:
        """Which of ``names`` are ours and unexpired right now (renewing them): check before writing results."""
        return self.renew(list(names))

    def release(self, names: Iterable[str], *, done: bool = True, forget: bool = False) -> None:
        """Give back what we hold; ``done`` records the work as finished now (it goes to the back of the
        queue); ``forget`` deletes the rows (one-off names such as an alert's)."""
        names = sorted(set(names))
        if not names:
            return
        t = leases_table.c
        mine = and_(t.name.in_(names), t.holder == self.holder)
        if forget:
            statement = delete(leases_table).where(mine)
        else:
            values = {"holder": None, "expires_at": 0.0}
            if done:
                values["done_at"] = self._now()
            statement = update(leases_table).where(mine).values(**values)
        with self.engine.begin() as db:
            db.execute(statement)
        with self._lock:
            self._held.difference_update(names)
            if forget:
                self._known.difference_update(names)

    def forget_done(self, prefix: str, *, older_than: float) -> int:
        """Delete the free rows named ``prefix...`` whose work was done more than ``older_than`` seconds ago
        (the claims of alerts long sent); returns how many."""
        t = leases_table.c
        with self.engine.begin() as db:
            return db.execute(delete(leases_table).where(
                t.name.startswith(prefix, autoescape=True), t.holder.is_(None),
                t.done_at < self._now() - older_than)).rowcount

    @property
    def held(self) -> set[str]:
        with self._lock:
            return set(self._held)

    # -- daemons ---------------------------------------------------------

    def heartbeat(self) -> set[str]:
        """Say we are alive, and renew everything we hold; returns what we lost (work to give up)."""
        t = leases_table.c
        name = DAEMON_PREFIX + self.holder
        with self.engine.begin() as db:
            db.execute(self._insert(leases_table).values(name=name, holder=self.holder, expires_at=self._expiry())
                       .on_conflict_do_update(index_elements=[t.name],
                                              set_={"holder": self.holder, "expires_at": self._expiry()}))
        before = self.held
        return before - self.renew(before)

    def leave(self) -> None:
        """A clean stop: give back everything at once, so the others take it over now, not after expiry."""
        self.release(self.held, done=False)
        t = leases_table.c
        with self.engine.begin() as db:
            db.execute(delete(leases_table).where(t.name == DAEMON_PREFIX + self.holder))

    def alive(self) -> list[str]:
        """The daemons whose heartbeat has not expired (this one once it has beaten), in name order."""
        t = leases_table.c
        with self.engine.connect() as db:
            return [row[0] for row in db.execute(
                select(t.holder).where(t.name.startswith(DAEMON_PREFIX, autoescape=True),
                                       t.expires_at >= self._now()).order_by(t.holder))]

    def current(self) -> list[Lease]:
        """Every lease held now (expired ones too, until someone takes them), for ``status``."""
        t = leases_table.c
        with self.engine.connect() as db:
            rows = db.execute(select(t.name, t.holder, (t.expires_at - self._now()).label("left"), t.done_at)
                              .where(t.holder.is_not(None)).order_by(t.holder, t.name))
            return [Lease(name=r.name, holder=r.holder, expires_in=r.left, done_at=r.done_at) for r in rows]

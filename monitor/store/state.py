"""Each source's own state (cursors, ETags, schedules): JSON values by key.

A value may also be a function of the value stored under its key (``merge``): it is applied inside the
store's transaction with the row locked (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's writes are
serialized by ``BEGIN IMMEDIATE``), so a record that several daemons change at once (a Reddit source's
growth schedule, each daemon holding other listings of it) takes every change instead of the last
writer's whole copy.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from sqlalchemy import bindparam, select

from .schema import source_state

c = source_state.c
_STATE = select(c.key, c.value).where(c.source == bindparam("source"))


def _upsert(insert):
    upsert = insert(source_state).values(source=bindparam("source"), key=bindparam("key"), value=bindparam("value"))
    return upsert.on_conflict_do_update(index_elements=["source", "key"], set_={"value": upsert.excluded.value})


def _placeholder(insert):
    # A row to lock before the first merge into a key: two first merges then wait for each other.
    return insert(source_state).values(source=bindparam("source"), key=bindparam("key"), value="null") \
        .on_conflict_do_nothing(index_elements=["source", "key"])


class StateStore:
    def source_state(self, source: str) -> dict[str, Any]:
        return {r.key: json.loads(r.value) for r in self._rows(_STATE, {"source": source})}

    def save_source_state(self, source: str, state: dict[str, Any]) -> None:
        """Upsert each key; a key whose value is None is forgotten; a callable value is a merge: called with
        the value stored now (None when there is none) under the row's lock, its result stored."""
        merges = {k: v for k, v in state.items() if callable(v)}
        state = {k: v for k, v in state.items() if k not in merges}
        with self.transaction() as db:
            if merges:
                state.update(self._merged(db, source, merges))
            kept = [{"source": source, "key": k, "value": json.dumps(v)} for k, v in state.items() if v is not None]
            forgotten = [k for k, v in state.items() if v is None]
            if kept:
                db.execute(self._prepared(_upsert), kept)
            if forgotten:
                db.execute(source_state.delete().where(c.source == source, c.key.in_(forgotten)))

    def _merged(self, db, source: str, merges: dict[str, Callable[[Any], Any]]) -> dict[str, Any]:
        keys = sorted(merges)  # locked in one order: two merges of the same keys never deadlock
        db.execute(self._prepared(_placeholder), [{"source": source, "key": k} for k in keys])
        locked = select(c.key, c.value).where(c.source == source, c.key.in_(keys)).order_by(c.key)
        if db.dialect.name == "postgresql":
            locked = locked.with_for_update()
        stored = {r.key: json.loads(r.value) for r in db.execute(locked)}
        return {k: merges[k](stored.get(k)) for k in keys}

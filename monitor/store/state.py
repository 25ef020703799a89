"""Each source's own state (cursors, ETags, schedules): JSON values by key."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import bindparam, select

from .schema import source_state

c = source_state.c
_STATE = select(c.key, c.value).where(c.source == bindparam("source"))


def _upsert(insert):
    upsert = insert(source_state).values(source=bindparam("source"), key=bindparam("key"), value=bindparam("value"))
    return upsert.on_conflict_do_update(index_elements=["source", "key"], set_={"value": upsert.excluded.value})


class StateStore:
    def source_state(self, source: str) -> dict[str, Any]:
        return {r.key: json.loads(r.value) for r in self._rows(_STATE, {"source": source})}

    def save_source_state(self, source: str, state: dict[str, Any]) -> None:
        """Upsert each key; a key whose value is None is forgotten."""
        kept = [{"source": source, "key": k, "value": json.dumps(v)} for k, v in state.items() if v is not None]
        forgotten = [k for k, v in state.items() if v is None]
        with self.transaction() as db:
            if kept:
                db.execute(self._prepared(_upsert), kept)
            if forgotten:
                db.execute(source_state.delete().where(c.source == source, c.key.in_(forgotten)))

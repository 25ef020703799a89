"""Each source's own state (cursors, ETags, schedules): JSON values by key."""

from __future__ import annotations

import json
from typing import Any


class StateStore:
    def source_state(self, source: str) -> dict[str, Any]:
        return {r["key"]: json.loads(r["value"]) for r in
                self._rows("SELECT key, value FROM source_state WHERE source = ?", (source,))}

    def save_source_state(self, source: str, state: dict[str, Any]) -> None:
        """Upsert each key; a key whose value is None is forgotten."""
        with self.transaction() as db:
            db.executemany("INSERT INTO source_state (source, key, value) VALUES (?, ?, ?)"
                           " ON CONFLICT (source, key) DO UPDATE SET value = excluded.value",
                           [(source, k, json.dumps(v)) for k, v in state.items() if v is not None])
            db.executemany("DELETE FROM source_state WHERE source = ? AND key = ?",
                           [(source, k) for k, v in state.items() if v is None])

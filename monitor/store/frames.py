"""The analyst's reads: whole tables (filtered in SQL) as Arrow columns, for ``monitor.analysis``.

Rows come out of SQLite as Arrow columns (the ADBC SQLite driver), not as one Python tuple per row; the
store is opened read-only and never migrated from here (a daemon of an older version may still run on it).
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa

from .legacy import RULE_NAMES


@dataclass(frozen=True, slots=True)
class Filters:
    """What a load keeps; None keeps everything. Times are unix seconds."""
    brands: list[str] | None = None
    sources: list[str] | None = None
    since: float | None = None
    until: float | None = None
    priorities: list[str] | None = None


_ALERT_EXPRESSIONS = {
    "brand": "m.brand", "source": "m.source", "mention_created_at": "m.created_at",
    "mention_fetched_at": "m.fetched_at",
    # From the poll that found the mention to the email leaving: the part of
    # the delay the monitor controls (fetched_at - created_at is the source's).
    "response_time": "a.sent_at - m.fetched_at",
    # Waited on purpose (a digest, quiet hours, follow-up spacing): not a delay of the monitor's.
    "held": "a.digest = 1 OR a.held_until IS NOT NULL",
}
_SNAPSHOT_EXPRESSIONS = {
    "brand": "m.brand", "source": "m.source", "priority": "m.priority", "story_id": "m.story_id",
    "mention_created_at": "m.created_at", "age": "s.taken_at - m.created_at",
}
_STORY_EXPRESSIONS = {
    "mentions": "count(m.id)",
    "sources": "json_group_array(DISTINCT m.source) FILTER (WHERE m.source IS NOT NULL)",
    "urgency": "max(m.urgency)", "virality": "max(m.virality)", "priority": "min(m.priority)",
    "score": "sum(m.score)", "comments": "sum(m.comments)", "peak_priority": "min(m.peak_priority)",
}


def _select(columns: Iterable[str], prefix: str, expressions: dict[str, str]) -> str:
    return ", ".join(f"{expressions.get(c, f'{prefix}.{c}')} AS {c}" for c in columns)


def _in(column: str, values: list[str]) -> str:
    return f"{column} IN ({','.join('?' * len(values))})"


def _where(f: Filters, *, brand_col: str, source_col: str | None, time_col: str, until_col: str | None = None,
           priority_col: str | None) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    for column, values in ((brand_col, f.brands), (source_col, f.sources), (priority_col, f.priorities)):
        if column is not None and values is not None:
            clauses.append(_in(column, values))
            params += values
    if f.since is not None:
        clauses.append(f"{time_col} >= ?")
        params.append(f.since)
    if f.until is not None:
        clauses.append(f"{until_col or time_col} < ?")
        params.append(f.until)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _read(path: Path, sql: str, params: list[Any]) -> pa.Table:
    import adbc_driver_sqlite.dbapi as adbc

    if not path.exists():
        raise FileNotFoundError(f"no store at {path}")
    with adbc.connect(f"{path.resolve().as_uri()}?mode=ro") as conn, conn.cursor() as cur:
        # The driver infers each column's type from the first batch; one batch
        # for the whole result means a column that starts with NULLs can't
        # later surprise it with text.
        cur.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(1 << 30)})
        cur.execute(sql, params)
        return cur.fetch_arrow_table()


def _has_column(path: Path, table: str, column: str) -> bool:
    import sqlite3

    if not path.exists():
        return False  # _read says there is no store
    with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
        return any(row[1] == column for row in db.execute(f"PRAGMA table_info({table})"))


def mentions_table(path: Path, columns: Iterable[str], f: Filters) -> pa.Table:
    # The names of the rules that fired: kept by the store beside the reasons (migration 11). Pulling them
    # out of the reasons here, even in SQLite's C, cost as much as the whole rest of the load. A store not
    # yet migrated (a daemon of an older version still runs on it) has no rules column.
    expressions = {} if _has_column(path, "mentions", "rules") else {"rules": RULE_NAMES.format(reasons="m.reasons")}
    where, params = _where(f, brand_col="m.brand", source_col="m.source", time_col="m.created_at",
                           priority_col="m.priority")
    return _read(path, f"SELECT {_select(columns, 'm', expressions)} FROM mentions m{where} ORDER BY m.id", params)


def alerts_table(path: Path, columns: Iterable[str], f: Filters) -> pa.Table:
    where, params = _where(f, brand_col="m.brand", source_col="m.source", time_col="a.created_at",
                           priority_col="a.priority")
    return _read(path, f"SELECT {_select(columns, 'a', _ALERT_EXPRESSIONS)} FROM alerts a"
                       f" JOIN mentions m ON m.id = a.mention_id{where} ORDER BY a.id", params)


def snapshots_table(path: Path, columns: Iterable[str], f: Filters) -> pa.Table:
    where, params = _where(f, brand_col="m.brand", source_col="m.source", time_col="s.taken_at",
                           priority_col="m.priority")
    return _read(path, f"SELECT {_select(columns, 's', _SNAPSHOT_EXPRESSIONS)} FROM snapshots s"
                       f" JOIN mentions m ON m.id = s.mention_id{where} ORDER BY s.mention_id, s.taken_at", params)


def stories_table(path: Path, columns: Iterable[str], f: Filters, *, best_priority: str | None = None) -> pa.Table:
    """Active in the window (``last_seen >= since``, ``first_seen < until``), with a mention from one of
    ``f.sources``, with a best mention at ``best_priority`` or higher; most viral first."""
    where, params = _where(f, brand_col="s.brand", source_col=None, time_col="s.last_seen",
                           until_col="s.first_seen", priority_col=None)
    having, having_params = [], []
    if f.sources is not None:
        having.append(f"sum({_in('m.source', f.sources)}) > 0")
        having_params += f.sources
    if best_priority is not None:
        having.append("min(m.priority) <= ?")
        having_params.append(best_priority)
    return _read(path, f"SELECT {_select(columns, 's', _STORY_EXPRESSIONS)} FROM stories s"
                       f" LEFT JOIN mentions m ON m.story_id = s.id{where} GROUP BY s.id"
                       + (" HAVING " + " AND ".join(having) if having else "")
                       + " ORDER BY max(m.virality) DESC NULLS LAST, s.last_seen DESC", params + having_params)

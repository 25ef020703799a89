"""The analyst's view: stored history as typed pandas DataFrames, and exports of it.

Filters go into the SQL, so loading a slice of a large store reads only that
slice. Rows come out of SQLite as Arrow columns (the ADBC SQLite driver), not
as one Python tuple per row, and every column is converted in bulk: a million
mentions load in seconds (bench/bench_load.py measures it).
"""

from __future__ import annotations

import io
import json
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
import pyarrow as pa

from .config import PRIORITIES, Config, load_config
from .store import RULE_NAMES

# Ordered so that P1 is the highest: ``df[df.priority >= "P2"]`` keeps P1 and P2.
PRIORITY_DTYPE = pd.CategoricalDtype(list(reversed(PRIORITIES)), ordered=True)

# Column kinds, converted in bulk by _typed():
#   int      int64, never null            Int64   nullable integer
#   float    float64 (NaN when unknown)   text    string
#   category unordered category           priority  PRIORITY_DTYPE
#   time     unix seconds -> datetime64[ns, UTC]
#   bool     0/1 -> bool                  list    JSON list -> Python list
#   timedelta  seconds -> timedelta64[ns]
MENTION_COLUMNS: dict[str, str] = {
    "id": "int", "source": "category", "source_id": "text", "kind": "category", "url": "text", "author": "text",
    "title": "text", "text": "text", "place": "text", "created_at": "time", "fetched_at": "time",
    "brand": "category", "quote": "text", "score": "Int64", "comments": "Int64", "upvote_ratio": "float",
    "awards": "Int64", "reach": "float", "compound": "float", "negative": "float", "neutral": "float",
    "positive": "float", "min_sentence": "float", "negative_share": "float", "brand_compound": "float",
    "title_compound": "float", "urgency": "float", "virality": "float", "priority": "priority",
    "reasons": "text", "tags": "list", "rules": "list", "suppressed": "bool", "story_id": "Int64",
    "peak_priority": "priority",
}
ALERT_COLUMNS: dict[str, str] = {
    "id": "int", "mention_id": "int", "recipient": "category", "priority": "priority", "status": "category",
    "digest": "bool", "attempts": "Int64", "last_error": "text", "message_id": "text", "created_at": "time",
    "sent_at": "time", "urgency": "float", "virality": "float", "score": "Int64", "comments": "Int64",
    "brand": "category", "source": "category", "mention_created_at": "time", "mention_fetched_at": "time",
    "response_time": "timedelta", "kind": "category", "held": "bool",
}
SNAPSHOT_COLUMNS: dict[str, str] = {
    "mention_id": "int", "taken_at": "time", "score": "Int64", "comments": "Int64", "upvote_ratio": "float",
    "awards": "Int64", "brand": "category", "source": "category", "priority": "priority", "story_id": "Int64",
    "mention_created_at": "time", "age": "timedelta",
}
STORY_COLUMNS: dict[str, str] = {
    "id": "int", "brand": "category", "key": "text", "title": "text", "url": "text", "first_seen": "time",
    "last_seen": "time", "sightings": "Int64", "mentions": "Int64", "sources": "list", "urgency": "float",
    "virality": "float", "priority": "priority", "score": "Int64", "comments": "Int64", "peak_priority": "priority",
}
REASON_TYPE = pa.list_(pa.struct([("kind", pa.string()), ("name", pa.string()), ("urgency", pa.float64()),
                                  ("virality", pa.float64()), ("detail", pa.string())]))

_MENTION_SELECT = {
    # The names of the rules that fired: kept by the store beside the reasons (migration 11). Pulling them
    # out of the reasons here, even in SQLite's C, cost as much as the whole rest of the load.
    **{c: f"m.{c}" for c in MENTION_COLUMNS},
}
# A store not yet migrated (a daemon of an older version still runs on it) has no rules column.
_MENTION_SELECT_UNMIGRATED = {**_MENTION_SELECT, "rules": RULE_NAMES.format(reasons="m.reasons")}
_ALERT_SELECT = {
    **{c: f"a.{c}" for c in ALERT_COLUMNS}, "brand": "m.brand", "source": "m.source",
    "mention_created_at": "m.created_at", "mention_fetched_at": "m.fetched_at",
    # From the poll that found the mention to the email leaving: the part of
    # the delay the monitor controls (fetched_at - created_at is the source's).
    "response_time": "a.sent_at - m.fetched_at",
    # Waited on purpose (a digest, quiet hours, follow-up spacing): not a delay of the monitor's.
    "held": "a.digest = 1 OR a.held_until IS NOT NULL",
}
_SNAPSHOT_SELECT = {
    **{c: f"s.{c}" for c in SNAPSHOT_COLUMNS}, "brand": "m.brand", "source": "m.source",
    "priority": "m.priority", "story_id": "m.story_id", "mention_created_at": "m.created_at",
    "age": "s.taken_at - m.created_at",
}
_STORY_SELECT = {
    **{c: f"s.{c}" for c in STORY_COLUMNS}, "mentions": "count(m.id)",
    "sources": "json_group_array(DISTINCT m.source) FILTER (WHERE m.source IS NOT NULL)",
    "urgency": "max(m.urgency)", "virality": "max(m.virality)", "priority": "min(m.priority)",
    "score": "sum(m.score)", "comments": "sum(m.comments)", "peak_priority": "min(m.peak_priority)",
}


def store_path_of(where: str | Path | Config) -> Path:
    """A loaded config, a config file (.yaml/.yml) or the SQLite store itself."""
    if isinstance(where, Config):
        return where.store_path
    path = Path(where)
    if path.suffix.lower() in (".yaml", ".yml"):
        return load_config(path).store_path
    return path


def _epoch(value: Any) -> float:
    try:
        ts = pd.Timestamp(value)
    except ValueError as err:
        raise ValueError(f"since/until must be an ISO date or time such as 2026-11-01, not {value!r}") from err
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return ts.timestamp()


def _one_or_many(value: str | Iterable[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _priorities_up_to(min_priority: str) -> list[str]:
    if min_priority not in PRIORITIES:
        raise ValueError(f"min_priority must be one of {', '.join(PRIORITIES)}, not {min_priority!r}")
    return list(PRIORITIES[: PRIORITIES.index(min_priority) + 1])


def _in(column: str, values: list[str]) -> str:
    return f"{column} IN ({','.join('?' * len(values))})"


def _where(*, brand_col: str, source_col: str, since_col: str, until_col: str, priority_col: str | None,
           brand=None, since=None, until=None, source=None, min_priority=None) -> tuple[list[str], list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if brand is not None:
        brands = _one_or_many(brand)
        clauses.append(_in(brand_col, brands))
        params += brands
    if source is not None:
        sources = _one_or_many(source)
        clauses.append(_in(source_col, sources))
        params += sources
    if since is not None:
        clauses.append(f"{since_col} >= ?")
        params.append(_epoch(since))
    if until is not None:
        clauses.append(f"{until_col} < ?")
        params.append(_epoch(until))
    if min_priority is not None and priority_col is not None:
        wanted = _priorities_up_to(min_priority)
        clauses.append(_in(priority_col, wanted))
        params += wanted
    return clauses, params


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


_ARROW_TYPE = {"int": pa.int64(), "Int64": pa.int64(), "bool": pa.int64(), "float": pa.float64(),
               "time": pa.float64(), "timedelta": pa.float64()}


def _lists(values: pa.ChunkedArray) -> list[list]:
    # A column of JSON lists repeats a handful of distinct values (tag sets,
    # rule sets): parse each distinct text once, then hand every row its own copy.
    # Arrow finds the distinct texts (in C++, without a Python string per row).
    encoded = values.combine_chunks().dictionary_encode(null_encoding="encode")
    parsed = [json.loads(u) if isinstance(u, str) else [] for u in encoded.dictionary.to_pylist()]
    # map() over C callables: no Python frame per row.
    return list(map(list.copy, map(parsed.__getitem__, encoded.indices.to_numpy(zero_copy_only=False).tolist())))


def _typed(table: pa.Table, spec: dict[str, str]) -> pd.DataFrame:
    # Cast first: an empty or all-NULL column arrives from the driver as int64.
    table = table.cast(pa.schema([(c, _ARROW_TYPE.get(kind, pa.string())) for c, kind in spec.items()]))
    lists = {c: _lists(table.column(c)) for c, kind in spec.items() if kind == "list"}
    table = table.drop_columns(list(lists))
    df = table.to_pandas()
    for column, kind in spec.items():
        if column in lists:
            continue
        values = df[column]
        if kind == "time":
            df[column] = pd.to_datetime(values, unit="s", utc=True).astype("datetime64[ns, UTC]")
        elif kind == "timedelta":
            df[column] = pd.to_timedelta(values, unit="s").astype("timedelta64[ns]")
        elif kind == "category":
            df[column] = values.astype("category")
        elif kind == "priority":
            df[column] = values.astype(PRIORITY_DTYPE)
        elif kind == "Int64":
            df[column] = values.astype("Int64")
        elif kind == "bool":
            df[column] = values.astype(bool)
    for column, values in lists.items():
        df.insert(list(spec).index(column), column, pd.Series(values, index=df.index, dtype=object))
    return df


def _select(columns: dict[str, str]) -> str:
    return ", ".join(f"{expr} AS {name}" for name, expr in columns.items())


def _sql_where(clauses: list[str]) -> str:
    return (" WHERE " + " AND ".join(clauses)) if clauses else ""


def load_mentions(where: str | Path | Config, *, brand: str | Iterable[str] | None = None,
                  since: datetime | str | None = None, until: datetime | str | None = None,
                  source: str | Iterable[str] | None = None, min_priority: str | None = None) -> pd.DataFrame:
    """Stored mentions with their scores, one row each, in the order they were stored.

    ``since``/``until`` compare with ``created_at`` (when it was posted);
    ``min_priority="P2"`` keeps P1 and P2. Columns: see MENTION_COLUMNS and the README.
    """
    clauses, params = _where(brand_col="m.brand", source_col="m.source", since_col="m.created_at",
                             until_col="m.created_at", priority_col="m.priority", brand=brand, since=since,
                             until=until, source=source, min_priority=min_priority)
    path = store_path_of(where)
    columns = _MENTION_SELECT if _has_column(path, "mentions", "rules") else _MENTION_SELECT_UNMIGRATED
    table = _read(path, f"SELECT {_select(columns)} FROM mentions m{_sql_where(clauses)} ORDER BY m.id", params)
    return _typed(table, MENTION_COLUMNS)


def load_alerts(where: str | Path | Config, *, brand=None, since=None, until=None, source=None,
                min_priority=None) -> pd.DataFrame:
    """The alert outbox joined with the mention each alert is about, in the order queued.

    ``since``/``until`` compare with the alert's ``created_at``; ``brand`` and
    ``source`` with its mention; ``min_priority`` with the alert's priority.
    ``response_time`` is ``sent_at - mention_fetched_at`` (NaT until sent).
    """
    clauses, params = _where(brand_col="m.brand", source_col="m.source", since_col="a.created_at",
                             until_col="a.created_at", priority_col="a.priority", brand=brand, since=since,
                             until=until, source=source, min_priority=min_priority)
    table = _read(store_path_of(where), f"SELECT {_select(_ALERT_SELECT)} FROM alerts a"
                  f" JOIN mentions m ON m.id = a.mention_id{_sql_where(clauses)}"
                  " ORDER BY a.id", params)
    return _typed(table, ALERT_COLUMNS)


def load_snapshots(where: str | Path | Config, *, brand=None, since=None, until=None, source=None,
                   min_priority=None) -> pd.DataFrame:
    """Engagement over time: one row per (mention, taken_at), oldest first.

    ``since``/``until`` compare with ``taken_at``; the other filters with the
    mention (its current priority). ``age`` is ``taken_at - mention_created_at``.
    """
    clauses, params = _where(brand_col="m.brand", source_col="m.source", since_col="s.taken_at",
                             until_col="s.taken_at", priority_col="m.priority", brand=brand, since=since,
                             until=until, source=source, min_priority=min_priority)
    table = _read(store_path_of(where), f"SELECT {_select(_SNAPSHOT_SELECT)} FROM snapshots s"
                  f" JOIN mentions m ON m.id = s.mention_id{_sql_where(clauses)} ORDER BY s.mention_id, s.taken_at",
                  params)
    return _typed(table, SNAPSHOT_COLUMNS)


def load_stories(where: str | Path | Config, *, brand=None, since=None, until=None, source=None,
                 min_priority=None) -> pd.DataFrame:
    """Stories (the same story seen in several places) with what their mentions add up to.

    A story is kept when it was active in the window (``last_seen >= since``,
    ``first_seen < until``), when one of its mentions came from ``source``, and
    when its best mention reaches ``min_priority``. Most viral first.
    """
    clauses, params = _where(brand_col="s.brand", source_col="", since_col="s.last_seen", until_col="s.first_seen",
                             priority_col=None, brand=brand, since=since, until=until)
    having, having_params = [], []
    if source is not None:
        sources = _one_or_many(source)
        having.append(f"sum({_in('m.source', sources)}) > 0")
        having_params += sources
    if min_priority is not None:
        having.append("min(m.priority) <= ?")
        having_params.append(_priorities_up_to(min_priority)[-1])
    table = _read(store_path_of(where), f"SELECT {_select(_STORY_SELECT)} FROM stories s"
                  f" LEFT JOIN mentions m ON m.story_id = s.id{_sql_where(clauses)} GROUP BY s.id"
                  + (" HAVING " + " AND ".join(having) if having else "")
                  + " ORDER BY max(m.virality) DESC NULLS LAST, s.last_seen DESC", params + having_params)
    return _typed(table, STORY_COLUMNS)


def expand_reasons(mentions: pd.DataFrame) -> pd.DataFrame:
    """One row per reason a mention was ranked as it was: mention_id, kind, name, urgency, virality, detail.

    The stored reasons are JSON; Arrow's JSON reader parses them all at once.
    """
    import pyarrow.compute as pc
    import pyarrow.json as pa_json

    columns = {"mention_id": pd.Series(dtype="int64"), "kind": pd.Series(dtype="category"),
               "name": pd.Series(dtype="category"), "urgency": pd.Series(dtype="float64"),
               "virality": pd.Series(dtype="float64"), "detail": pd.Series(dtype=object)}
    if mentions.empty:
        return pd.DataFrame(columns)
    lines = "\n".join('{"r":' + (text if isinstance(text, str) and text else "[]") + "}"
                      for text in mentions["reasons"])
    parsed = pa_json.read_json(io.BytesIO(lines.encode()),
                               parse_options=pa_json.ParseOptions(explicit_schema=pa.schema([("r", REASON_TYPE)])))
    reasons = parsed.column("r").combine_chunks()
    flat = pc.list_flatten(reasons)
    owners = pc.list_parent_indices(reasons).to_numpy()
    out = pd.DataFrame({"mention_id": mentions["id"].to_numpy()[owners]})
    for field in ("kind", "name", "urgency", "virality", "detail"):
        out[field] = flat.field(field).to_pandas()
    out["kind"] = out["kind"].astype("category")
    out["name"] = out["name"].astype("category")
    return out


LOADERS = {"mentions": load_mentions, "alerts": load_alerts, "snapshots": load_snapshots, "stories": load_stories}
FORMATS = ("csv", "parquet", "jsonl")


def write_frame(df: pd.DataFrame, out: str | Path, fmt: str) -> None:
    """Write a loaded frame as csv, parquet or jsonl.

    Parquet keeps every dtype (categories, nullable integers, UTC times, lists).
    CSV and JSONL write times as ISO 8601 in UTC; CSV writes list columns as JSON text.
    """
    out = Path(out)
    if fmt == "parquet":
        df.to_parquet(out, index=False)
    elif fmt == "jsonl":
        df.to_json(out, orient="records", lines=True, date_format="iso", date_unit="s")
    elif fmt == "csv":
        flat = df.copy()
        for column in flat.columns:
            if flat[column].dtype == object and len(flat) and isinstance(flat[column].iloc[0], list):
                flat[column] = [json.dumps(v) for v in flat[column]]
        flat.to_csv(out, index=False, date_format="%Y-%m-%dT%H:%M:%S%z")
    else:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")


def export(where: str | Path | Config, out: str | Path, *, fmt: str = "csv", table: str = "mentions",
           **filters: Any) -> int:
    """Load one table with the loaders' filters and write it; returns the number of rows written."""
    if table not in LOADERS:
        raise ValueError(f"table must be one of {', '.join(LOADERS)}, not {table!r}")
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    df = LOADERS[table](where, **filters)
    write_frame(df, out, fmt)
    return len(df)

"""The analyst's view: stored history as typed pandas DataFrames, and exports of it.

Filters go into the SQL (``store.frames``), so loading a slice of a large store
reads only that slice. Rows come out of the store as Arrow columns, not as one
Python tuple per row, and every column is converted in bulk: a million mentions
load in seconds (bench/bench_load.py measures it).
"""

from __future__ import annotations

import io
import json
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .bulk import collector_paused
from .config import PRIORITIES, Config, load_config
from .store import frames
from .store.database import is_url

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

def store_path_of(where: str | Path | Config) -> Path | str:
    """A loaded config, a config file (.yaml/.yml), the SQLite store itself, or a PostgreSQL store's URL."""
    if isinstance(where, Config):
        return where.store_path
    if is_url(where):
        return str(where)
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


# What pandas makes of Arrow text: str (Arrow-backed) from pandas 3 on, object before.
_TEXT = pa.array([], pa.string()).to_pandas().dtype
_ARROW_TYPE = {"int": pa.int64(), "Int64": pa.int64(), "bool": pa.int64(), "float": pa.float64(),
               "time": pa.float64(), "timedelta": pa.float64()}


def _lists(values: pa.ChunkedArray) -> list[list]:
    # A column of JSON lists repeats a handful of distinct values (tag sets,
    # rule sets): parse each distinct text once, then hand every row its own copy.
    # Arrow finds the distinct texts (in C++, without a Python string per row).
    encoded = values.combine_chunks().dictionary_encode(null_encoding="encode")
    parsed = [json.loads(u) if isinstance(u, str) else [] for u in encoded.dictionary.to_pylist()]
    # map() over C callables: no Python frame per row. The lists hold names (strings) only: no cycles.
    with collector_paused():
        return list(map(list.copy, map(parsed.__getitem__, encoded.indices.to_numpy(zero_copy_only=False).tolist())))


def _typed(table: pa.Table, spec: dict[str, str]) -> pd.DataFrame:
    # Cast first: an empty or all-NULL column arrives from the driver as int64.
    table = table.cast(pa.schema([(c, _ARROW_TYPE.get(kind, pa.string())) for c, kind in spec.items()]))
    lists = {c: _lists(table.column(c)) for c, kind in spec.items() if kind == "list"}
    table = table.drop_columns(list(lists))
    # Arrow finds each row's text among the column's few distinct ones (in C++): pandas gets categories
    # and codes instead of a million strings to factorize.
    for column, kind in spec.items():
        if kind in ("category", "priority"):
            at = table.schema.get_field_index(column)
            table = table.set_column(at, column, pc.dictionary_encode(table.column(at)))
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
            # As astype("category") gives them: sorted, not in the order Arrow met them, and of pandas' text
            # dtype even when there are none (Arrow's empty dictionary comes out as object).
            df[column] = values.cat.reorder_categories(values.cat.categories.sort_values().astype(_TEXT))
        elif kind == "priority":
            df[column] = values.astype(PRIORITY_DTYPE)
        elif kind == "Int64":
            df[column] = values.astype("Int64")
        elif kind == "bool":
            df[column] = values.astype(bool)
    for column, values in lists.items():
        df.insert(list(spec).index(column), column, pd.Series(values, index=df.index, dtype=object))
    return df


def _filters(*, brand=None, since=None, until=None, source=None, min_priority=None) -> frames.Filters:
    return frames.Filters(
        brands=None if brand is None else _one_or_many(brand),
        sources=None if source is None else _one_or_many(source),
        since=None if since is None else _epoch(since), until=None if until is None else _epoch(until),
        priorities=None if min_priority is None else _priorities_up_to(min_priority))


def load_mentions(where: str | Path | Config, *, brand: str | Iterable[str] | None = None,
                  since: datetime | str | None = None, until: datetime | str | None = None,
                  source: str | Iterable[str] | None = None, min_priority: str | None = None) -> pd.DataFrame:
    """Stored mentions with their scores, one row each, in the order they were stored.

    ``since``/``until`` compare with ``created_at`` (when it was posted);
    ``min_priority="P2"`` keeps P1 and P2. Columns: see MENTION_COLUMNS and the README.
    """
    filters = _filters(brand=brand, since=since, until=until, source=source, min_priority=min_priority)
    return _typed(frames.mentions_table(store_path_of(where), MENTION_COLUMNS, filters), MENTION_COLUMNS)


def load_alerts(where: str | Path | Config, *, brand=None, since=None, until=None, source=None,
                min_priority=None) -> pd.DataFrame:
    """The alert outbox joined with the mention each alert is about, in the order queued.

    ``since``/``until`` compare with the alert's ``created_at``; ``brand`` and
    ``source`` with its mention; ``min_priority`` with the alert's priority.
    ``response_time`` is ``sent_at - mention_fetched_at`` (NaT until sent).
    """
    filters = _filters(brand=brand, since=since, until=until, source=source, min_priority=min_priority)
    return _typed(frames.alerts_table(store_path_of(where), ALERT_COLUMNS, filters), ALERT_COLUMNS)


def load_snapshots(where: str | Path | Config, *, brand=None, since=None, until=None, source=None,
                   min_priority=None) -> pd.DataFrame:
    """Engagement over time: one row per (mention, taken_at), oldest first.

    ``since``/``until`` compare with ``taken_at``; the other filters with the
    mention (its current priority). ``age`` is ``taken_at - mention_created_at``.
    """
    filters = _filters(brand=brand, since=since, until=until, source=source, min_priority=min_priority)
    return _typed(frames.snapshots_table(store_path_of(where), SNAPSHOT_COLUMNS, filters), SNAPSHOT_COLUMNS)


def load_stories(where: str | Path | Config, *, brand=None, since=None, until=None, source=None,
                 min_priority=None) -> pd.DataFrame:
    """Stories (the same story seen in several places) with what their mentions add up to.

    A story is kept when it was active in the window (``last_seen >= since``,
    ``first_seen < until``), when one of its mentions came from ``source``, and
    when its best mention reaches ``min_priority``. Most viral first.
    """
    filters = _filters(brand=brand, since=since, until=until, source=source)
    best = None if min_priority is None else _priorities_up_to(min_priority)[-1]
    return _typed(frames.stories_table(store_path_of(where), STORY_COLUMNS, filters, best_priority=best),
                  STORY_COLUMNS)


def expand_reasons(mentions: pd.DataFrame) -> pd.DataFrame:
    """One row per reason a mention was ranked as it was: mention_id, kind, name, urgency, virality, detail.

    The stored reasons are JSON; Arrow's JSON reader parses them all at once.
    """
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

"""The analyst's view: stored history as typed pandas DataFrames.

Filters go into the SQL, so loading a slice of a large store reads only that
slice; columns are converted in bulk, never row by row.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from .config import PRIORITIES, Config, load_config

MENTION_COLUMNS = [
    "id", "source", "source_id", "kind", "url", "author", "title", "text", "place", "created_at", "fetched_at",
    "brand", "quote", "score", "comments", "upvote_ratio", "awards", "reach", "compound", "negative", "neutral",
    "positive", "min_sentence", "negative_share", "brand_compound", "title_compound", "urgency", "virality",
    "priority", "reasons", "tags", "suppressed",
]


def store_path_of(where: str | Path | Config) -> Path:
    """A loaded config, a config file (.yaml/.yml) or the SQLite store itself."""
    if isinstance(where, Config):
        return where.store_path
    path = Path(where)
    if path.suffix.lower() in (".yaml", ".yml"):
        return load_config(path).store_path
    return path


def _epoch(value: Any) -> float | None:
    if value is None:
        return None
    ts = pd.Timestamp(value)
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return ts.timestamp()


def _filters(column_prefix: str, *, brand=None, since=None, until=None, source=None,
             min_priority=None) -> tuple[str, list[Any]]:
    clauses, params = [], []
    p = column_prefix
    if brand is not None:
        brands = [brand] if isinstance(brand, str) else list(brand)
        clauses.append(f"{p}brand IN ({','.join('?' * len(brands))})")
        params += brands
    if source is not None:
        sources = [source] if isinstance(source, str) else list(source)
        clauses.append(f"{p}source IN ({','.join('?' * len(sources))})")
        params += sources
    if since is not None:
        clauses.append(f"{p}created_at >= ?")
        params.append(_epoch(since))
    if until is not None:
        clauses.append(f"{p}created_at < ?")
        params.append(_epoch(until))
    if min_priority is not None:
        wanted = PRIORITIES[: PRIORITIES.index(min_priority) + 1]
        clauses.append(f"{p}priority IN ({','.join('?' * len(wanted))})")
        params += list(wanted)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _connect(path: Path) -> sqlite3.Connection:
    if not path.exists():
        raise FileNotFoundError(f"no store at {path}")
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def _to_utc(df: pd.DataFrame, columns: list[str]) -> None:
    for c in columns:
        df[c] = pd.to_datetime(df[c], unit="s", utc=True)


def _categorical(df: pd.DataFrame, column: str, categories=None) -> None:
    df[column] = pd.Categorical(df[column], categories=categories, ordered=categories is not None)


def load_mentions(where: str | Path | Config, *, brand=None, since: datetime | str | None = None,
                  until: datetime | str | None = None, source=None, min_priority: str | None = None) -> pd.DataFrame:
    """Stored mentions with their scores, one row each, newest first."""
    where_sql, params = _filters("", brand=brand, since=since, until=until, source=source,
                                 min_priority=min_priority)
    with _connect(store_path_of(where)) as db:
        df = pd.read_sql_query(f"SELECT {', '.join(MENTION_COLUMNS)} FROM mentions{where_sql}"
                               " ORDER BY created_at DESC", db, params=params)
    _to_utc(df, ["created_at", "fetched_at"])
    for c in ("brand", "source", "kind"):
        _categorical(df, c)
    _categorical(df, "priority", list(PRIORITIES))
    for c in ("score", "comments", "awards"):
        df[c] = df[c].astype("Int64")
    for c in ("upvote_ratio", "reach", "compound", "negative", "neutral", "positive", "min_sentence",
              "negative_share", "brand_compound", "title_compound", "urgency", "virality"):
        df[c] = df[c].astype("float64")
    df["suppressed"] = df["suppressed"].astype(bool)
    df["reasons"] = [json.loads(v) if v else [] for v in df["reasons"]]
    df["tags"] = [json.loads(v) if v else [] for v in df["tags"]]
    df["rules"] = [[r["name"] for r in reasons if r["kind"] == "rule"] for reasons in df["reasons"]]
    return df


def load_alerts(where: str | Path | Config, *, brand=None, since=None, until=None, source=None,
                min_priority=None) -> pd.DataFrame:
    where_sql, params = _filters("m.", brand=brand, since=since, until=until, source=source,
                                 min_priority=min_priority)
    where_sql = where_sql.replace("m.priority", "a.priority")
    with _connect(store_path_of(where)) as db:
        df = pd.read_sql_query(
            "SELECT a.id, a.mention_id, a.recipient, a.priority, a.status, a.attempts, a.last_error, a.message_id,"
            " a.created_at, a.sent_at, m.brand, m.source, m.created_at AS mentioned_at"
            f" FROM alerts a JOIN mentions m ON m.id = a.mention_id{where_sql} ORDER BY a.created_at DESC",
            db, params=params)
    _to_utc(df, ["created_at", "sent_at", "mentioned_at"])
    _categorical(df, "priority", list(PRIORITIES))
    for c in ("brand", "source", "status"):
        _categorical(df, c)
    df["attempts"] = df["attempts"].astype("Int64")
    return df

"""The analyst's reads: whole tables (filtered in SQL) as Arrow columns, for ``monitor.analysis``.

Rows come out as Arrow columns through ADBC (its SQLite driver for a file, its PostgreSQL driver for a
database), not as one Python tuple per row. The queries are SQLAlchemy Core, compiled for the backend's
dialect; a SQLite store is opened read-only and never migrated from here (a daemon of an older version may
still run on it).

A large read from a SQLite file is split into ranges of the table's key, read side by side on one
connection each: the driver builds its Arrow columns in C without the GIL, and that building, not
SQLite, is most of a large read, so a second core halves it. Each connection reads its own snapshot;
when a write lands while they read, the split result is dropped and the table read again in one query.

The driver bundles a SQLite of its own. POSIX file locks belong to a process, not to a connection, so
when one copy of SQLite closes a file, every lock the process held on it goes, the other copy's too: an
analyst's own ``Store`` (or ``sqlite3`` connection) on the file would lose its write lock to the first
load, and another process, the daemon, could then write under it
(https://sqlite.org/howtocorrupt.html, "multiple copies of SQLite"). So while this process already has the
file open, it is read through Python's own ``sqlite3``, the copy that connection uses, which keeps every
connection's locks apart: slower, and the same columns.
"""

from __future__ import annotations

import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy import case, func, literal_column, select
from sqlalchemy.dialects import postgresql, sqlite

from .database import is_url
from .legacy import RULE_NAMES
from .schema import alerts, mentions, snapshots, stories

# Positional parameters as each ADBC driver takes them.
_DIALECTS = {"sqlite": sqlite.dialect(paramstyle="qmark"),
             "postgresql": postgresql.psycopg.dialect(paramstyle="numeric_dollar")}


@dataclass(frozen=True, slots=True)
class Filters:
    """What a load keeps; None keeps everything. Times are unix seconds."""
    brands: list[str] | None = None
    sources: list[str] | None = None
    since: float | None = None
    until: float | None = None
    priorities: list[str] | None = None


m, a, s, st = mentions.c, alerts.c, snapshots.c, stories.c


def _where(query: sa.Select, f: Filters, *, brand, source, time, until=None, priority=None) -> sa.Select:
    for column, values in ((brand, f.brands), (source, f.sources), (priority, f.priorities)):
        if column is not None and values is not None:
            query = query.where(column.in_(values))
    if f.since is not None:
        query = query.where(time >= f.since)
    if f.until is not None:
        query = query.where((until if until is not None else time) < f.until)
    return query


def _columns(names: Iterable[str], table: sa.Table, expressions: dict[str, Any]) -> list:
    return [expressions[n].label(n) if n in expressions else table.c[n].label(n) for n in names]


def _compiled(query: sa.Select, dialect: str) -> tuple[str, list]:
    compiled = query.compile(dialect=_DIALECTS[dialect], compile_kwargs={"render_postcompile": True})
    return compiled.string, [compiled.params[name] for name in compiled.positiontup or ()]


def _read(where: str | Path, query: sa.Select, *, split_on: sa.Column | None = None) -> pa.Table:
    """The query's rows; on SQLite, read in ranges of ``split_on`` side by side when there are many (the
    query must order by ``split_on`` first, so the ranges put together keep its order)."""
    if is_url(where):
        import adbc_driver_postgresql.dbapi as adbc

        # libpq takes the password from PGPASSWORD (or ~/.pgpass), as the daemon's connection does.
        with adbc.connect(str(where)) as conn, conn.cursor() as cur:
            cur.execute(*_compiled(query, "postgresql"))
            return cur.fetch_arrow_table()
    path = Path(where)
    if not path.exists():
        raise FileNotFoundError(f"no store at {path}")
    uri = f"{path.resolve().as_uri()}?mode=ro"
    if open_in_this_process(path):
        return _read_sqlite_stdlib(uri, query)
    if split_on is not None:
        bounds = _split_bounds(uri, split_on)
        if bounds:
            table = _read_in_ranges(uri, query, split_on, bounds)
            if table is not None:
                return table
    return _read_sqlite(uri, query)


def _read_sqlite(uri: str, query: sa.Select) -> pa.Table:
    import adbc_driver_sqlite.dbapi as adbc

    with adbc.connect(uri) as conn, conn.cursor() as cur:
        # The driver infers each column's type from the first batch; one batch
        # for the whole result means a column that starts with NULLs can't
        # later surprise it with text.
        cur.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(1 << 30)})
        cur.execute(*_compiled(query, "sqlite"))
        return cur.fetch_arrow_table()


def open_in_this_process(path: Path) -> bool:
    """Whether a descriptor of this process already has the file open (a ``Store``, a ``sqlite3`` connection)."""
    try:
        target = os.stat(path)
        descriptors = os.listdir("/dev/fd")  # Linux and macOS; without it (Windows, no POSIX locks): False
    except OSError:
        return False
    for name in descriptors:
        try:
            held = os.fstat(int(name))
        except (OSError, ValueError):
            continue  # the listing's own descriptor, closed by now
        if (held.st_dev, held.st_ino) == (target.st_dev, target.st_ino):
            return True
    return False


def _read_sqlite_stdlib(uri: str, query: sa.Select) -> pa.Table:
    """The query's rows through Python's ``sqlite3``, as Arrow columns typed as the driver types them (a
    column with no value as int64)."""
    with closing(sqlite3.connect(uri, uri=True)) as db:
        cursor = db.execute(*_compiled(query, "sqlite"))
        names = [column[0] for column in cursor.description]
        rows = cursor.fetchall()
    columns = [pa.array(values) for values in zip(*rows)] if rows else [pa.array([])] * len(names)
    return pa.table([c.cast(pa.int64()) if pa.types.is_null(c.type) else c for c in columns], names=names)


# Fewer keys than this per range and the extra connections cost more than they save.
RANGE_KEYS = 100_000


def _workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _split_bounds(uri: str, key: sa.Column) -> list[int]:
    """Where to cut the integer ``key``'s span into one range per core, or [] when one read is as fast."""
    span = _read_sqlite(uri, select(func.min(key), func.max(key)).select_from(key.table))
    low, high = span.column(0)[0].as_py(), span.column(1)[0].as_py()
    if low is None:
        return []
    ranges = min(_workers(), 4, (high - low) // RANGE_KEYS)
    return [low + (high - low) * i // ranges for i in range(1, ranges)]


def _read_in_ranges(uri: str, query: sa.Select, key: sa.Column, bounds: list[int]) -> pa.Table | None:
    """The query read in ranges of ``key`` cut at ``bounds``, or None when a write landed meanwhile."""
    cuts = [None, *bounds, None]
    queries = [query.where(*([key > low] if low is not None else []), *([key <= high] if high is not None else []))
               for low, high in zip(cuts, cuts[1:])]
    import adbc_driver_sqlite.dbapi as adbc

    # Through the driver's own SQLite, as the ranges are read: two copies of SQLite in one process must not
    # have one file open at once (each would drop the other's locks, and can unmap the other's WAL index).
    # In autocommit: a transaction left open would pin the version it sees.
    with adbc.connect(uri, autocommit=True) as conn, conn.cursor() as watch:
        def version():
            # Changes whenever another connection commits: unchanged from before the first range's read to
            # after the last one's, every range saw the same store.
            watch.execute("PRAGMA data_version")
            return watch.fetchone()

        before = version()
        with ThreadPoolExecutor(len(queries)) as pool:
            parts = list(pool.map(partial(_read_sqlite, uri), queries))
        if version() != before:
            return None
    return _concat(parts)


# The driver types each range's columns from that range's rows: a column all NULL there arrives as int64,
# one whose other ranges hold text or fractions as int64 too when this range holds only whole numbers.
# The widest type any range has values of wins.
_WIDER = [pa.binary(), pa.string(), pa.float64(), pa.int64()]


def _concat(parts: list[pa.Table]) -> pa.Table:
    fields = []
    for field in parts[0].schema:
        seen = {part.schema.field(field.name).type for part in parts
                if part.column(field.name).null_count < part.num_rows}
        fields.append(field.with_type(min(seen, key=_WIDER.index) if seen and seen <= set(_WIDER)
                                      else field.type))
    schema = pa.schema(fields)
    return pa.concat_tables([part.cast(schema) for part in parts])


def _has_rules(where: str | Path) -> bool:
    """Whether the store keeps the rule names (migration 11); every PostgreSQL store does."""
    if is_url(where) or not Path(where).exists():
        return True  # _read says there is no store
    with closing(sqlite3.connect(f"{Path(where).resolve().as_uri()}?mode=ro", uri=True)) as db:
        return any(row[1] == "rules" for row in db.execute("PRAGMA table_info(mentions)"))


def mentions_table(where: str | Path, columns: Iterable[str], f: Filters) -> pa.Table:
    # The names of the rules that fired: kept by the store beside the reasons. Pulling them out of the
    # reasons here, even in SQLite's C, cost as much as the whole rest of the load. A SQLite store not yet
    # migrated (a daemon of an older version still runs on it) has no rules column: SQLite reads the reasons.
    expressions = {} if _has_rules(where) else {"rules": literal_column(RULE_NAMES.format(reasons="mentions.reasons"))}
    query = select(*_columns(columns, mentions, expressions)).order_by(m.id)
    # A brand or a time window is read through an index, a slice too small for ranges to pay off.
    narrow = f.brands is not None or f.since is not None or f.until is not None
    return _read(where, _where(query, f, brand=m.brand, source=m.source, time=m.created_at, priority=m.priority),
                 split_on=None if narrow else m.id)


def alerts_table(where: str | Path, columns: Iterable[str], f: Filters) -> pa.Table:
    expressions = {
        "brand": m.brand, "source": m.source, "mention_created_at": m.created_at, "mention_fetched_at": m.fetched_at,
        # From the poll that found the mention to the email leaving: the part of
        # the delay the monitor controls (fetched_at - created_at is the source's).
        "response_time": a.sent_at - m.fetched_at,
        # Waited on purpose (a digest, quiet hours, follow-up spacing): not a delay of the monitor's.
        "held": case(((a.digest == 1) | a.held_until.is_not(None), 1), else_=0),
    }
    query = select(*_columns(columns, alerts, expressions)).join(mentions, m.id == a.mention_id).order_by(a.id)
    return _read(where, _where(query, f, brand=m.brand, source=m.source, time=a.created_at, priority=a.priority),
                 split_on=a.id)


def snapshots_table(where: str | Path, columns: Iterable[str], f: Filters) -> pa.Table:
    expressions = {"brand": m.brand, "source": m.source, "priority": m.priority, "story_id": m.story_id,
                   "mention_created_at": m.created_at, "age": s.taken_at - m.created_at}
    query = (select(*_columns(columns, snapshots, expressions)).join(mentions, m.id == s.mention_id)
             .order_by(s.mention_id, s.taken_at))
    return _read(where, _where(query, f, brand=m.brand, source=m.source, time=s.taken_at, priority=m.priority),
                 split_on=s.mention_id)


def _sources_list(where: str | Path):
    """The distinct sources of a story's mentions as a JSON list (text), on the store's backend."""
    if is_url(where):
        return func.coalesce(sa.cast(func.json_agg(m.source.distinct()).filter(m.source.is_not(None)), sa.Text),
                             "[]")
    return func.json_group_array(m.source.distinct()).filter(m.source.is_not(None))


def stories_table(where: str | Path, columns: Iterable[str], f: Filters, *,
                  best_priority: str | None = None) -> pa.Table:
    """Active in the window (``last_seen >= since``, ``first_seen < until``), with a mention from one of
    ``f.sources``, with a best mention at ``best_priority`` or higher; most viral first."""
    expressions = {
        "mentions": func.count(m.id), "sources": _sources_list(where), "urgency": func.max(m.urgency),
        "virality": func.max(m.virality), "priority": func.min(m.priority), "score": func.sum(m.score),
        "comments": func.sum(m.comments), "peak_priority": func.min(m.peak_priority),
    }
    query = (select(*_columns(columns, stories, expressions)).select_from(stories)
             .outerjoin(mentions, m.story_id == st.id).group_by(st.id)
             .order_by(func.max(m.virality).desc().nulls_last(), st.last_seen.desc()))
    query = _where(query, Filters(brands=f.brands, since=f.since, until=f.until), brand=st.brand, source=None,
                   time=st.last_seen, until=st.first_seen)
    if f.sources is not None:
        query = query.having(func.sum(case((m.source.in_(f.sources), 1), else_=0)) > 0)
    if best_priority is not None:
        query = query.having(func.min(m.priority) <= best_priority)
    return _read(where, query)

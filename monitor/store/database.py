"""The connection under every part of the store, on SQLite or PostgreSQL (SQLAlchemy Core).

SQLite: one file in WAL mode and one connection shared by the scheduler's threads, serialised by a lock
(SQLite serialises writes anyway, and this keeps transactions whole); a write transaction takes the write
lock at its start (BEGIN IMMEDIATE), so two writers never deadlock on an upgrade from a read.
PostgreSQL: a pool of connections, one per thread in a transaction; several daemons may share the database.

Either way ``transaction()`` is one transaction, and a nested use joins the outer one; inside ``batch()``,
each transaction is a savepoint of the batch's one transaction (SQLite) or its own (PostgreSQL).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterator

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.pool import StaticPool

from . import legacy

SQLITE_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA foreign_keys=ON")


class StoreUrlError(ValueError):
    """A ``store`` setting that is neither a file path nor a PostgreSQL URL."""


def is_url(where: str | Path) -> bool:
    return "://" in str(where)


def engine_url(where: str) -> sa.URL:
    """``postgresql://user@host:port/db`` as SQLAlchemy's psycopg 3 URL. The password is not part of the
    setting: libpq reads it from PGPASSWORD (or ~/.pgpass)."""
    try:
        url = make_url(where)
        url.port  # noqa: B018 (a port that is not a number is found here, not at the first connection)
    except (sa.exc.ArgumentError, ValueError) as err:
        raise StoreUrlError(f"not a database URL: {err}") from None
    if url.get_backend_name() not in ("postgresql", "postgres"):
        raise StoreUrlError(f"unsupported database {url.get_backend_name()!r}: give a SQLite file path"
                            " or a postgresql://user@host:port/database URL")
    if url.get_driver_name() not in ("psycopg", "psycopg2", ""):
        raise StoreUrlError(f"unsupported driver {url.get_driver_name()!r}: leave it out (psycopg 3 is used)")
    if url.password is not None:
        raise StoreUrlError("put no password in the store URL (it would be logged and shown); set PGPASSWORD")
    if not url.database:
        raise StoreUrlError("the URL names no database: postgresql://user@host:port/DATABASE")
    return url.set(drivername="postgresql+psycopg")


def _alembic_config(connection: Connection | None):
    from alembic.config import Config

    # Alembic's own info lines (plugins, "Context impl") are noise in a daemon's log; its errors still show.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    config = Config()
    config.set_main_option("script_location", str(resources.files("monitor.store") / "migrations"))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest schema revision this program knows."""
    from alembic.script import ScriptDirectory

    config = _alembic_config(None)
    return ScriptDirectory.from_config(config).get_current_head()


def newest_revision() -> str:
    """The newest revision, read from the revision files' names (numbered in order: 0001_..., 0002_...)
    without importing Alembic: a store already there opens without it (tests hold this to Alembic's head)."""
    versions = resources.files("monitor.store") / "migrations" / "versions"
    return max(f.name.split("_", 1)[0] for f in versions.iterdir() if f.name[:4].isdigit() and f.name.endswith(".py"))


def _migrate(connection: Connection) -> None:
    """Alembic from the revision the store is at to the newest this program knows."""
    if connection.dialect.has_table(connection, "alembic_version"):
        current = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        if current == newest_revision():
            return
    from alembic import command
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    config = _alembic_config(connection)
    script = ScriptDirectory.from_config(config)
    current = MigrationContext.configure(connection).get_current_revision()
    if current is not None and current not in {r.revision for r in script.walk_revisions()}:
        raise RuntimeError(f"store schema {current} is newer than this program ({script.get_current_head()})")
    if current != script.get_current_head():
        command.upgrade(config, "head")


class Database:
    def __init__(self, where: str | Path):
        self.where = where
        self._local = threading.local()
        self._statements: dict[Callable, Any] = {}
        if is_url(where):
            self.path = None
            self.engine = sa.create_engine(engine_url(str(where)), pool_pre_ping=True, pool_size=8,
                                           max_overflow=16)
            self.dialect = "postgresql"
            self._lock = None
            with self.engine.begin() as conn:
                # Daemons starting together: one migrates, the others wait and find it done.
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(1707)"))
                _migrate(conn)
        else:
            self.path = Path(where)
            if str(where) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._open_sqlite(str(where))

    def _open_sqlite(self, path: str) -> None:
        self._raw = raw = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        for pragma in SQLITE_PRAGMAS:
            raw.execute(pragma)
        # The frozen raw migrations bring a store from before Alembic to release 11, its baseline.
        with_alembic = raw.execute("SELECT 1 FROM sqlite_master WHERE name = 'alembic_version'").fetchone()
        if not with_alembic:
            legacy.migrate(raw, path)
        self.engine = sa.create_engine("sqlite://", creator=lambda: raw, poolclass=StaticPool)
        self.dialect = "sqlite"
        self._lock = threading.RLock()
        self._conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        self._depth = 0
        self._savepoints_at = 0  # inside batch(): the depth whose transactions are savepoints
        with self.transaction() as conn:
            if not with_alembic:
                from alembic import command
                command.stamp(_alembic_config(conn), "0001")
        with self.transaction() as conn:
            _migrate(conn)

    @property
    def schema_version(self) -> str:
        """The Alembic revision the store is at."""
        with self.reading() as conn:
            return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()

    def close(self) -> None:
        if self._lock is None:
            self.engine.dispose()
            return
        with self._lock:
            self._conn.close()
            self.engine.dispose()
            self._raw.close()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction; nested uses join the outer one."""
        if self._lock is None:
            current = getattr(self._local, "conn", None)
            if current is not None:
                yield current
                return
            with self.engine.begin() as conn:
                self._local.conn = conn
                try:
                    yield conn
                finally:
                    self._local.conn = None
            return
        with self._lock:
            if self._depth and self._depth == self._savepoints_at:
                with self._savepoint():
                    yield self._conn
                return
            if self._depth:
                self._depth += 1
                try:
                    yield self._conn
                finally:
                    self._depth -= 1
                return
            self._conn.exec_driver_sql("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self._conn
            except BaseException:
                self._conn.exec_driver_sql("ROLLBACK")
                raise
            else:
                self._conn.exec_driver_sql("COMMIT")
            finally:
                self._depth = 0

    @contextmanager
    def batch(self) -> Iterator[bool]:
        """Many small transactions (a poll's mentions, each with its alerts) committed as one: each is still
        all or nothing, the batch is one commit. On SQLite a commit writes every page the transaction touched
        to the log: one per mention was a third of storing a poll (bench/bench_pipeline.py). The batch holds
        the store (writers wait), so it should be short: a hundred mentions. A crash or an error leaving the
        batch loses all of it, so what counts it as done (a source's cursor) is written after it. On PostgreSQL
        each transaction stays its own: one holding a story's row lock across many mentions would make two
        daemons adding to the same stories wait on each other, or deadlock. Yields whether the batch holds the
        store: then nobody else writes until it ends, and what it read stays true but for its own writes."""
        if self._lock is None:
            yield False
            return
        with self.transaction():
            outer, self._savepoints_at = self._savepoints_at, self._depth
            try:
                yield True
            finally:
                self._savepoints_at = outer

    @contextmanager
    def _savepoint(self) -> Iterator[None]:
        """A transaction inside ``batch()``: what it wrote is undone alone when it fails."""
        self._conn.exec_driver_sql("SAVEPOINT batched")
        self._depth += 1
        try:
            yield
        except BaseException:
            self._conn.exec_driver_sql("ROLLBACK TO batched")
            self._conn.exec_driver_sql("RELEASE batched")
            raise
        else:
            self._conn.exec_driver_sql("RELEASE batched")
        finally:
            self._depth -= 1

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection to read on: the transaction's inside one."""
        if self._lock is not None:
            with self._lock:
                yield self._conn
            return
        current = getattr(self._local, "conn", None)
        if current is not None:
            yield current
            return
        with self.engine.connect() as conn:
            yield conn

    def _prepared(self, build: Callable[[Callable[[sa.Table], Any]], Any]) -> Any:
        """The statement ``build(insert)`` makes, built once per store: SQLAlchemy keeps a reused statement's
        cache key and compiled form, where one built per call costs more than SQLite's own work on it."""
        statement = self._statements.get(build)
        if statement is None:
            statement = self._statements[build] = build(self._insert)
        return statement

    def _insert(self, table: sa.Table):
        """The dialect's INSERT, which knows ON CONFLICT (DO NOTHING, DO UPDATE) on both backends."""
        return (sqlite_insert if self.dialect == "sqlite" else postgresql_insert)(table)

    def _rows(self, statement, params: Any = None) -> list[sa.Row]:
        with self.reading() as conn:
            return conn.execute(statement, params).all()

    def _value(self, statement, params: Any = None) -> Any:
        with self.reading() as conn:
            return conn.execute(statement, params).scalar()

    def query(self, sql: str, params: Any = ()) -> list[Any]:
        """Raw SQL in the backend's own dialect and parameter style: for tests and one-off diagnostics only.
        The program's modules use the store's typed methods (a test holds them to it)."""
        with self.reading() as conn:
            if self.dialect == "sqlite":
                cursor = conn.connection.dbapi_connection.cursor()
                cursor.row_factory = sqlite3.Row
                return cursor.execute(sql, params).fetchall()
            return [row._mapping for row in conn.exec_driver_sql(sql, params or None)]


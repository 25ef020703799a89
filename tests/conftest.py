from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from tests.servers.feeds import FeedServer
from tests.servers.smtp import SmtpServer

ROOT = Path(__file__).resolve().parent.parent
RULE_PACKS = sorted(str(p) for p in (ROOT / "rules").glob("*.yaml"))
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture
def feeds():
    with FeedServer() as server:
        yield server


@pytest.fixture
def smtp():
    with SmtpServer() as server:
        yield server


@pytest.fixture
def reddit():
    from tests.servers.reddit import RedditServer
    with RedditServer() as server:
        yield server


def deep_merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def local_sources(reddit, *, subreddits: list[str], feeds: list[dict], search: bool = False) -> dict:
    """The ``sources`` section for the local Reddit-compatible server and feed server."""
    return {
        "reddit": dict(client_id="test-id", client_secret="test-secret", user_agent="complaint-monitor tests",
                       subreddits=subreddits, oauth_url=reddit.url, reddit_url=reddit.url, search=search),
        "rss": {"feeds": feeds},
    }


@pytest.fixture
def write_config(tmp_path):
    """Write a config.yaml into tmp_path from a base config plus overrides; returns its path."""

    def write(overrides: dict | None = None, *, name: str = "config.yaml") -> Path:
        base = {
            "brands": [{"name": "Acme", "keywords": ["acme", "@acmesupport"], "own_accounts": ["acmesupport"]}],
            "store": str(tmp_path / "store.db"),
            "email": {"from": "monitor@test.local", "outbox_dir": str(tmp_path / "outbox")},
            "responders": [{"email": "oncall@test.local", "brands": "all", "min_priority": "P4"}],
            "rules": RULE_PACKS,
            "sentiment": {"lexicon": {"refund": -1.5, "overcharged": -2.0}},
        }
        config = deep_merge(base, overrides or {})
        path = tmp_path / name
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session")
def postgres_server():
    """One throwaway PostgreSQL server for the whole run (tests/postgres.py).

    Without PostgreSQL binaries the tests that need it are skipped, except under CI (CI=true), where
    .ci/run installs PostgreSQL and its absence is an error."""
    from tests.postgres import PostgresServer, PostgresUnavailable, find_bindir
    try:
        bindir = find_bindir()
    except PostgresUnavailable as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must test against PostgreSQL: {e}")
        pytest.skip(str(e))
    with PostgresServer(bindir=bindir) as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server) -> str:
    """The URL of a fresh database of its own for this test: postgresql://postgres@127.0.0.1:PORT/test_N."""
    return postgres_server.create_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_where(request, tmp_path) -> str:
    """Where a test that runs on both backends keeps its store: a SQLite file, or a fresh PostgreSQL database
    of its own on the session's throwaway server."""
    if request.param == "sqlite":
        return str(tmp_path / "store.db")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def leases_engine(postgres_url):
    """The engine of a PostgreSQL store on a fresh database, with the leases table (monitor/store/leases.py)."""
    from monitor.store import Store
    store = Store(postgres_url)
    yield store.engine
    store.close()

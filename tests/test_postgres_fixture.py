"""The throwaway PostgreSQL server (tests/postgres.py) really serves: each test gets a database of its own."""

from __future__ import annotations

import psycopg


def test_server_round_trips_a_row(postgres_url):
    with psycopg.connect(postgres_url) as conn:
        conn.execute("CREATE TABLE probe (id serial PRIMARY KEY, text text NOT NULL)")
        conn.execute("INSERT INTO probe (text) VALUES (%s)", ("héllo, wörld",))
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT text FROM probe").fetchall() == [("héllo, wörld",)]
        assert conn.execute("SHOW fsync").fetchone() == ("off",)
        assert conn.execute("SELECT inet_server_addr()::text").fetchone()[0].startswith("127.0.0.1")


def test_each_test_gets_a_fresh_database(postgres_server, postgres_url):
    other = postgres_server.create_database()
    assert other != postgres_url
    with psycopg.connect(postgres_url) as conn:
        conn.execute("CREATE TABLE only_here (id int)")
    with psycopg.connect(other) as conn:
        assert conn.execute("SELECT to_regclass('only_here')").fetchone() == (None,)

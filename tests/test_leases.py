"""Leases (monitor/store/leases.py) against a real PostgreSQL: two holders, expiry and takeover, renewal, the
SKIP LOCKED partitioning of many work units, and jobs that run once per period between several daemons."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from monitor.sharing import daemon_identity
from monitor.store.leases import Leases


class Clock:
    """A clock the test moves: expiry without waiting for it."""

    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def engine(leases_engine):
    return leases_engine


@pytest.fixture
def clock():
    return Clock()


def daemon(engine, name: str, clock=None, lease_seconds: float = 10) -> Leases:
    return Leases(engine=engine, holder=name, lease_seconds=lease_seconds, clock=clock)


def test_one_holder_at_a_time_until_released(engine, clock):
    a, b = daemon(engine, "a", clock), daemon(engine, "b", clock)
    assert a.claim("job:deliver")
    assert not b.claim("job:deliver")
    assert a.claim("job:deliver"), "a holder may claim again what it holds"
    a.release(["job:deliver"])
    assert b.claim("job:deliver")
    assert not a.claim("job:deliver")
    assert a.held == set() and b.held == {"job:deliver"}


def test_an_expired_lease_is_taken_over_and_its_old_holder_learns_it(engine, clock):
    a, b = daemon(engine, "a", clock), daemon(engine, "b", clock)
    assert a.claim_share(["feed:1", "feed:2"], share=2) == ["feed:1", "feed:2"]
    clock.now += 9.9
    assert b.claim_share(["feed:1", "feed:2"], share=2) == []
    clock.now += 0.2  # a stopped renewing (killed): 10.1 s later its leases are free
    assert b.claim_share(["feed:1", "feed:2"], share=2) == ["feed:1", "feed:2"]
    assert a.still_held(["feed:1", "feed:2"]) == set()
    assert a.held == set()
    a.release(["feed:1"])  # a late release by the old holder does not free its successor's lease
    assert b.still_held(["feed:1", "feed:2"]) == {"feed:1", "feed:2"}


def test_renewal_keeps_a_lease_and_its_end_frees_it(engine, clock):
    a, b = daemon(engine, "a", clock), daemon(engine, "b", clock)
    assert a.claim("rss:feed:x")
    clock.now += 8
    assert a.renew() == {"rss:feed:x"}  # expiry is now 18 s after the start
    clock.now += 9
    assert not b.claim("rss:feed:x")
    clock.now += 1.1
    assert b.claim("rss:feed:x")


def test_expiry_on_the_database_clock(engine):
    a, b = daemon(engine, "a", lease_seconds=0.5), daemon(engine, "b", lease_seconds=0.5)
    assert a.claim("job:prune")
    assert not b.claim("job:prune")
    time.sleep(0.7)
    assert b.claim("job:prune")
    assert a.heartbeat() == {"job:prune"}, "the heartbeat reports the lease it lost"


def test_daemons_share_the_units_and_a_dead_ones_share_comes_back(engine, clock):
    feeds = [f"rss:feed:{i:03d}" for i in range(100)]
    a, b = daemon(engine, "a", clock), daemon(engine, "b", clock)
    a.heartbeat()
    assert a.share_of(len(feeds)) == 100
    b.heartbeat()
    assert a.alive() == ["a", "b"]
    first = a.claim_share(feeds)
    second = b.claim_share(feeds)
    assert len(first) == len(second) == 50 and set(first) | set(second) == set(feeds)
    a.release(first)
    b.release(second)
    clock.now += 11
    a.heartbeat()  # b stopped beating: it is no longer counted
    assert a.alive() == ["a"]
    assert sorted(a.claim_share(feeds)) == feeds


def test_units_done_longest_ago_come_first(engine, clock):
    feeds = [f"feed:{i}" for i in range(10)]
    a, b = daemon(engine, "a", clock), daemon(engine, "b", clock)
    done_by_a = a.claim_share(feeds, share=5)
    clock.now += 1
    a.release(done_by_a)
    clock.now += 1
    # The five never done come before the five a just finished, whoever asks.
    assert set(b.claim_share(feeds, share=5)) == set(feeds) - set(done_by_a)


def test_claims_skip_rows_another_daemon_is_locking(engine, postgres_url, clock):
    feeds = [f"feed:{i}" for i in range(20)]
    a = daemon(engine, "a", clock)
    a.claim_share(feeds, share=0)  # creates the rows
    with psycopg.connect(postgres_url) as other:  # a claim in flight elsewhere: its rows are locked
        locked = [r[0] for r in other.execute(
            "SELECT name FROM leases WHERE name = ANY(%s) ORDER BY name LIMIT 5 FOR UPDATE", (feeds,))]
        got: list[str] = []
        claiming = threading.Thread(target=lambda: got.extend(a.claim_share(feeds, share=20)))
        claiming.start()
        claiming.join(timeout=5)
        waited = claiming.is_alive()
        other.rollback()  # lets a claim that waited finish, so the test fails instead of hanging
        claiming.join()
    assert not waited, "a claim must skip rows locked by another claim, not wait for them"
    assert len(locked) == 5 and set(got) == set(feeds) - set(locked)


def test_concurrent_claims_never_hand_one_unit_to_two_daemons(engine):
    feeds = [f"feed:{i}" for i in range(300)]
    daemons = [daemon(engine, f"d{i}") for i in range(3)]
    for d in daemons:
        d.heartbeat()
    for _ in range(5):
        start = threading.Barrier(len(daemons))
        got: dict[str, list[str]] = {}

        def claim(d: Leases) -> None:
            start.wait()
            got[d.holder] = d.claim_share(feeds)

        threads = [threading.Thread(target=claim, args=(d,)) for d in daemons]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        claimed = [f for names in got.values() for f in names]
        assert len(claimed) == len(set(claimed)) == 300
        assert all(len(names) == 100 for names in got.values())
        for d in daemons:
            d.release(got[d.holder])


def test_a_singleton_job_runs_once_at_a_time_and_once_per_period(engine, clock):
    a, b = daemon(engine, "a", clock), daemon(engine, "b", clock)
    assert a.claim("job:spikes", every=300)
    assert not b.claim("job:spikes", every=300)
    clock.now += 2
    a.release(["job:spikes"])  # done at +2
    clock.now += 100
    assert not b.claim("job:spikes", every=300), "done 100 s ago: not due for another 200 s"
    clock.now += 201
    assert b.claim("job:spikes", every=300)


def test_concurrent_singleton_claims_have_one_winner(engine):
    daemons = [daemon(engine, f"d{i}") for i in range(4)]
    for round_ in range(10):
        start = threading.Barrier(len(daemons))
        winners = []

        def claim(d: Leases) -> None:
            start.wait()
            if d.claim(f"job:{round_}"):
                winners.append(d.holder)

        threads = [threading.Thread(target=claim, args=(d,)) for d in daemons]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(winners) == 1


def test_leaving_frees_everything_at_once(engine, clock):
    a, b = daemon(engine, "a", clock), daemon(engine, "b", clock)
    a.heartbeat()
    a.claim("job:deliver")
    a.claim_share(["feed:1", "feed:2"], share=2)
    assert {lease.name for lease in b.current()} == {"daemon:a", "job:deliver", "feed:1", "feed:2"}
    a.leave()
    assert b.alive() == [] and b.current() == []
    assert b.claim("job:deliver") and b.claim_share(["feed:1", "feed:2"], share=2) == ["feed:1", "feed:2"]


def test_one_off_leases_are_forgotten(engine, clock):
    a, b = daemon(engine, "a", clock), daemon(engine, "b", clock)
    assert a.claim("alert:7")
    a.release(["alert:7"], forget=True)
    assert b.current() == []
    assert b.claim("alert:7")


def test_daemon_identity_names_host_and_pid():
    import os
    import socket
    first, second = daemon_identity(), daemon_identity()
    assert first.startswith(f"{socket.gethostname()}:{os.getpid()}:") and first != second


def test_work_done_once_is_never_claimed_again(engine, clock):
    a, b = daemon(engine, "a", clock), daemon(engine, "b", clock)
    assert a.claim_each(["alert:1", "alert:2", "alert:3"], once=True) == ["alert:1", "alert:2", "alert:3"]
    assert b.claim_each(["alert:1", "alert:2", "alert:3", "alert:4"], once=True) == ["alert:4"]
    a.release(["alert:1"], done=True)  # sent
    a.release(["alert:2"], done=False)  # to be retried later
    clock.now += 11  # alert:3's holder died mid-send: after expiry it is someone else's
    assert sorted(b.claim_each(["alert:1", "alert:2", "alert:3"], once=True)) == ["alert:2", "alert:3"]


def test_claims_of_work_done_long_ago_are_forgotten(engine, clock):
    a = daemon(engine, "a", clock)
    a.claim_each(["alert:1", "alert:2", "alert:3"], once=True)
    a.release(["alert:1"], done=True)
    clock.now += 100
    a.release(["alert:2"], done=True)
    assert a.forget_done("alert:", older_than=50) == 1  # alert:1; alert:2 is recent, alert:3 still held
    assert {lease.name for lease in a.current()} == {"alert:3"}
    assert not a.claim_each(["alert:2"], once=True)


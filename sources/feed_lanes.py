"""Politeness across processes: lanes that take each host's feeds from one counter, wherever they run.

Each host gets up to ``per_host`` lanes, at most ``workers`` lanes run at
once, and a lane takes its host's next feed only when its last one is done:
so a host never has more than ``per_host`` requests in flight, and a feed that
hangs holds only its own lane while the host's other lanes carry on with the
rest. The lanes of one poll may run in different processes (each worker
process runs some, ``feed_workers``): they take feeds from ``Claims``,
counters in an array and a lock that every process shares, which also count
each host's timeouts in a row (after ``skip_after`` its other feeds wait for
the next poll: a host that is down and serves 100 feeds would otherwise cost
100 timeouts in a row) and record which process took each feed, so the feeds
a killed process held are known.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, MutableSequence

from .feed_exchange import Exchange

# How long a lane waits for the claims lock: longer only if a process was killed while holding it.
LOCK_SECONDS = 5.0


class ClaimsLost(Exception):
    """The claims lock was not free in time: a process was killed while it held it."""


@dataclass(frozen=True)
class Plan:
    """One poll's feeds (by index) by host, in the order the hosts' lanes take them."""
    hosts: list[str]
    order: list[list[int]]  # for each host, its feeds' indexes
    feeds: int

    @classmethod
    def of(cls, hosts_of_feeds: list[str]) -> "Plan":
        by_host: dict[str, list[int]] = defaultdict(list)
        for index, host in enumerate(hosts_of_feeds):
            by_host[host].append(index)
        return cls(hosts=list(by_host), order=list(by_host.values()), feeds=len(hosts_of_feeds))

    def lanes(self, per_host: int) -> list[int]:
        """A host index per lane; lanes of different hosts interleaved so every host starts early."""
        return [host for rank in range(per_host) for host, feeds in enumerate(self.order) if len(feeds) > rank]

    def slots(self) -> int:
        return 2 * len(self.hosts) + self.feeds


class Claims:
    """``values`` holds, for a poll: each host's next feed, each host's timeouts in a row, each feed's taker
    (0: nobody yet); ``lock`` guards them. A plain list and a thread lock for lanes of one process; a
    ``multiprocessing`` RawArray and Lock for lanes in several."""

    def __init__(self, plan: Plan, values: MutableSequence[int], lock, *, skip_after: int):
        self.plan = plan
        self._values = values
        self._lock = lock
        self._skip_after = skip_after
        self._timeouts = len(plan.hosts)
        self._takers = 2 * len(plan.hosts)

    @classmethod
    def local(cls, plan: Plan, *, skip_after: int, timeouts: list[int] | None = None) -> "Claims":
        values = [0] * plan.slots()
        values[len(plan.hosts):2 * len(plan.hosts)] = timeouts or [0] * len(plan.hosts)
        return cls(plan, values, threading.Lock(), skip_after=skip_after)

    def reset(self) -> None:
        with self._held():
            self._values[:self.plan.slots()] = [0] * self.plan.slots()

    def take(self, host: int, taker: int) -> tuple[int, int] | None:
        """The host's next feed for ``taker`` (a process's number, from 1) and the host's timeouts in a row."""
        with self._held():
            rank = self._values[host]
            if rank >= len(self.plan.order[host]):
                return None
            self._values[host] = rank + 1
            feed = self.plan.order[host][rank]
            self._values[self._takers + feed] = taker
            return feed, self._values[self._timeouts + host]

    def answered(self, host: int, answer: Exchange) -> None:
        if answer.timed_out or answer.error is None:
            with self._held():
                self._values[self._timeouts + host] = self._values[self._timeouts + host] + 1 if answer.timed_out else 0

    def taker(self, feed: int) -> int:
        return self._values[self._takers + feed]

    def timeouts(self) -> list[int]:
        return list(self._values[self._timeouts:self._takers])

    def skipped(self, host: int, timeouts: int) -> Exchange | None:
        if timeouts < self._skip_after:
            return None
        return Exchange(error=f"HostSkipped: not tried: {self.plan.hosts[host]} timed out {timeouts} times in a row"
                              " in this poll")

    @contextmanager
    def _held(self) -> Iterator[None]:
        if not self._lock.acquire(timeout=LOCK_SECONDS):
            raise ClaimsLost(f"the feed claims lock was not free within {LOCK_SECONDS:g} s")
        try:
            yield
        finally:
            self._lock.release()


def run_lanes(claims: Claims, lanes: list[int], *, threads: int, taker: int,
              exchange: Callable[[int], Exchange], answered: Callable[[int, Exchange], None]) -> None:
    """Run ``lanes`` (host indexes) on ``threads`` threads until their hosts' feeds are all taken: each feed's
    ``exchange(index)`` (or its HostSkipped failure) goes to ``answered(index, answer)``. Returns when every lane
    is done; a lane stops early only if the claims lock was lost (``ClaimsLost``), its feeds left untaken."""

    def lane(host: int) -> None:
        try:
            while taken := claims.take(host, taker):
                feed, timeouts = taken
                answer = claims.skipped(host, timeouts) or exchange(feed)
                answered(feed, answer)  # before anything else can fail: a feed taken is a feed answered
                claims.answered(host, answer)
        except ClaimsLost:
            return

    if not lanes:
        return
    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(lanes))), thread_name_prefix="feed") as pool:
        for future in [pool.submit(lane, host) for host in lanes]:
            future.result()

"""Reading fetched feeds on every core: feedparser and html2text in worker processes.

Both are pure Python, so the fetch threads, which share one interpreter lock,
parsed one feed at a time on one core, and parsing was most of a first poll's
fetch-and-read time. The HTTP stays in the source's process (its one client,
its connection pool, its politeness per host); a feed's bytes go to a worker
process, its ``Mention``s come back. What a worker logs (an entry skipped) is
logged again here, where the daemon's handlers and redaction are.

With one core, or when the pool breaks (a worker killed), the feed is read in
the calling thread as before: the result is the same either way
(``tests/test_rss.py`` reads feeds both ways).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime

from monitor.mention import Mention

from .feed_entries import entry_mentions, parse_feed

log = logging.getLogger("complaint_monitor.sources.rss")

PARENT_CHECK_SECONDS = 1.0  # how often a worker looks whether the daemon still lives


@dataclass
class FeedRead:
    """What the source needs of a parsed feed."""
    mentions: list[Mention]
    entries: int  # entries in the feed, before ``limit``
    version: str  # feedparser's name of the format, empty when it found none
    problem: str | None = None  # not well-formed XML, a wrong encoding...: "ExceptionName: message"
    logged: list[tuple[int, str]] = field(default_factory=list)  # (level, message) logged while reading


def read_feed(body: bytes, *, content_type: str | None, source: str, feed_id: str, feed_name: str,
              base_url: str, reach: float, now: datetime, limit: int | None) -> FeedRead:
    """Parse a feed's bytes into its mentions (``entry_mentions``); runs in a worker process or here."""
    records = _Records()
    log.addHandler(records)
    try:
        parsed = parse_feed(body, content_type=content_type)
        problem = f"{type(parsed.bozo_exception).__name__}: {parsed.bozo_exception}" if parsed.bozo else None
        mentions = entry_mentions(parsed, source=source, feed_id=feed_id, feed_name=feed_name, base_url=base_url,
                                  reach=reach, now=now, limit=limit)
        return FeedRead(mentions, len(parsed.entries), parsed.version or "", problem, records.logged)
    finally:
        log.removeHandler(records)


class _Records(logging.Handler):
    """What this thread logs while it reads one feed (another thread's feed has its own)."""

    def __init__(self):
        super().__init__()
        self.logged: list[tuple[int, str]] = []
        self._thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self._thread:
            self.logged.append((record.levelno, record.getMessage()))


class ReadFailed(Exception):
    """Reading the feed raised; the message is the original's "ExceptionName: message"."""


def read_batch(items: list[tuple[bytes, dict]]) -> list[FeedRead | str]:
    """``read_feed`` for several feeds (one round trip to a worker for all): a FeedRead each, or the error
    that one raised as text, so one bad feed does not cost the others."""
    results: list[FeedRead | str] = []
    for body, how in items:
        try:
            results.append(read_feed(body, **how))
        except Exception as err:
            results.append(f"{type(err).__name__}: {err}")
    return results


def _worker_init(parent: int) -> None:
    """``parent``: the daemon's pid, as the daemon saw it. A daemon killed with SIGKILL cannot stop its workers,
    and they would wait for work for good (and keep multiprocessing's resource tracker alive with them)."""
    # Killed while this worker was still starting (importing its modules takes a while): its parent is
    # another process already, and watching that one would be watching the wrong process.
    if os.getppid() != parent:
        os._exit(0)
    # Ctrl-C reaches the whole process group: the daemon stops its workers itself, without a traceback each.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The worker only collects what it logs and returns it: nothing is printed from here.
    logging.getLogger().handlers.clear()
    log.propagate = False
    # Polling, not PR_SET_PDEATHSIG: that signal comes when the *thread* that started the worker ends, and the
    # pool starts its workers from whichever fetch thread submitted first.
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True, name="parent-watch").start()


def _exit_with_parent(parent: int) -> None:
    while True:
        time.sleep(PARENT_CHECK_SECONDS)
        if os.getppid() != parent:
            os._exit(0)


class Reading:
    """A feed on its way through a worker; ``result()`` waits for it."""

    def __init__(self, body: bytes, how: dict, done: FeedRead | None = None):
        self.body, self.how = body, how
        self.future: Future | None = None
        self.index = 0
        self._done = done

    def result(self) -> FeedRead:
        if self._done is None:
            try:
                outcome = self.future.result()[self.index]
            except BrokenProcessPool:
                log.warning("a feed reader process stopped; reading this feed in the daemon's own process")
                outcome = read_feed(self.body, **self.how)
                outcome.logged = []  # logged here already
            if isinstance(outcome, str):
                raise ReadFailed(outcome)
            for level, message in outcome.logged:
                log.log(level, "%s", message)
            self._done = outcome
        return self._done


class FeedReaders:
    """Worker processes (one per core) that read fetched feeds while the fetch threads go on fetching.

    ``submit`` hands a feed's bytes over and returns at once; feeds go to a worker ``BATCH`` at a time (one
    round trip each) and ``flush`` sends what is left when the fetching is done. The pool starts at the first
    feed that needs reading and lives until ``close``. With one core each feed is read in the calling thread.
    """

    BATCH = 16

    def __init__(self, processes: int | None = None):
        self.processes = processes if processes is not None else (os.cpu_count() or 1)
        self._pool: ProcessPoolExecutor | None = None
        self._waiting: list[Reading] = []
        self._lock = threading.Lock()

    def submit(self, body: bytes, **how) -> Reading:
        if self.processes < 2:
            return Reading(body, how, done=read_feed(body, **how))  # what it logged went out as it read
        reading = Reading(body, how)
        with self._lock:
            self._waiting.append(reading)
            if len(self._waiting) >= self.BATCH:
                self._send()
        return reading

    def flush(self) -> None:
        with self._lock:
            if self._waiting:
                self._send()

    def _send(self) -> None:
        batch, self._waiting = self._waiting, []
        if self._pool is None:
            # spawn: the source's process has threads (fetching, the scheduler), which fork would copy in
            # whatever state they are.
            self._pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_worker_init, initargs=(os.getpid(),))
        try:
            future = self._pool.submit(read_batch, [(r.body, r.how) for r in batch])
        except BrokenProcessPool:
            self._pool = None  # a new pool for the next batch; this one is read here
            future = Future()
            future.set_exception(BrokenProcessPool("the feed reader pool stopped"))
        for index, reading in enumerate(batch):
            reading.future, reading.index = future, index

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

"""Feeds fetched and read on every core: each worker process makes whole exchanges with its own client.

httpx (a conditional GET costs about half a millisecond of CPU on loopback),
feedparser and html2text are pure Python: in the source's process, sharing
one interpreter lock with every fetch thread, they used one core. So a feed's
whole exchange (``feed_exchange.exchange``: its request, and for a 200 the
reading of its body) runs in a worker process, one per core, each with its own
``httpx.Client`` from the source's client factory and so its own keep-alive
pool. The body is read where it was fetched and never crosses processes; the
``Mention``s come back.

The source's process keeps the scheduling: its lanes (``run_per_host``) are
threads that only hand a feed to a worker and wait, one feed in flight per
lane. So the politeness rules hold across processes as they did across
threads (at most ``per_host`` requests to a host, ``workers`` in all, one
hanging feed holding only its own lane), the host's timeouts are counted in
one place, and the source knows which feeds each worker holds: if a worker
dies, its feeds are fetched again in the source's process, with a warning
that says why, and nothing is lost. A worker takes up to ``threads`` feeds at
once, so a hanging feed holds a thread of it, not the process.

What a worker logs while reading (an entry skipped) is logged again here,
where the daemon's handlers and redaction are. With one core, or until the
workers have started (importing their modules takes a moment), feeds are
fetched in the calling thread with the source's own client: the result is the
same either way (``tests/test_rss.py`` polls feeds both ways).
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

import httpx

from .feed_exchange import Exchange, FeedRequest, exchange

log = logging.getLogger("complaint_monitor.sources.rss")

PARENT_CHECK_SECONDS = 1.0  # how often a worker looks whether the daemon still lives
STOP_SECONDS = 5.0  # how long ``close`` waits for a worker to exit before killing it

ClientFactory = Callable[[], httpx.Client]


class WorkerStopped(Exception):
    """The worker process holding the feed exited before answering."""


class FeedWorkers:
    """Worker processes (``processes``, one per core by default) that make feeds' exchanges.

    ``start`` (at each poll) starts the missing ones without waiting for them; ``exchange`` sends a feed to
    the ready worker with the fewest feeds in flight and waits for its answer, or makes the exchange in the
    calling thread when there is none. ``client_factory`` must pickle (a module-level function, a
    ``functools.partial`` of one): each worker calls it once for its own client.
    """

    def __init__(self, client_factory: ClientFactory, *, processes: int | None = None, threads: int):
        self.processes = processes if processes is not None else (os.cpu_count() or 1)
        self._client_factory = client_factory
        self._threads = threads
        self._workers: list[_Worker] = []
        self._client: httpx.Client | None = None  # this process's own, made when first needed
        self._served: Counter[int] = Counter()  # exchanges answered, by worker pid
        self._lock = threading.Lock()

    def start(self) -> None:
        if self.processes < 2:
            return
        with self._lock:
            self._workers = [w for w in self._workers if w.alive]
            while len(self._workers) < self.processes:
                self._workers.append(_Worker(self._client_factory, threads=self._threads))

    def wait_ready(self, timeout: float = 60) -> bool:
        """Until every worker has started (its modules imported, its client made)."""
        give_up_at = time.monotonic() + timeout
        while not all(w.ready for w in self._workers):
            if time.monotonic() > give_up_at:
                return False
            time.sleep(0.02)
        return True

    @property
    def served(self) -> dict[int, int]:
        """Exchanges each worker process (by pid) made; those made in this process are not counted."""
        with self._lock:
            return dict(self._served)

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers if w.alive]

    def exchange(self, request: FeedRequest) -> Exchange:
        worker = self._pick()
        if worker is not None:
            try:
                answer = worker.call(request)
            except WorkerStopped as err:
                log.warning("feed %s: %s; fetching it again in the daemon's own process", request.feed_id, err)
            else:
                with self._lock:
                    self._served[worker.process.pid] += 1
                if answer.read is not None:
                    for level, message in answer.read.logged:
                        log.log(level, "%s", message)
                return answer
        return exchange(self._own_client(), request)  # what reading logs goes out as it reads

    def _pick(self) -> _Worker | None:
        with self._lock:
            ready = [w for w in self._workers if w.ready and w.alive]
            return min(ready, key=lambda w: w.in_flight, default=None)

    def _own_client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = self._client_factory()
            return self._client

    def close(self) -> None:
        with self._lock:
            workers, self._workers = self._workers, []
            client, self._client = self._client, None
        for worker in workers:
            worker.stop()
        for worker in workers:
            worker.join()
        if client is not None:
            client.close()


class _Worker:
    """One worker process and the pipe to it; a thread here receives its answers."""

    def __init__(self, client_factory: ClientFactory, *, threads: int):
        # spawn: the source's process has threads (fetching, the scheduler), which fork would copy in whatever
        # state they are.
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, client_factory, threads, os.getpid()),
                                       name="feed-worker", daemon=True)
        self.process.start()
        child.close()
        self.ready = False
        self.alive = True
        self._stopping = False
        self._calls: dict[int, Future] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()
        threading.Thread(target=self._receive, name=f"feed-worker-{self.process.pid}", daemon=True).start()

    @property
    def in_flight(self) -> int:
        return len(self._calls)

    def call(self, request: FeedRequest) -> Exchange:
        future: Future = Future()
        with self._lock:
            if not self.alive:
                raise WorkerStopped(f"the feed worker process {self.process.pid} had stopped")
            call_id = next(self._ids)
            self._calls[call_id] = future
            try:
                self._conn.send((call_id, request))
            except OSError:
                pass  # the worker is gone: ``_receive`` sees its end and fails the calls it held, this one too
        return future.result()

    def _receive(self) -> None:
        try:
            while True:
                message = self._conn.recv()
                if message == "ready":
                    self.ready = True
                else:
                    call_id, answer = message
                    with self._lock:
                        future = self._calls.pop(call_id)
                    future.set_result(answer)
        except (EOFError, OSError):
            pass
        with self._lock:
            self.alive = False
            calls, self._calls = self._calls, {}
        self.process.join(timeout=STOP_SECONDS)
        reason = f"the feed worker process {self.process.pid} stopped (exit code {self.process.exitcode})"
        if not self._stopping:
            log.warning("%s; it is started again at the next poll", reason)
        for future in calls.values():
            future.set_exception(WorkerStopped(f"{reason} while fetching it"))

    def stop(self) -> None:
        self._stopping = True
        try:
            with self._lock:
                self._conn.send(None)
        except OSError:
            pass

    def join(self) -> None:
        self.process.join(timeout=STOP_SECONDS)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self._conn.close()


def _serve(conn, client_factory: ClientFactory, threads: int, parent: int) -> None:
    """A worker process: makes the exchanges sent to it, up to ``threads`` at once, until told to stop."""
    _worker_init(parent)
    client = client_factory()
    sending = threading.Lock()

    def answer(call_id: int, request: FeedRequest) -> None:
        try:
            result = exchange(client, request)
        except Exception as err:  # exchange itself never raises; this is the last guard against a lost feed
            result = Exchange(error=f"{type(err).__name__}: {err}")
        with sending:
            try:
                conn.send((call_id, result))
            except Exception as err:  # an answer that does not pickle still answers
                conn.send((call_id, Exchange(error=f"{type(err).__name__}: {err}")))

    conn.send("ready")
    pool = ThreadPoolExecutor(threads, thread_name_prefix="feed")
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            message = None
        if message is None:
            # Nothing to flush: an exchange still in flight is one the daemon no longer waits for.
            os._exit(0)
        pool.submit(answer, *message)


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
    # workers are started from whichever thread runs the poll.
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True, name="parent-watch").start()


def _exit_with_parent(parent: int) -> None:
    while True:
        time.sleep(PARENT_CHECK_SECONDS)
        if os.getppid() != parent:
            os._exit(0)

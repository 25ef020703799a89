"""Feeds fetched and read on every core: worker processes that run the poll's lanes with their own clients.

httpx (a conditional GET costs about half a millisecond of CPU on loopback),
feedparser and html2text are pure Python: in the source's process, sharing
one interpreter lock with every fetch thread, they used one core. So the
poll's lanes (``feed_lanes``) run in worker processes, one per core, each with
its own ``httpx.Client`` from the source's client factory and so its own
keep-alive pool. A lane makes each feed's whole exchange
(``feed_exchange.exchange``: its request, and for a 200 the reading of its
body) where it runs, so a body never crosses processes and no feed waits for
a round trip to the source's process: lanes take their host's next feed from
counters every process shares. Answers stream back to the source's process a
few milliseconds' worth at a time (``_Batches``), and it settles each feed
(its schedule, its logs).

The politeness rules hold across processes as they did across threads (at
most ``per_host`` requests to a host, ``workers`` in all, a hanging feed
holding only its own lane, a host skipped after its timeouts). The claims
record which process took each feed: if a worker dies, the feeds it held or
would have taken are fetched in the source's process after the others, with a
warning saying why, and no feed is lost; at the next poll every worker starts
afresh (it may have died holding the claims lock).

What a worker logs while reading (an entry skipped) is logged again here,
where the daemon's handlers and redaction are. With one core, or when no
worker has started, the lanes run here with the source's own client (and
while some are still starting, the share of those): the result is the same
either way (``tests/test_rss.py`` polls feeds both ways).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections import Counter
from typing import Callable

import httpx
from multiprocessing.reduction import ForkingPickler

from .feed_exchange import Exchange, FeedRequest, exchange
from .feed_lanes import Claims, Plan, run_lanes

log = logging.getLogger("complaint_monitor.sources.rss")

PARENT_CHECK_SECONDS = 1.0  # how often a worker looks whether the daemon still lives
STOP_SECONDS = 5.0  # how long ``close`` waits for a worker to exit before killing it
START_SECONDS = 60.0  # how long ``wait_ready`` waits for starting workers (importing their modules)
BATCH_SECONDS = 0.005  # how long a worker gathers answers before sending them

ClientFactory = Callable[[], httpx.Client]
Answered = Callable[[int, Exchange], None]


class FeedWorkers:
    """Worker processes (``processes``, one per core by default) that run a poll's lanes.

    ``start`` (at each poll) starts them if they are not running; ``run`` runs one poll's feeds and returns
    when each was answered. ``client_factory`` must pickle (a module-level function, a ``functools.partial``
    of one): each worker calls it once for its own client. ``capacity``: the most feeds a poll has.
    """

    def __init__(self, client_factory: ClientFactory, *, processes: int | None = None, capacity: int):
        self.processes = processes if processes is not None else (os.cpu_count() or 1)
        self._client_factory = client_factory
        self._slots = 3 * max(1, capacity)  # Plan.slots() of a poll of every feed, each on its own host
        self._workers: list[_Worker] = []
        self._shared: tuple | None = None  # the claims' array and lock the current workers were given
        self._inbox: queue.Queue = queue.Queue()  # what the workers answer, from each one's receiving thread
        # This process's own, for polls while no worker is ready. Made now: a client loads its TLS certificates,
        # which the first poll (while the workers start and take the CPU) should not wait for.
        self._client = client_factory()
        self._served: Counter[int] = Counter()  # feeds answered, by worker pid
        self._polls = 0

    def start(self) -> None:
        if self.processes < 2:
            return
        if any(not w.alive for w in self._workers):
            self._stop(self._workers)  # one died, perhaps holding the claims lock: all start afresh
            self._workers = []
        if not self._workers:
            context = multiprocessing.get_context("spawn")
            self._shared = (context.RawArray("q", self._slots), context.Lock())
            self._workers = [_Worker(slot, self._client_factory, self._shared, self._inbox)
                             for slot in range(1, self.processes + 1)]

    def wait_ready(self, timeout: float = START_SECONDS) -> bool:
        """Until every worker has started (its modules imported, its client made) or stopped."""
        give_up_at = time.monotonic() + timeout
        while not all(w.ready or not w.alive for w in self._workers):
            if time.monotonic() > give_up_at:
                return False
            time.sleep(0.01)
        return all(w.ready for w in self._workers)

    @property
    def served(self) -> dict[int, int]:
        """Feeds each worker process (by pid) answered; those answered in this process are not counted."""
        return dict(self._served)

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers if w.alive]

    def run(self, requests: list[FeedRequest], hosts: list[str], *, per_host: int, workers: int, skip_after: int,
            answered: Answered) -> None:
        """Each request's exchange, at most ``per_host`` at once per host (``hosts``: each request's) and
        ``workers`` in all, handed to ``answered(index, exchange)`` as it comes back: in this thread, or in a
        lane's when the lanes run here."""
        plan = Plan.of(hosts)
        alive = [w for w in self._workers if w.alive]
        ready = [w for w in alive if w.ready][:workers]
        left, timeouts, why = range(len(requests)), None, {}
        if ready:
            # Workers still starting (the first poll after start-up) are not waited for: this process runs
            # their share of the lanes.
            if len(ready) < min(len(alive), workers):
                ready.append(_Here(self._shared, self._inbox, self._client))
            left, timeouts, why = self._run_in(ready, plan, requests, per_host=per_host, workers=workers,
                                               skip_after=skip_after, answered=answered)
        for index in left if why else ():
            log.warning("feed %s: %s; fetching it in the daemon's own process", requests[index].feed_id, why[index])
        if left:
            self._run_here([requests[i] for i in left], [hosts[i] for i in left], per_host=per_host,
                           workers=workers, skip_after=skip_after, timeouts=timeouts,
                           answered=lambda index, answer: answered(left[index], answer))

    def _run_in(self, ready: list[_Worker | _Here], plan: Plan, requests: list[FeedRequest], *, per_host: int,
                workers: int, skip_after: int, answered: Answered) -> tuple[list[int], dict[str, int], dict[int, str]]:
        """The poll in the worker processes; what they left (a worker died), the hosts' timeouts, and why."""
        claims = Claims(plan, *self._shared, skip_after=skip_after)
        claims.reset()
        self._polls += 1
        lanes = plan.lanes(per_host)
        pending = set()
        for rank, worker in enumerate(ready):
            its_lanes = lanes[rank::len(ready)]
            threads = workers // len(ready) + (rank < workers % len(ready))  # ``workers`` threads in all
            its_feeds = {i: requests[i] for host in set(its_lanes) for i in plan.order[host]}
            if its_lanes and worker.send(("poll", self._polls, plan, its_feeds, its_lanes, threads, skip_after)):
                pending.add(worker)
        done: set[int] = set()
        stopped: dict[int, str] = {}  # why, by the slot of the worker that stopped
        while pending:
            worker, messages = self._inbox.get()
            for kind, *rest in messages:
                if kind == "stopped":
                    if worker in pending:  # not one stopped after an earlier poll, whose slot a new worker took
                        stopped[worker.slot] = rest[0]
                        pending.discard(worker)
                elif rest[0] != self._polls:
                    continue  # a poll that ended when a worker stopped (it never answered what it held)
                elif kind == "finished":
                    pending.discard(worker)
                elif rest[1] not in done:
                    index, answer = rest[1:]
                    done.add(index)
                    if isinstance(worker, _Here):  # what it logged went out as it read
                        answered(index, answer)
                        continue
                    self._served[worker.process.pid] += 1
                    if answer.read is not None:
                        for level, message in answer.read.logged:
                            log.log(level, "%s", message)
                    answered(index, answer)
        left = [i for i in range(plan.feeds) if i not in done]
        anyone = "; ".join(stopped.values()) or "the worker processes did not take it"
        why = {i: f"{stopped[claims.taker(i)]} while fetching it" if claims.taker(i) in stopped
               else f"{anyone} before it was fetched" for i in left}
        return left, dict(zip(plan.hosts, claims.timeouts())), why

    def _run_here(self, requests: list[FeedRequest], hosts: list[str], *, per_host: int, workers: int,
                  skip_after: int, timeouts: dict[str, int] | None, answered: Answered) -> None:
        plan = Plan.of(hosts)
        claims = Claims.local(plan, skip_after=skip_after, timeouts=[(timeouts or {}).get(h, 0) for h in plan.hosts])
        client = self._client
        # What reading logs goes out as it reads, here.
        run_lanes(claims, plan.lanes(per_host), threads=workers, taker=0,
                  exchange=lambda index: exchange(client, requests[index]), answered=answered)

    def close(self) -> None:
        workers, self._workers = self._workers, []
        self._stop(workers)
        self._client.close()

    @staticmethod
    def _stop(workers: list[_Worker]) -> None:
        for worker in workers:
            worker.stop()
        for worker in workers:
            worker.join()


class _Worker:
    """One worker process and the pipe to it; a thread here passes what it sends on to the inbox."""

    def __init__(self, slot: int, client_factory: ClientFactory, shared: tuple, inbox: queue.Queue):
        # spawn: the source's process has threads (fetching, the scheduler), which fork would copy in whatever
        # state they are.
        context = multiprocessing.get_context("spawn")
        self.slot = slot  # its number in the claims (0 is the source's own process)
        self._conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(slot, child, client_factory, *shared, os.getpid()),
                                       name=f"feed-worker-{slot}", daemon=True)
        self.process.start()
        child.close()
        self.ready = False
        self.alive = True
        self._stopping = False
        self._sending = threading.Lock()
        threading.Thread(target=self._receive, args=(inbox,), name=f"feed-worker-{slot}", daemon=True).start()

    def send(self, message) -> bool:
        try:
            with self._sending:
                self._conn.send(message)
            return True
        except OSError:
            return False  # it stopped: its receiving thread says so

    def _receive(self, inbox: queue.Queue) -> None:
        try:
            while True:
                message = self._conn.recv()
                if message == ("ready",):
                    self.ready = True
                else:
                    inbox.put((self, message))
        except (EOFError, OSError):
            pass
        self.alive = False
        self.process.join(timeout=STOP_SECONDS)
        reason = f"the feed worker process {self.process.pid} stopped (exit code {self.process.exitcode})"
        if not self._stopping:
            log.warning("%s; the workers start afresh at the next poll", reason)
        inbox.put((self, [("stopped", reason)]))

    def stop(self) -> None:
        self._stopping = True
        self.send(None)

    def join(self) -> None:
        self.process.join(timeout=STOP_SECONDS)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self._conn.close()


class _Here:
    """This process as one more taker of lanes, with its own client, while the workers are still starting."""

    slot = 0

    def __init__(self, shared: tuple, inbox: queue.Queue, client: httpx.Client):
        self._shared, self._inbox, self._client = shared, inbox, client

    def send(self, message) -> bool:
        threading.Thread(target=_run_poll, args=message[1:], name="poll", daemon=True,
                         kwargs={"shared": self._shared, "client": self._client, "taker": self.slot,
                                 "send": lambda answer: self._inbox.put((self, [answer]))}).start()
        return True


def _serve(slot: int, conn, client_factory: ClientFactory, values, lock, parent: int) -> None:
    """A worker process: runs the lanes of each poll sent to it, until told to stop."""
    _worker_init(parent)
    client = client_factory()
    conn.send(("ready",))
    send = _Batches(conn).put
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            message = None
        if message is None:
            # Nothing to flush: an exchange still in flight is one the daemon no longer waits for.
            os._exit(0)
        threading.Thread(target=_run_poll, args=message[1:], name="poll", daemon=True,
                         kwargs={"shared": (values, lock), "client": client, "taker": slot, "send": send}).start()


class _Batches:
    """What a worker answers, sent to the daemon a few milliseconds' worth at a time, in order.

    Every message costs the daemon a wake-up of its receiving thread and a hand-over to the polling one. Sent
    one by one, the 1,000 answers of a quiet cycle (all 304s) cost the daemon 0.14-0.18 s of CPU, on the same
    two cores the workers' requests need; a few at a time, 0.07-0.10 s."""

    def __init__(self, conn):
        self._conn = conn
        self._waiting: list = []
        self._ready = threading.Condition()
        threading.Thread(target=self._send, name="answers", daemon=True).start()

    def put(self, message) -> None:
        with self._ready:
            self._waiting.append(message)
            if len(self._waiting) == 1:
                self._ready.notify()

    def _send(self) -> None:
        while True:
            with self._ready:
                self._ready.wait_for(lambda: self._waiting)
            time.sleep(BATCH_SECONDS)  # let a few more answers come
            with self._ready:
                batch, self._waiting = self._waiting, []
            try:
                payload = ForkingPickler.dumps(batch)  # what ``conn.send`` would write
            except Exception:  # an answer that does not pickle still answers, as that feed's failure
                payload = ForkingPickler.dumps([_picklable(message) for message in batch])
            try:
                self._conn.send_bytes(payload)
            except OSError:
                os._exit(0)  # the daemon is gone


def _picklable(message: tuple) -> tuple:
    try:
        ForkingPickler.dumps(message)
        return message
    except Exception as err:
        return (*message[:3], Exchange(error=f"{type(err).__name__}: {err}"))


def _run_poll(number: int, plan: Plan, requests: dict[int, FeedRequest], lanes: list[int], threads: int,
              skip_after: int, *, shared: tuple, client: httpx.Client, taker: int, send: Callable) -> None:
    """One poll's ``lanes`` of a taker (a worker process, or the daemon's while they start): each answer, then
    "finished", goes to ``send``."""

    def answered(index: int, answer: Exchange) -> None:
        send(("done", number, index, answer))

    def exchange_of(index: int) -> Exchange:
        try:
            return exchange(client, requests[index])
        except Exception as err:  # exchange never raises; this is the last guard against a lost feed
            return Exchange(error=f"{type(err).__name__}: {err}")

    try:
        run_lanes(Claims(plan, *shared, skip_after=skip_after), lanes, threads=threads, taker=taker,
                  exchange=exchange_of, answered=answered)
    finally:  # whatever went wrong, the daemon learns these lanes are done (what they left, it fetches)
        send(("finished", number))


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

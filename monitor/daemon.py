"""The long-running daemon: APScheduler runs every periodic job; signals stop it cleanly.

Jobs: one poll per source at its interval with jitter (a source polls its own
feed groups or listings inside that job; growth re-reads come back from the
same poll as ``Poll.updates``), the outbox sender, the digest, and the
retention prune. Every job may run at the same time as every other (the
thread pool has one thread per job), so a slow source never delays the rest.

Shutdown: the signal handler only records the signal. Stopping the scheduler
from inside the handler could deadlock: the handler runs on the main thread
in the middle of whatever it was doing, possibly holding a lock that a
finishing job needs (python/cpython#121649 shows this for ThreadPoolExecutor).
So the scheduler runs in the background and the main thread waits for the
flag, then shuts the scheduler down with ``wait=True``: running jobs finish
their step, nothing new starts. A second signal ends the process at once,
which is safe as well: every mention is committed with its alerts, and each
cursor only after what it covers (see ``Pipeline``). A repeat within a second
is the same request delivered twice (make passes a SIGTERM on to its child).
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.background import BackgroundScheduler

from .app import Monitor
from .config import Config
from .sharing import Heartbeat, is_shared_store

log = logging.getLogger("complaint_monitor.daemon")

# coalesce: many missed runs (a suspended laptop) become one run, not a burst.
# max_instances=1: a poll still running when its next time comes is not started twice.
# misfire_grace_time=None: a late run still runs however late it is; a number would
# make APScheduler drop it silently (its default is 1 second).
JOB_DEFAULTS = {"coalesce": True, "max_instances": 1, "misfire_grace_time": None}

SPIKE_CHECK_EVERY = 300
PRUNE_EVERY = 6 * 3600
PRUNE_FIRST_AFTER = 60  # not in the way of the first polls
MAX_JITTER = 30
EXIT_ALREADY_RUNNING = 3
# One stop request can arrive twice: `timeout 40 make run` (or systemd stopping a service's
# control group) signals make and the daemon, and make passes its SIGTERM on to the daemon too.
# A repeat this soon after the first is that echo, not an operator insisting.
REPEAT_SIGNAL_WINDOW = 1.0


class AlreadyRunning(RuntimeError):
    pass


class StoreLock:
    """One daemon per store: a second one would send every alert twice.

    flock is released by the kernel when the process dies, so a daemon killed
    with SIGKILL never leaves a stale lock behind.
    """

    def __init__(self, store_path: Path):
        self.store_path = Path(store_path)
        self.path = Path(f"{store_path}.lock")
        self._fd: int | None = None

    def __enter__(self) -> "StoreLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise AlreadyRunning(f"another complaint-monitor (pid {holder}) is already running on {self.store_path}"
                                 f" (lock {self.path}); stop it first, two daemons would send every alert twice"
                                 " (several daemons need a PostgreSQL store: README, \"Scaling out\")"
                                 ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


@dataclass(frozen=True)
class JobSpec:
    id: str
    name: str
    func: Callable[..., Any]
    seconds: float
    args: tuple = ()
    jitter: float | None = None
    first_run: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


def poll_then_wake(monitor: Monitor, name: str, wake_delivery: Callable[[], None]) -> None:
    """One poll; when it queued alerts the deliver job runs now, not up to ``send_interval`` later
    (the job itself sends, so there is still one sender)."""
    report = monitor.poll(name)
    if report.outcome is not None and report.outcome.alerts:
        wake_delivery()


def daemon_jobs(monitor: Monitor, *, wake_delivery: Callable[[], None] = lambda: None) -> list[JobSpec]:
    """Everything the daemon does periodically."""
    now = datetime.now(timezone.utc)
    config = monitor.config
    jobs = []
    for name, source in monitor.sources.items():
        # Jitter spreads sources that share an interval; small against the interval itself.
        jobs.append(JobSpec(id=f"poll:{name}", name=f"poll {name}", func=poll_then_wake,
                            args=(monitor, name, wake_delivery), seconds=source.interval,
                            jitter=min(MAX_JITTER, source.interval / 10), first_run=now))
    # Growth re-reads have no job of their own: adapters return fresh numbers for
    # stored items from their normal poll (Poll.updates), handled in Pipeline.process.
    jobs.append(JobSpec(id="deliver", name="deliver alerts", func=once(monitor, "deliver", monitor.deliver),
                        seconds=config.email.send_interval, first_run=now))
    if any(r.digest_below for r in config.responders):
        jobs.append(JobSpec(id="digest", name="send digests", func=once(monitor, "digest", monitor.deliver_digests),
                            seconds=min(300, config.email.digest_minutes * 60), first_run=now))
    jobs.append(JobSpec(id="prune", name="prune old snapshots",
                        func=once(monitor, "prune", monitor.prune, every=PRUNE_EVERY), seconds=PRUNE_EVERY,
                        first_run=now + timedelta(seconds=PRUNE_FIRST_AFTER)))
    # A storm of mentions is news even when each one alone is not: a spike raises the
    # priority of the brand's latest mentions, and the deliver job sends what rose.
    jobs.append(JobSpec(id="spikes", name="check brand spikes",
                        func=once(monitor, "spikes", monitor.check_spikes, every=SPIKE_CHECK_EVERY),
                        seconds=SPIKE_CHECK_EVERY, first_run=now + timedelta(seconds=SPIKE_CHECK_EVERY)))
    return jobs


def once(monitor: Monitor, job: str, func: Callable[[], Any], *, every: float = 0) -> Callable[[], Any]:
    """A job that must run once: with other daemons on the store, on one of them at a time, and with
    ``every`` once per period between them (a tick a little early still counts: 90% of it)."""
    if monitor.sharing is None:
        return func
    return monitor.sharing.once(job, func, every=every * 0.9)


class SkippedTickFilter(logging.Filter):
    """Drops APScheduler's warning that a run of one of ``job_ids`` was skipped because the last still runs.

    A source that paces itself (the site-wide Reddit stream) is asked every second so that it can read
    when it is due; a poll that takes longer than that makes the next tick a no-op by design, not news."""

    def __init__(self):
        super().__init__()
        self.job_ids: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        job = record.args[0] if isinstance(record.args, tuple) and record.args else None
        return not ("maximum number of running instances" in str(record.msg) and getattr(job, "id", None)
                    in self.job_ids)


# One filter on APScheduler's logger for the process (a test builds many schedulers).
SKIPPED_TICKS = SkippedTickFilter()
logging.getLogger("apscheduler.scheduler").addFilter(SKIPPED_TICKS)


def build_scheduler(monitor: Monitor) -> BackgroundScheduler:
    def move_deliver_to_now() -> None:
        try:
            scheduler.modify_job("deliver", next_run_time=datetime.now(timezone.utc))
        except (JobLookupError, SchedulerNotRunningError):
            pass  # shutting down: the alerts stay queued for the next start

    def wake_delivery() -> None:
        # Not from the job's own thread: shutdown(wait=True) holds the scheduler's job store lock while it
        # waits for running jobs, so a job that asked for that lock would never finish.
        threading.Thread(target=move_deliver_to_now, name="wake-deliver", daemon=True).start()

    jobs = daemon_jobs(monitor, wake_delivery=wake_delivery)
    scheduler = BackgroundScheduler(
        # One thread per job: no job ever waits in the pool's queue behind a slow one.
        executors={"default": ThreadPoolExecutor(max_workers=len(jobs))},
        job_defaults=JOB_DEFAULTS,
        timezone="UTC",
    )
    SKIPPED_TICKS.job_ids |= {f"poll:{name}" for name, source in monitor.sources.items()
                              if getattr(source, "paces_itself", False)}
    for job in jobs:
        scheduler.add_job(job.func, "interval", args=list(job.args), id=job.id, name=job.name,
                          seconds=job.seconds, jitter=job.jitter, next_run_time=job.first_run)
    return scheduler


class StopSignal:
    """Records SIGTERM/SIGINT; does nothing else inside the handler."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received: int | None = None
        self._received_at = 0.0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopSignal":
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        now = time.monotonic()
        if self.received is not None and now - self._received_at < REPEAT_SIGNAL_WINDOW:
            return
        if self.received is not None:
            # Second signal: the operator insists. Die of it; the store is consistent anyway.
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.received = signum
        self._received_at = now

    def wait(self, poll_seconds: float = 0.2) -> int:
        while self.received is None:
            time.sleep(poll_seconds)
        return self.received


def run(config: Config, *, monitor_factory: Callable[[Config], Monitor] = Monitor.from_config) -> None:
    """Run until SIGTERM or SIGINT; raises AlreadyRunning when another daemon holds a SQLite store.
    On a PostgreSQL store any number of daemons run; they share the work through leases."""
    # SQLite: one daemon, held by a file lock. PostgreSQL: the leases decide who does what.
    lock = nullcontext() if is_shared_store(config.store) else StoreLock(config.store_path)
    with lock, StopSignal() as stop:
        monitor = monitor_factory(config)
        try:
            with _heartbeat(monitor):
                _run_until_stopped(monitor, stop)
        finally:
            monitor.close()


def _heartbeat(monitor: Monitor):
    return Heartbeat(leases=monitor.sharing.leases) if monitor.sharing is not None else nullcontext()


def _run_until_stopped(monitor: Monitor, stop: StopSignal) -> None:
    config = monitor.config
    scheduler = build_scheduler(monitor)
    server = _start_metrics(monitor)
    scheduler.start()
    shared = f", daemon {monitor.sharing.identity} sharing the store" if monitor.sharing is not None else ""
    log.info("complaint-monitor running: sources %s, store %s, alerts via %s, jobs %s%s",
             ", ".join(monitor.sources) or "none", config.store_path,
             monitor.transport.description, ", ".join(job.id for job in scheduler.get_jobs()), shared)
    signum = stop.wait()
    log.info("received %s: stopping after the current step", signal.Signals(signum).name)
    scheduler.shutdown(wait=True)
    if server is not None:
        server.shutdown()
    log.info("stopped: %d alerts queued for the next start", monitor.store.pending_count())


def _start_metrics(monitor: Monitor):
    if monitor.metrics is None or monitor.config.metrics.port is None:
        return None
    return monitor.metrics.serve(monitor.config.metrics.port)

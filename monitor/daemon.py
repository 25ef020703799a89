"""The long-running daemon: APScheduler runs one job per source and the sender."""

from __future__ import annotations

import fcntl
import logging
import os
import signal
from pathlib import Path

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler

from .app import Monitor

log = logging.getLogger("complaint_monitor.daemon")

DELIVERY_INTERVAL = 30


class AlreadyRunning(RuntimeError):
    pass


class StoreLock:
    """One daemon per store: a second one would send every alert twice."""

    def __init__(self, store_path: Path):
        self.path = Path(f"{store_path}.lock")
        self._fd: int | None = None

    def __enter__(self) -> "StoreLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AlreadyRunning(f"another complaint-monitor is already running on {self.path.with_suffix('')}"
                                 f" (lock {self.path})") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def build_scheduler(monitor: Monitor) -> BlockingScheduler:
    scheduler = BlockingScheduler(
        executors={"default": ThreadPoolExecutor(max_workers=max(4, len(monitor.sources) + 2))},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
        timezone="UTC",
    )
    for name, source in monitor.sources.items():
        scheduler.add_job(monitor.poll, "interval", args=[name], id=f"poll:{name}", name=f"poll {name}",
                          seconds=source.interval, jitter=min(30, source.interval / 10), next_run_time=_now())
    scheduler.add_job(monitor.deliver, "interval", id="deliver", name="deliver alerts",
                      seconds=DELIVERY_INTERVAL, next_run_time=_now())
    if any(r.digest_below for r in monitor.config.responders):
        scheduler.add_job(monitor.deliver_digests, "interval", id="digest", name="send digests",
                          seconds=min(300, monitor.config.email.digest_minutes * 60))
    return scheduler


def _now():
    from datetime import datetime, timezone
    return datetime.now(timezone.utc)


def run(monitor: Monitor) -> None:
    with StoreLock(monitor.config.store_path):
        scheduler = build_scheduler(monitor)

        def stop(signum, frame):
            log.info("received %s: stopping after the current step", signal.Signals(signum).name)
            scheduler.shutdown(wait=True)  # lets running jobs finish their step

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        log.info("complaint-monitor running: sources %s, store %s, alerts via %s",
                 ", ".join(monitor.sources) or "none", monitor.config.store_path, monitor.transport.description)
        try:
            scheduler.start()
        finally:
            monitor.close()

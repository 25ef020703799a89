"""Run the real daemon (`python -m monitor.cli run`) as a child process, and wait for conditions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from tests.conftest import ROOT


def wait_for(condition: Callable[[], object], *, timeout: float = 30, what: str = "condition") -> object:
    """Poll until condition() is truthy; fail with `what` after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


class Daemon:
    """One run of the daemon; its log goes to a file so a full pipe can never block it."""

    def __init__(self, config: Path, log: Path):
        self.config = config
        self.log_path = log
        self._log = open(log, "ab")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen([sys.executable, "-m", "monitor.cli", "--config", str(config), "run"],
                                     cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_running(self, timeout: float = 60) -> None:
        wait_for(lambda: "complaint-monitor running" in self.log() or self.proc.poll() is not None,
                 timeout=timeout, what="the daemon to start")
        assert self.proc.poll() is None, self.log()

    def send(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._log.close()

    def wait(self, timeout: float = 60) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._log.close()

    def stop(self) -> None:
        """Clean-up for a test that failed half-way: never leave a daemon behind."""
        if self.proc.poll() is None:
            self.kill()
        self._log.close()

"""One line per event, key=value, and no secret ever written.

Every configured secret (Reddit client secret, SMTP password, anything from
an environment variable whose name looks secret) is replaced by ``***`` in
the finished line, tracebacks included: a filter on the message alone would
miss the secret that an exception's text carries.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Iterable

# Attributes a log call can attach with extra={...}; printed when present.
FIELDS = ("source", "feed", "listing", "alert", "mention", "recipient")


class EventFormatter(logging.Formatter):
    def __init__(self, secrets: Iterable[str] = ()):
        super().__init__()
        self.secrets: list[str] = []
        self.add_secrets(secrets)

    def add_secrets(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret containing another is replaced whole.
        found = {s for s in secrets if s and len(s) >= 4} | set(self.secrets)
        self.secrets = sorted(found, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def format(self, record: logging.LogRecord) -> str:
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        message = record.getMessage()
        parts = [f"{when} level={record.levelname.lower()} logger={record.name}"]
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                parts.append(f"{name}={_quote(str(value))}")
        parts.append(f"msg={_quote(message)}")
        if record.exc_info:
            parts.append(f"exc={_quote(self.formatException(record.exc_info))}")
        return self.redact(" ".join(parts))


def _quote(value: str) -> str:
    # One event, one line: newlines inside values are escaped, not printed.
    if value and not any(c in value for c in ' "=\n\r\t'):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def setup(*, verbose: bool = False, stream=None) -> EventFormatter:
    formatter = EventFormatter()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # Libraries log every request; our own lines say what matters.
    for noisy in ("httpx", "httpcore", "prawcore", "urllib3", "apscheduler.executors.default",
                  "apscheduler.scheduler", "mail.log"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return formatter


def config_secrets(config) -> list[str]:
    """Every value in the config that must never be printed."""
    found = []
    if config.email.smtp and config.email.smtp.password:
        found.append(config.email.smtp.password)
    for section in config.sources.values():
        for key, value in section.items():
            if isinstance(value, str) and any(w in key.lower() for w in ("secret", "password", "token", "key")):
                found.append(value)
    return found

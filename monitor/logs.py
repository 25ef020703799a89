"""One line per event, key=value, and no secret ever written.

Every configured secret (Reddit client secret, SMTP password, anything from
an environment variable whose name looks secret) is replaced by ``***`` in
the finished line, tracebacks included: a filter on the message alone would
miss the secret that an exception's text carries.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from typing import Any, Iterable

from .links import SECRET_PARAM_NAME

# Attributes a log call can attach with extra={...}; printed when present.
FIELDS = ("source", "feed", "listing", "alert", "mention", "recipient")


# Secrets that are not in the config but travel inside text: a password in a
# URL, a token in a query string (a private feed's ?token=...), a bearer header.
_URL_PASSWORD = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^/\s:@'\"]+:)[^@\s/'\"]+@")
_SECRET_PARAM = re.compile(r"(?i)([?&;]" + SECRET_PARAM_NAME + r"=)[^&#\s'\"]+")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[a-z0-9._~+/=-]{8,}")
_SECRET_NAME = re.compile(r"(?i)(secret|password|passwd|token|api_?key|apikey|private_?key|^key$|_key$|authorization)")


class Redactor:
    """Replaces every known secret, and secret-shaped parts of URLs and headers, with ``***``."""

    def __init__(self, secrets: Iterable[str] = ()):
        self.secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret containing another is replaced whole.
        found = {s for s in secrets if s and len(s) >= 4} | set(self.secrets)
        self.secrets = sorted(found, key=len, reverse=True)
        # Whole tokens only: a short secret ("test") must not blank part of a word ("latest", "testing").
        self._known = re.compile("|".join(_whole_token(s) for s in self.secrets)) if self.secrets else None

    def __call__(self, text: str) -> str:
        if self._known is not None:
            text = self._known.sub("***", text)
        text = _URL_PASSWORD.sub(r"\1***@", text)
        text = _SECRET_PARAM.sub(r"\1***", text)
        return _BEARER.sub(r"\1 ***", text)


def _whole_token(secret: str) -> str:
    """A pattern for ``secret`` where no word character goes on from its first or last one."""
    before = r"(?<!\w)" if re.match(r"\w", secret[0]) else ""
    after = r"(?!\w)" if re.match(r"\w", secret[-1]) else ""
    return before + re.escape(secret) + after


class EventFormatter(logging.Formatter):
    def __init__(self, secrets: Iterable[str] = ()):
        super().__init__()
        self.redact = Redactor(secrets)

    def add_secrets(self, secrets: Iterable[str]) -> None:
        self.redact.add(secrets)

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
    for noisy in ("httpx", "httpcore", "urllib3", "apscheduler.executors.default",
                  "apscheduler.scheduler", "mail.log", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # prawcore warns at every retry with a nested urllib3 repr; a listing that still fails after
    # the retries is logged once by the Reddit source, with its reason.
    logging.getLogger("prawcore").setLevel(logging.DEBUG if verbose else logging.ERROR)
    return formatter


def config_secrets(config, environ=os.environ) -> list[str]:
    """Every value that must never be printed: secret-named config values and environment variables."""
    found = []
    if config.email.smtp and config.email.smtp.password:
        found.append(config.email.smtp.password)
    _secret_values(config.sources, secret=False, found=found)
    # ${VAR} references put environment values into the config; any secret-named
    # variable is withheld too, whichever key it ended up under.
    found.extend(v for k, v in environ.items() if _SECRET_NAME.search(k) and len(v) >= 6)
    return found


def _secret_values(value: Any, *, secret: bool, found: list[str]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _secret_values(item, secret=secret or bool(_SECRET_NAME.search(str(key))), found=found)
    elif isinstance(value, list):
        for item in value:
            _secret_values(item, secret=secret, found=found)
    elif isinstance(value, str) and secret:
        found.append(value)

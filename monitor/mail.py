"""Render alert emails and hand them to a transport.

Everything in an alert comes from strangers on the internet, so:
- header values are cleaned before they reach the ``email`` package: no
  control characters and no encoded-word openers (``=?``), because Python
  3.11.7's header folding can turn an encoded CR/LF into a real header
  (CVE-2024-6923);
- the HTML body is rendered by jinja2 with autoescape, so markup in a post
  shows as text;
- the finished message is parsed back and refused if it grew a header.
"""

from __future__ import annotations

import email.policy
import os
import smtplib
import ssl as ssl_module
import tempfile
import unicodedata
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import formatdate
from pathlib import Path
from typing import Any, Callable, Protocol

import jinja2

from .config import EmailSettings, SmtpSettings

SUBJECT_WORDS_LIMIT = 90
BODY_LIMIT = 4000  # characters of the post quoted in an email; the link has the rest


def header_safe(value: str | None, limit: int = 200) -> str:
    """One line of printable text, with no way to start an encoded word."""
    if not value:
        return ""
    cleaned = []
    for ch in value:
        category = unicodedata.category(ch)
        # Cc: controls (CR, LF, TAB, NUL...), Zl/Zp: Unicode line and paragraph separators.
        cleaned.append(" " if category in ("Cc", "Zl", "Zp") else ch)
    text = " ".join("".join(cleaned).split())
    text = text.replace("=?", "= ?").replace("?=", "? =")
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def trim(text: str, limit: int = BODY_LIMIT) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ", limit - 200)
    return (cut[:space] if space > 0 else cut).rstrip() + f" … [{len(text) - limit:,} more characters at the link]"


_templates = Path(__file__).parent / "templates"
_html_env = jinja2.Environment(loader=jinja2.FileSystemLoader(_templates), autoescape=True,
                               undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_text_env = jinja2.Environment(loader=jinja2.FileSystemLoader(_templates), autoescape=False,
                               undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                               keep_trailing_newline=True)


def render(template: str, context: dict[str, Any]) -> tuple[str, str]:
    """(plain text, HTML) bodies of ``template`` (``alert`` -> alert.txt and alert.html)."""
    return (_text_env.get_template(f"{template}.txt").render(**context),
            _html_env.get_template(f"{template}.html").render(**context))


def build_message(*, sender: str, recipient: str, subject: str, text: str, html: str, message_id: str,
                  in_reply_to: str | None = None, references: list[str] | None = None,
                  date: float | None = None, thread_topic: str | None = None) -> EmailMessage:
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = header_safe(sender)
    msg["To"] = header_safe(recipient)
    msg["Subject"] = header_safe(subject)
    msg["Date"] = formatdate(date, usegmt=True)
    msg["Message-ID"] = header_safe(message_id)
    if in_reply_to:
        msg["In-Reply-To"] = header_safe(in_reply_to)
        msg["References"] = header_safe(" ".join(references or [in_reply_to]), limit=2000)
    if thread_topic:
        # Outlook groups a conversation by this topic, so the changing [P..] of a subject does not split it.
        msg["Thread-Topic"] = header_safe(thread_topic)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    _refuse_injected_headers(msg)
    return msg


def _refuse_injected_headers(msg: EmailMessage) -> None:
    expected = [k.lower() for k in msg.keys()]
    parsed = BytesParser(policy=email.policy.default).parsebytes(msg.as_bytes())
    found = [k.lower() for k in parsed.keys()]
    if found != expected:
        raise ValueError(f"refusing an email whose headers changed when serialised: {found} != {expected}")


class Transport(Protocol):
    description: str

    def send(self, msg: EmailMessage) -> None: ...


SmtpFactory = Callable[[], smtplib.SMTP]


def tls_context(settings: SmtpSettings) -> ssl_module.SSLContext:
    # Certificates are always verified: an alert travels with a stranger's words and a responder's address.
    return ssl_module.create_default_context(cafile=settings.ca_file)


def smtp_factory(settings: SmtpSettings) -> SmtpFactory:
    def connect() -> smtplib.SMTP:
        if settings.ssl:
            return smtplib.SMTP_SSL(settings.host, settings.port, timeout=settings.timeout,
                                    context=tls_context(settings))
        return smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
    return connect


class SmtpTransport:
    def __init__(self, *, settings: SmtpSettings, connect: SmtpFactory | None = None):
        self.settings = settings
        self._connect = connect or smtp_factory(settings)
        self.description = f"SMTP {settings.host}:{settings.port}"

    def send(self, msg: EmailMessage) -> None:
        with self._connect() as smtp:
            if self.settings.starttls and not self.settings.ssl:
                smtp.starttls(context=tls_context(self.settings))
            if self.settings.username:
                smtp.login(self.settings.username, self.settings.password or "")
            smtp.send_message(msg)


class FolderTransport:
    """With no SMTP configured, each email becomes an .eml file an operator can open."""

    def __init__(self, *, folder: Path):
        self.folder = folder
        self.description = f"folder {folder}"

    def send(self, msg: EmailMessage) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = "".join(c if c.isalnum() or c in "-." else "_" for c in str(msg["Message-ID"]).strip("<>"))
        target = self.folder / f"{name}.eml"
        # Written whole or not at all; a resend of the same alert overwrites its own file.
        fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(msg.as_bytes())
        os.replace(tmp, target)


def transport_for(settings: EmailSettings, *, base_dir: Path, connect: SmtpFactory | None = None) -> Transport:
    if settings.smtp is not None:
        return SmtpTransport(settings=settings.smtp, connect=connect)
    folder = Path(settings.outbox_dir)
    return FolderTransport(folder=folder if folder.is_absolute() else base_dir / folder)

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
import threading
import unicodedata
from contextlib import contextmanager, nullcontext
from email.headerregistry import HeaderRegistry
from email.message import EmailMessage
from email.parser import BytesHeaderParser, BytesParser
from email.utils import getaddresses
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, Protocol

import jinja2

from .config import EmailSettings, SmtpSettings
from .mail_fast import alternative_wire, header_date, is_bare_address

SUBJECT_WORDS_LIMIT = 90
BODY_LIMIT = 4000  # characters of the post quoted in an email; the link has the rest


def header_safe(value: str | None, limit: int = 200) -> str:
    """One line of printable text, with no way to start an encoded word."""
    if not value:
        return ""
    if value.isprintable():  # no Cc, Zl or Zp in it (nor other non-printables): nothing to replace
        text = " ".join(value.split())
    else:
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


def references_value(message_ids: list[str], *, limit: int = 2000) -> str:
    """The References header of a reply: whole Message-IDs only. A thread too long for ``limit`` keeps its
    first email (the root clients thread on) and as many of the latest as fit: cutting the joined string
    would end the header in half an id, which no client can match."""
    ids = [safe for message_id in message_ids if (safe := header_safe(message_id))]
    if len(" ".join(ids)) <= limit:
        return " ".join(ids)
    root, latest, used = ids[0], [], len(ids[0])
    for message_id in reversed(ids[1:]):
        if used + 1 + len(message_id) > limit:
            break
        latest.append(message_id)
        used += 1 + len(message_id)
    return " ".join([root, *reversed(latest)])


def trim(text: str, limit: int = BODY_LIMIT) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ", limit - 200)
    return (cut[:space] if space > 0 else cut).rstrip() + f" … [{len(text) - limit:,} more characters at the link]"


_templates = Path(__file__).parent / "templates"
# The templates ship with the package and do not change under a running process: compiled once, never
# checked for changes again (auto_reload would stat both files for every email of a storm).
_html_env = jinja2.Environment(loader=jinja2.FileSystemLoader(_templates), autoescape=True, auto_reload=False,
                               undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_text_env = jinja2.Environment(loader=jinja2.FileSystemLoader(_templates), autoescape=False, auto_reload=False,
                               undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                               keep_trailing_newline=True)


def render(template: str, context: dict[str, Any]) -> tuple[str, str]:
    """(plain text, HTML) bodies of ``template`` (``alert`` -> alert.txt and alert.html)."""
    return (_text_env.get_template(f"{template}.txt").render(**context),
            _html_env.get_template(f"{template}.html").render(**context))


class _HeaderClassesMadeOnce(HeaderRegistry):
    """The standard header registry, except that each header name's class is made once: the standard one
    makes a new class (``type(...)``) for every header it sets or parses, a third of building an email."""

    def __init__(self):
        super().__init__()
        self._made: dict[str, type] = {}

    def __getitem__(self, name: str) -> type:
        key = name.lower()
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = super().__getitem__(name)
        return made


# The standard policies, with the registry above: the same headers, parsed and folded the same way.
SMTP_POLICY = email.policy.SMTP.clone(header_factory=_HeaderClassesMadeOnce())
PARSE_POLICY = email.policy.default.clone(header_factory=_HeaderClassesMadeOnce())


class BuiltEmail(EmailMessage):
    """An email from ``build_message``, with the bytes it goes out as: serialised once, for the header check,
    and sent as they are (serialising costs more than the SMTP exchange on a local server). Not changed
    after it is built, so ``as_bytes()`` is those bytes.

    One written by ``mail_fast`` has its top-level headers read back from the bytes (the header check) and
    its parts parsed only when something reads them: sending needs the headers and the bytes, and parsing
    the parts too cost more than writing the email."""
    wire: bytes = b""
    # (sender, recipients) when the From and To headers are bare ASCII addresses (the fast path's): sending
    # need not read them back from the headers.
    envelope: tuple[str, list[str]] | None = None
    _parts_unread = False
    _parts: Any = None

    # Every Message method reaches the parts through ``_payload``: reading it is what parses them.
    @property
    def _payload(self) -> Any:
        if self._parts_unread:
            self._parts_unread = False
            # With the line ends set_content gives a part's content, not the wire's CRLF.
            whole = BytesParser(policy=self.policy).parsebytes(self.wire.replace(b"\r\n", b"\n"))
            self._parts, self.preamble, self.epilogue = whole._payload, whole.preamble, whole.epilogue
            self.defects.extend(whole.defects)
        return self._parts

    @_payload.setter
    def _payload(self, value: Any) -> None:
        self._parts_unread, self._parts = False, value

    def as_bytes(self, unixfrom: bool = False, policy: email.policy.Policy | None = None) -> bytes:
        if self.wire and not unixfrom and policy is None:
            return self.wire
        return super().as_bytes(unixfrom=unixfrom, policy=policy)

    __bytes__ = as_bytes


def build_message(*, sender: str, recipient: str, subject: str, text: str, html: str, message_id: str,
                  in_reply_to: str | None = None, references: list[str] | None = None,
                  date: float | None = None, thread_topic: str | None = None) -> BuiltEmail:
    headers = [("From", header_safe(sender)), ("To", header_safe(recipient)), ("Subject", header_safe(subject)),
               ("Date", header_date(date)), ("Message-ID", header_safe(message_id))]
    if in_reply_to:
        headers += [("In-Reply-To", header_safe(in_reply_to)),
                    ("References", references_value(references or [in_reply_to]))]
    if thread_topic:
        # Outlook groups a conversation by this topic, so the changing [P..] of a subject does not split it.
        headers.append(("Thread-Topic", header_safe(thread_topic)))
    headers.append(("Auto-Submitted", "auto-generated"))
    expected = [name.lower() for name, _ in headers] + ["mime-version", "content-type"]
    wire = alternative_wire(headers, text=text, html=html, policy=SMTP_POLICY)
    if wire is not None:
        msg = _read_back(wire, expected, into=BuiltEmail)
        msg.wire, msg._parts_unread = wire, True
        if is_bare_address(headers[0][1]) and is_bare_address(headers[1][1]):
            msg.envelope = (headers[0][1], [headers[1][1]])
        return msg
    msg = BuiltEmail(policy=SMTP_POLICY)
    for name, value in headers:
        msg[name] = value
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    wire = msg.as_bytes()
    _read_back(wire, expected)
    msg.wire = wire
    return msg


def _read_back(wire: bytes, expected: list[str], *, into: type[EmailMessage] = EmailMessage) -> EmailMessage:
    """The top-level headers of ``wire``, refused unless they are the ones set (lower-case ``expected``)."""
    # Only the top-level headers are compared, so only they are parsed back: parsing the MIME parts
    # too cost two thirds of building an alert email. Injected headers would be in this block: the
    # parser, like a mail client, reads headers up to the first empty line.
    end = wire.find(b"\r\n\r\n")
    block = wire if end < 0 else wire[:end + 4]
    parsed = BytesHeaderParser(policy=SMTP_POLICY, _class=into).parsebytes(block)
    found = [k.lower() for k in parsed.keys()]
    if found != expected:
        raise ValueError(f"refusing an email whose headers changed when serialised: {found} != {expected}")
    return parsed


def _send(smtp: smtplib.SMTP, msg: EmailMessage) -> None:
    """``send_message``, without serialising a built email again. Addresses that are not ASCII (which need
    SMTPUTF8, negotiated by ``send_message``) take the general path."""
    wire = getattr(msg, "wire", b"")
    envelope = getattr(msg, "envelope", None)
    if wire and envelope is not None:
        smtp.sendmail(*envelope, wire)
        return
    sender = getaddresses([str(msg["From"])])
    recipients = [address for _, address in getaddresses([str(v) for v in msg.get_all("To", [])])]
    if not wire or len(sender) != 1 or not all(a.isascii() for a in [sender[0][1], *recipients]) \
            or msg["Cc"] is not None or msg["Bcc"] is not None:
        smtp.send_message(msg)
        return
    smtp.sendmail(sender[0][1], recipients, wire)


class Transport(Protocol):
    description: str

    def send(self, msg: EmailMessage) -> None: ...

    def session(self) -> ContextManager[None]:
        """Sends inside it may share one connection (a delivery round)."""
        ...


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
    """Outside a ``session`` each email has a connection of its own. Inside one (a delivery round) the
    emails of the calling thread share one connection, opened at the first email and closed at the end:
    a login and TLS handshake per email cost more than the email itself. Other threads (the operator's
    health emails from a poll) keep their own connections."""

    def __init__(self, *, settings: SmtpSettings, connect: SmtpFactory | None = None):
        self.settings = settings
        self._connect = connect or smtp_factory(settings)
        self.description = f"SMTP {settings.host}:{settings.port}"
        self._local = threading.local()

    def _open(self) -> smtplib.SMTP:
        smtp = self._connect()
        try:
            if self.settings.starttls and not self.settings.ssl:
                smtp.starttls(context=tls_context(self.settings))
            if self.settings.username:
                smtp.login(self.settings.username, self.settings.password or "")
        except BaseException:
            _close(smtp)
            raise
        return smtp

    @contextmanager
    def session(self) -> Iterator[None]:
        if getattr(self._local, "active", False):  # nested: the outer session owns the connection
            yield
            return
        self._local.active, self._local.smtp, self._local.used = True, None, 0
        try:
            yield
        finally:
            if self._local.smtp is not None:
                _close(self._local.smtp)
            self._local.active, self._local.smtp = False, None

    def send(self, msg: EmailMessage) -> None:
        if not getattr(self._local, "active", False):
            with self._open() as smtp:
                _send(smtp, msg)
            return
        reused = self._local.smtp is not None and self._local.used > 0
        try:
            self._session_send(msg)
        except (smtplib.SMTPServerDisconnected, smtplib.SMTPSenderRefused) as err:
            # A server may end a long-lived connection (idle timeout, a limit of messages per connection:
            # 421 or a plain close). A connection that served before gets one fresh try; a message the
            # server had not accepted is not sent twice, and one it had is the same email (same Message-ID).
            if not reused or (isinstance(err, smtplib.SMTPSenderRefused) and err.smtp_code != 421):
                raise
            self._session_send(msg)

    def _session_send(self, msg: EmailMessage) -> None:
        if self._local.smtp is None:
            self._local.smtp = self._open()
            self._local.used = 0
        try:
            _send(self._local.smtp, msg)
        except smtplib.SMTPRecipientsRefused:
            raise  # refused recipients: smtplib reset the transaction, the connection serves on
        except smtplib.SMTPResponseException as err:
            if err.smtp_code == 421:  # the server is closing the connection
                self._drop()
            raise  # else a refusal of this message: smtplib reset the transaction, the connection serves on
        except BaseException:
            self._drop()  # state unknown (timeout, broken pipe): the next email opens a new connection
            raise
        self._local.used += 1

    def _drop(self) -> None:
        smtp, self._local.smtp = self._local.smtp, None
        if smtp is not None:
            _close(smtp)


def _close(smtp: smtplib.SMTP) -> None:
    try:
        smtp.quit()
    except Exception:
        smtp.close()


class FolderTransport:
    """With no SMTP configured, each email becomes an .eml file an operator can open."""

    def __init__(self, *, folder: Path):
        self.folder = folder
        self.description = f"folder {folder}"

    def session(self) -> ContextManager[None]:
        return nullcontext()

    def send(self, msg: EmailMessage) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = "".join(c if c.isalnum() or c in "-." else "_" for c in str(msg["Message-ID"]).strip("<>"))
        target = self.folder / f"{name}.eml"
        # Written whole or not at all; a resend of the same alert overwrites its own file.
        fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(getattr(msg, "wire", b"") or msg.as_bytes())
        os.replace(tmp, target)


def transport_for(settings: EmailSettings, *, base_dir: Path, connect: SmtpFactory | None = None) -> Transport:
    if settings.smtp is not None:
        return SmtpTransport(settings=settings.smtp, connect=connect)
    folder = Path(settings.outbox_dir)
    return FolderTransport(folder=folder if folder.is_absolute() else base_dir / folder)

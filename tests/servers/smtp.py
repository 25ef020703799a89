"""A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it receives.

It can speak plain SMTP, STARTTLS or TLS from the first byte (``tls=
"starttls"|"ssl"``, with a certificate from a throwaway CA made by
``trustme``), require a login, and refuse the next N messages.
"""

from __future__ import annotations

import email
import email.policy
import socket
import ssl
import threading
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Handler:
    def __init__(self, server: "SmtpServer"):
        self.server = server

    async def handle_RCPT(self, smtp_server, session, envelope, address, rcpt_options):
        if address in self.server.unknown_recipients:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, smtp_server, session, envelope):
        with self.server._lock:
            if self.server.reject_next > 0:
                self.server.reject_next -= 1
                return "451 4.3.0 try again later"
            msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
            self.server.messages.append((list(envelope.rcpt_tos), msg))
            self.server.peers.append(session.peer)
        return "250 OK"


class SmtpServer:
    def __init__(self, port: int | None = None, *, tls: str | None = None, login: tuple[str, str] | None = None,
                 ca_dir: Path | None = None):
        self.port = port or free_port()
        self.messages: list[tuple[list[str], EmailMessage]] = []
        self.peers: list[tuple] = []  # the client's address and port of each message: its connection
        self.reject_next = 0
        self.unknown_recipients: set[str] = set()  # answered 550, a permanent refusal
        self.logins: list[str] = []  # user names that logged in successfully
        self.tls = tls
        self.login = login
        self.ca_file: str | None = None
        self._lock = threading.Lock()
        self._controller: Controller | None = None
        self._server_context = None
        if tls:
            import trustme
            ca = trustme.CA()
            self._server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ca.issue_cert("127.0.0.1").configure_cert(self._server_context)
            if ca_dir is not None:
                path = Path(ca_dir) / f"smtp-ca-{self.port}.pem"
                ca.cert_pem.write_to_path(str(path))
                self.ca_file = str(path)

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword) and self.login is not None
              and (auth_data.login.decode(), auth_data.password.decode()) == self.login)
        if ok:
            self.logins.append(auth_data.login.decode())
        # handled=False: aiosmtpd then answers 535 itself; with the default it answers nothing.
        return AuthResult(success=ok, handled=False)

    def start(self) -> "SmtpServer":
        kwargs = {}
        if self.login:
            # TLS from the first byte is TLS too, though aiosmtpd only recognises STARTTLS as such.
            kwargs.update(authenticator=self._authenticate, auth_required=True,
                          auth_require_tls=self.tls == "starttls")
        if self.tls == "starttls":
            kwargs.update(tls_context=self._server_context, require_starttls=True)
        elif self.tls == "ssl":
            kwargs.update(ssl_context=self._server_context, server_hostname="127.0.0.1")
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port, **kwargs)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller:
            self._controller.stop()
            self._controller = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def to(self, address: str) -> list[EmailMessage]:
        return [m for rcpts, m in self.messages if address in rcpts]


class SilentServer:
    """Accepts TCP connections and never says a word: an SMTP server that hangs."""

    def __init__(self):
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._sock.close()

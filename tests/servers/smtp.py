"""A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it receives."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from email.message import EmailMessage

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Handler:
    def __init__(self, server: "SmtpServer"):
        self.server = server

    async def handle_DATA(self, smtp_server, session, envelope):
        with self.server._lock:
            if self.server.reject_next > 0:
                self.server.reject_next -= 1
                return "451 4.3.0 try again later"
            msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
            self.server.messages.append((list(envelope.rcpt_tos), msg))
        return "250 OK"


class SmtpServer:
    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.messages: list[tuple[list[str], EmailMessage]] = []
        self.reject_next = 0
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    def start(self) -> "SmtpServer":
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)
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

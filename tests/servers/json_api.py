"""A local JSON API server on 127.0.0.1 that the API sources' test servers build on.

Subclasses answer ``route(path, query) -> (status, body)``; this class serves
it as JSON, records every request, and can answer the next requests with
queued faults (``fail_next(429, retry_after=30)``) or hang (``hang_next``).
"""

from __future__ import annotations

import json
import threading
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.servers.http import LocalHttpServer, QuietHandler


class JsonApiServer(LocalHttpServer):
    def __init__(self):
        self.requests: list[tuple[str, dict[str, list[str]]]] = []
        self._faults: list[tuple[int, dict[str, str]]] = []
        self._hangs = 0
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        server = self

        class Handler(QuietHandler):
            def do_GET(self):
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                with server._lock:
                    server.requests.append((parts.path, query))
                    fault = server._faults.pop(0) if server._faults else None
                    hang = server._hangs > 0
                    server._hangs -= int(hang)
                if hang:
                    server.stopping.wait(30)
                    return
                if fault is None and server.stream(self, parts.path, query):
                    return  # a long-lived answer (server-sent events) the subclass wrote itself
                if fault is not None:
                    status, headers = fault
                    body: Any = {"error": "fault"}
                else:
                    status, body = server.route(parts.path, query)
                    headers = {}
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

        self._serve(Handler)

    def route(self, path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        raise NotImplementedError

    def stream(self, handler: QuietHandler, path: str, query: dict[str, list[str]]) -> bool:
        """Answer a request with a stream of its own (True when it did); JSON answers are ``route``'s."""
        return False

    def fail_next(self, status: int, *, times: int = 1, retry_after: float | None = None,
                  headers: dict[str, str] | None = None) -> None:
        extra = dict(headers or {})
        if retry_after is not None:
            extra["Retry-After"] = f"{retry_after:.0f}"
        with self._lock:
            self._faults.extend([(status, extra)] * times)

    def hang_next(self, times: int = 1) -> None:
        with self._lock:
            self._hangs += times

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]

    def stop(self) -> None:
        self.stopping.set()
        super().stop()

"""What every local test HTTP server shares: a threaded server on 127.0.0.1 and its lifecycle."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive, no request log on stderr, and TCP_NODELAY: headers and body go out in separate
    writes, and with Nagle on the body would wait for the client's delayed ACK (~40 ms a request), as no real
    server lets it."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass


class LocalHttpServer:
    """Serves ``handler`` on a free port of 127.0.0.1 in a background thread; use it with ``with``."""

    def _serve(self, handler, *, server_class: type[ThreadingHTTPServer] = ThreadingHTTPServer) -> None:
        self._httpd = server_class(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

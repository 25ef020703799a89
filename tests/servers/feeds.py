"""A real HTTP server on 127.0.0.1 serving feeds, with ETag/Last-Modified."""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Resource:
    body: bytes
    content_type: str = "application/rss+xml; charset=utf-8"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (a hanging feed)
    conditional: bool = True  # send ETag / Last-Modified and honour them
    last_modified: float = field(default_factory=time.time)

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha1(self.body).hexdigest()[:16] + '"'


class FeedServer:
    def __init__(self):
        self.resources: dict[str, Resource] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                with server._lock:
                    server.requests.append((self.path, dict(self.headers)))
                    resource = server.resources.get(self.path)
                if resource is None:
                    return self._send(404, b"not found", {"Content-Type": "text/plain"})
                if resource.delay:
                    time.sleep(resource.delay)
                headers = {"Content-Type": resource.content_type, **resource.headers}
                if resource.conditional and resource.status == 200:
                    headers["ETag"] = resource.etag
                    headers["Last-Modified"] = formatdate(resource.last_modified, usegmt=True)
                    if self.headers.get("If-None-Match") == resource.etag:
                        return self._send(304, b"", headers)
                self._send(resource.status, resource.body, headers)

            def _send(self, status, body, headers):
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if body and status != 304:
                        self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def serve(self, path: str, body: str | bytes, **kwargs) -> str:
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.resources[path] = Resource(body=data, **kwargs)
        return self.url + path

    def hits(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p == path)

    def start(self) -> "FeedServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def rss(items: list[dict], *, title: str = "Test feed") -> str:
    """An RSS 2.0 document; each item dict has title, link, description, guid, pubDate."""
    from xml.sax.saxutils import escape
    parts = [f'<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel><title>{escape(title)}</title>'
             "<link>http://127.0.0.1/</link><description>test</description>"]
    for item in items:
        parts.append("<item>" + "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in item.items()) + "</item>")
    parts.append("</channel></rss>")
    return "".join(parts)


def atom(entries: list[dict], *, title: str = "Test Atom feed") -> str:
    from xml.sax.saxutils import escape
    parts = ['<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">'
             f"<title>{escape(title)}</title><id>urn:test:feed</id><updated>2026-11-22T10:00:00Z</updated>"]
    for e in entries:
        parts.append(
            f"<entry><title>{escape(e['title'])}</title><id>{escape(e['id'])}</id>"
            f"<link href=\"{escape(e['link'])}\"/><updated>{e.get('updated', '2026-11-22T10:00:00Z')}</updated>"
            f"<author><name>{escape(e.get('author', 'someone'))}</name></author>"
            f"<content type=\"html\">{escape(e.get('content', ''))}</content></entry>")
    parts.append("</feed>")
    return "".join(parts)

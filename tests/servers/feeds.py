"""A real HTTP server on 127.0.0.1 serving feeds, with ETag/Last-Modified.

Besides plain feeds it can misbehave the ways real servers do: redirect,
answer 410 or 429 with Retry-After, compress with gzip or deflate, stream a
body far larger than any feed (generated, never held in memory), drip a body
byte by byte, or never answer at all. It counts requests, the statuses it
answered and the most requests it had in flight at once.
"""

from __future__ import annotations

import hashlib
import sys
import threading
import time
import zlib
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from http.server import ThreadingHTTPServer
from typing import Callable, Iterable

from tests.servers.http import LocalHttpServer, QuietHandler


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # A client that hangs up (a timeout, a body cut off) is expected here, not a server bug.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@dataclass
class Resource:
    body: bytes
    content_type: str = "application/rss+xml; charset=utf-8"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (a hanging feed)
    conditional: bool = True  # send ETag / Last-Modified and honour them
    send_etag: bool = True  # False: only Last-Modified, to exercise If-Modified-Since
    last_modified: float = field(default_factory=time.time)
    compress: str | None = None  # "gzip" or "deflate": Content-Encoding
    # A body made on the fly (huge or slow), sent after ``body`` without Content-Length.
    stream: Callable[[], Iterable[bytes]] | None = None
    # (user, password) a private feed asks for with HTTP Basic auth: 401 without them.
    basic_auth: tuple[str, str] | None = None

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha1(self.body).hexdigest()[:16] + '"'


class FeedServer(LocalHttpServer):
    def __init__(self):
        self.resources: dict[str, Resource] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.answers: list[tuple[str, int]] = []  # (path, status) of every answer sent
        self.in_flight = 0
        self.max_in_flight = 0
        self.stopping = threading.Event()  # ends every hanging or dripping answer
        self._lock = threading.Lock()
        server = self

        class Handler(QuietHandler):
            def do_GET(self):
                with server._lock:
                    server.requests.append((self.path, dict(self.headers)))
                    resource = server.resources.get(self.path)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    self._answer(resource)
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def _answer(self, resource):
                if resource is None:
                    return self._send(404, b"not found", {"Content-Type": "text/plain"})
                if resource.delay and server.stopping.wait(resource.delay):
                    self.close_connection = True  # released unanswered: the client learns it now, not at its timeout
                    return
                if resource.basic_auth and self.headers.get("Authorization") != basic_header(*resource.basic_auth):
                    return self._send(401, b"who are you?", {"Content-Type": "text/plain",
                                                             "WWW-Authenticate": 'Basic realm="feeds"'})
                headers = {"Content-Type": resource.content_type, **resource.headers}
                if resource.conditional and resource.status == 200:
                    if resource.send_etag:
                        headers["ETag"] = resource.etag
                    headers["Last-Modified"] = formatdate(resource.last_modified, usegmt=True)
                    if self._not_modified(resource):
                        return self._send(304, b"", headers)
                body = resource.body
                if resource.compress == "gzip":
                    body = gzip_bytes(body)
                elif resource.compress == "deflate":
                    body = zlib.compress(body)
                if resource.compress:
                    headers["Content-Encoding"] = resource.compress
                self._send(resource.status, body, headers, stream=resource.stream)

            def _not_modified(self, resource):
                if "If-None-Match" in self.headers:
                    return resource.send_etag and self.headers["If-None-Match"] == resource.etag
                since = self.headers.get("If-Modified-Since")
                try:
                    return bool(since) and parsedate_to_datetime(since).timestamp() >= int(resource.last_modified)
                except (TypeError, ValueError):
                    return False

            def _send(self, status, body, headers, stream=None):
                with server._lock:
                    server.answers.append((self.path, status))
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    if stream is None:
                        self.send_header("Content-Length", str(len(body)))
                    else:
                        self.send_header("Connection", "close")  # the body ends when the connection does
                        self.close_connection = True
                    self.end_headers()
                    if body and status != 304:
                        self.wfile.write(body)
                    for chunk in stream() if stream is not None else ():
                        if server.stopping.is_set():
                            break
                        self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self._serve(Handler, server_class=_QuietServer)

    def serve(self, path: str, body: str | bytes, **kwargs) -> str:
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.resources[path] = Resource(body=data, **kwargs)
        return self.url + path

    def hits(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p == path)

    def statuses(self, path: str) -> list[int]:
        return [status for p, status in self.answers if p == path]

    def stop(self) -> None:
        self.stopping.set()
        super().stop()


def recent(hours: float = 1.0) -> str:
    """An RFC 822 date ``hours`` ago: an entry that date is news, younger than the first poll's backfill_hours."""
    return formatdate(time.time() - hours * 3600, usegmt=True)


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


def basic_header(user: str, password: str) -> str:
    import base64
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def gzip_bytes(data: bytes) -> bytes:
    import gzip
    return gzip.compress(data, mtime=0)


def padding(total: int, *, chunk: bytes = b"<!-- " + b"x" * 65_000 + b" -->\n") -> Callable[[], Iterable[bytes]]:
    """A stream of ``total`` bytes of XML comments: a feed that goes on far past any sane size."""
    def chunks():
        sent = 0
        while sent < total:
            piece = chunk[: total - sent]
            sent += len(piece)
            yield piece
    return chunks


def drip(every: float, *, byte: bytes = b" ") -> Callable[[], Iterable[bytes]]:
    """A body that never ends: one byte every ``every`` seconds (each read is quick, the whole is not)."""
    def chunks():
        while True:
            time.sleep(every)
            yield byte
    return chunks


# -- real-world-shaped documents -------------------------------------------
# Each is shaped like feeds found in the wild (the quirks are the point), and
# names Acme in a complaint so the pipeline stores it.

RSS_091 = b"""<?xml version="1.0" encoding="ISO-8859-1"?>
<!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS 0.91//EN"
 "http://my.netscape.com/publish/formats/rss-0.91.dtd">
<rss version="0.91">
<channel>
<title>Old Portal News</title>
<link>http://portal.example/</link>
<description>News &amp; views</description>
<language>en-us</language>
<item>
<title>Acme modem dies after a week</title>
<link>http://portal.example/news/acme-modem.html</link>
<description>Readers report the Acme modem dies after a week &amp; support won't replace it.</description>
</item>
</channel>
</rss>
"""

RSS_092 = b"""<?xml version="1.0"?>
<rss version="0.92">
<channel>
<title>Userland-style weblog</title>
<link>http://weblog.example/</link>
<description>A 0.92 feed: items without titles are allowed</description>
<item>
<description>Ordered from &lt;b&gt;Acme&lt;/b&gt; three weeks ago, still nothing. Terrible.</description>
<enclosure url="http://weblog.example/rant.mp3" length="12216320" type="audio/mpeg"/>
</item>
</channel>
</rss>
"""

RSS_10_RDF = b"""<?xml version="1.0" encoding="utf-8"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/"
 xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:content="http://purl.org/rss/1.0/modules/content/">
<channel rdf:about="http://slashy.example/">
<title>Slashy</title>
<link>http://slashy.example/</link>
<description>News for nerds</description>
<items><rdf:Seq><rdf:li rdf:resource="http://slashy.example/story/1"/></rdf:Seq></items>
</channel>
<item rdf:about="http://slashy.example/story/1">
<title>Acme router firmware bricks thousands of devices</title>
<link>http://slashy.example/story/1</link>
<dc:creator>timothy</dc:creator>
<dc:date>2026-11-22T08:30:00+00:00</dc:date>
<description>Short version</description>
<content:encoded><![CDATA[<p>An Acme firmware update <em>bricked</em> routers; customers are furious.</p>]]></content:encoded>
</item>
</rdf:RDF>
"""

RSS_20 = b"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:atom="http://www.w3.org/2005/Atom">
<channel>
<title>Gadget Reviews &#8211; Blog</title>
<link>https://reviews.example/</link>
<atom:link href="https://reviews.example/feed/" rel="self" type="application/rss+xml"/>
<description>Honest reviews</description>
<item>
<title>Acme&#8217;s new blender: a refund nightmare</title>
<link>/2026/11/acme-blender/?utm_source=rss&amp;utm_medium=rss</link>
<guid isPermaLink="false">https://reviews.example/?p=4711</guid>
<dc:creator><![CDATA[Jo Reviewer]]></dc:creator>
<pubDate>Sun, 22 Nov 2026 09:15:00 +0000</pubDate>
<description><![CDATA[<p>The Acme blender broke &amp; I&#8217;m still waiting for a refund. <a href="/contact">Contact</a></p>]]></description>
</item>
</channel>
</rss>
"""

ATOM_03 = b"""<?xml version="1.0" encoding="utf-8"?>
<feed version="0.3" xmlns="http://purl.org/atom/ns#">
<title>Blogger-era blog</title>
<link rel="alternate" type="text/html" href="http://oldblog.example/"/>
<modified>2026-11-22T07:00:00Z</modified>
<entry>
<title>Acme lost my package again</title>
<link rel="alternate" type="text/html" href="http://oldblog.example/2026/11/acme-package.html"/>
<id>tag:oldblog.example,2026:post-17</id>
<issued>2026-11-22T07:00:00Z</issued>
<modified>2026-11-22T07:00:00Z</modified>
<author><name>Sam</name></author>
<content type="text/html" mode="escaped">&lt;p&gt;Third lost package from Acme this month. Awful.&lt;/p&gt;</content>
</entry>
</feed>
"""

ATOM_10 = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://forum.example/community/">
<title type="text">Forum: Complaints</title>
<id>urn:uuid:60a76c80-d399-11d9-b93C-0003939e0af6</id>
<updated>2026-11-22T10:00:00Z</updated>
<link rel="self" href="feed.atom"/>
<entry>
<title type="html">Acme &lt;b&gt;overcharged&lt;/b&gt; me</title>
<id>urn:uuid:1225c695-cfb8-4ebb-aaaa-80da344efa6a</id>
<link rel="alternate" href="threads/42#post-1"/>
<updated>2026-11-22T10:00:00Z</updated>
<published>2026-11-22T09:59:00Z</published>
<author><name>Pat</name></author>
<content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml"><p>Acme overcharged me twice. See <a href="threads/42/receipt">my receipt</a>.</p></div></content>
</entry>
</feed>
"""

# Not well-formed: a bare ampersand, an unclosed tag, and the document simply stops.
ILLFORMED = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Broken & proud</title><link>http://broken.example/</link>
<item><title>Acme support hung up on me</title><link>http://broken.example/1</link>
<description>Acme support hung up on me <b>twice & then blocked me</description></item>
<item><title>Acme billing is a mess</title><link>http://broken.example/2</link>
<description>Acme charged me for a plan I never ordered.</description></item>
<item><title>Half an ite"""

# windows-1252, declared: curly quotes (0x93/0x94), e-acute (0xe9), euro (0x80).
WINDOWS_1252 = (b'<?xml version="1.0" encoding="windows-1252"?>\n<rss version="2.0"><channel><title>Caf\xe9 blog</title>'
                b"<link>http://cafe.example/</link><description>x</description><item>"
                b"<title>Acme caf\xe9 machine: \x93never again\x94</title><link>http://cafe.example/1</link>"
                b"<description>Paid \x80200 for the Acme caf\xe9 machine and it leaks.</description>"
                b"</item></channel></rss>")

ISO_8859_1 = (b'<?xml version="1.0" encoding="iso-8859-1"?>\n<rss version="2.0"><channel><title>Stra\xdfe</title>'
              b"<link>http://strasse.example/</link><description>x</description><item>"
              b"<title>Acme in der Stra\xdfe: sehr \xe4rgerlich</title><link>http://strasse.example/1</link>"
              b"<description>Acme hat mein Paket verloren. \xc4rgerlich!</description></item></channel></rss>")

# Says UTF-8 (in the XML and in the HTTP header) but the bytes are windows-1252.
MISDECLARED = (b'<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel><title>Liar</title>'
               b"<link>http://liar.example/</link><description>x</description><item>"
               b"<title>Acme na\xefve pricing</title><link>http://liar.example/1</link>"
               b"<description>Acme\x92s na\xefve pricing cost me \x8050. Refund please.</description>"
               b"</item></channel></rss>")

# Entries without id, date or link (and one without a title either).
BARE_ENTRIES = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Bare</title><link>http://bare.example/</link><description>x</description>
<item><title>Acme app crashes on login</title><description>Every time. Acme please fix.</description></item>
<item><description>Acme delivery was late again.</description></item>
</channel></rss>
"""

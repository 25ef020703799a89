"""The fast feed reading against feedparser, its oracle: the same mentions from every feed it reads itself.

``parse_fast`` either returns what feedparser returns for the fields ``feed_entries`` reads, or ``None`` (then
feedparser reads the feed). Each feed here is read both ways and turned into mentions by the same code
(``entry_mentions``, html2text included): title, link, id, author, dates, text, feed title, version and entry
count must agree, and feedparser must have found nothing wrong with a feed the fast path read. Feeds come
from the test server's samples, the bench's shape, hostile bodies, and Hypothesis, which builds RSS 2.0 and
Atom 1.0 documents from the pieces feedparser treats specially and shrinks a disagreement to a small one.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from xml.sax.saxutils import escape, quoteattr

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sources.feed_entries import entry_mentions, parse_with_feedparser, without_surrogate_refs
from sources.feed_parse_fast import parse_fast
from tests.servers import feeds as samples

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)
RSS_TYPE = "application/rss+xml; charset=utf-8"
CONTENT_TYPES = [RSS_TYPE, None, "application/xml", "application/atom+xml", "text/xml; charset=UTF-8", "text/xml",
                 "text/html; charset=utf-8", "application/rss+xml; charset=iso-8859-1"]


def reading(parsed) -> tuple:
    mentions = entry_mentions(parsed, source="rss", feed_id="https://feeds.example/f", feed_name="",
                              base_url="https://feeds.example/blog/feed.xml", reach=1000.0, now=NOW, limit=200)
    return parsed.version, len(parsed.entries), [dataclasses.asdict(m) for m in mentions]


def agree(body: bytes, content_type: str | None) -> bool:
    """True when the fast path read the feed (and gave feedparser's reading), False when it left it alone."""
    body = without_surrogate_refs(body)
    fast = parse_fast(body, content_type=content_type)
    if fast is None:
        return False
    oracle = parse_with_feedparser(body, content_type=content_type)
    assert not oracle.bozo, f"the fast path read a feed feedparser finds fault with: {oracle.bozo_exception}"
    assert reading(fast) == reading(oracle)
    return True


def rss_item(**fields) -> str:
    return "<item>" + "".join(f"<{k}>{escape(v)}</{k}>" for k, v in fields.items()) + "</item>"


def rss_doc(items: str, *, head: str = '<?xml version="1.0" encoding="utf-8"?>\n', attrs: str = "") -> bytes:
    return (f'{head}<rss version="2.0"{attrs}><channel><title>Site</title><link>https://s.example/</link>'
            f"<description>d</description>{items}</channel></rss>").encode("utf-8")


# -- every feed the tests serve, and the bench's ---------------------------------------------------------

SAMPLES = {name: value for name, value in vars(samples).items() if isinstance(value, bytes) and value.lstrip()[:1] == b"<"}


@pytest.mark.parametrize("name", sorted(SAMPLES))
@pytest.mark.parametrize("content_type", CONTENT_TYPES)
def test_every_sample_feed_reads_the_same_or_goes_to_feedparser(name, content_type):
    agree(SAMPLES[name], content_type)


def test_plain_rss_and_atom_take_the_fast_path_and_the_odd_ones_do_not():
    plain_rss = samples.rss([{"title": "Acme & me", "link": "https://shop.example/1?a=1&b=2", "guid": "g1",
                              "description": "<p>Acme <b>broke</b> it</p>", "pubDate": samples.recent()}])
    plain_atom = samples.atom([{"title": "Acme", "id": "urn:x:1", "link": "/p/1", "content": "<p>hi</p>"}])
    assert agree(plain_rss.encode(), RSS_TYPE)
    assert agree(plain_atom.encode(), "application/atom+xml")
    assert agree(samples.RSS_20, RSS_TYPE) and agree(samples.BARE_ENTRIES, None)
    # What feedparser does and the fast path does not: other dialects, encodings, xml:base, broken XML, DTDs.
    for odd in ("RSS_091", "RSS_092", "RSS_10_RDF", "ATOM_03", "ATOM_10", "ILLFORMED", "WINDOWS_1252",
                "ISO_8859_1", "MISDECLARED"):
        assert parse_fast(SAMPLES[odd], content_type=RSS_TYPE) is None, odd
    assert parse_fast(plain_rss.encode(), content_type="text/xml") is None  # US-ASCII to feedparser
    assert agree(b"\xef\xbb\xbf" + plain_rss.encode(), RSS_TYPE)  # a UTF-8 byte-order mark is dropped
    assert parse_fast(b"\xff\xfe" + plain_rss.encode("utf-16-le"), content_type=RSS_TYPE) is None  # UTF-16


def test_the_bench_feeds_take_the_fast_path():
    from bench.bench_rss import serve_feeds

    class Collect:
        def __init__(self):
            self.bodies = []

        def serve(self, path, body, **_):
            self.bodies.append(body.encode("utf-8"))
            return path

    collected = Collect()
    serve_feeds([collected], 20, 5)
    assert all(agree(body, RSS_TYPE) for body in collected.bodies)


# -- hostile feeds -------------------------------------------------------------------------------------------

HOSTILE = {
    "crlf titles": rss_doc(rss_item(title="Acme\r\nrefund\r\n  now\r", link="https://a.example/1",
                                    description="line one\r\nline two")),
    "script body": rss_doc(rss_item(title="<script>alert(1)</script>Acme", guid="s1",
                                    description='<div><script>steal(document.cookie)</script><style>p{}</style>'
                                                '<p onclick="x()">Acme <iframe src="https://evil.example"></iframe>'
                                                '<a href="javascript:alert(1)">click</a></p></div>')),
    "megabyte entry": rss_doc(rss_item(title="Acme long", guid="big",
                                       description="<p>" + "Acme broke it again. " * 12_000 + "</p>")),
    "cdata and entities": rss_doc("<item><title><![CDATA[Acme <b>&amp;</b> co]]></title>"
                                  "<description>&lt;p&gt;AT&amp;amp;T &amp;#8217; &#8220;q&#8221;&lt;/p&gt;</description>"
                                  "<link> https://a.example/x?a=1&amp;amp;b=2 </link></item>"),
    "latin-1 mojibake and C1 controls": rss_doc(rss_item(title="Caf\u00c3\u00a9 \u0093quoted\u0094 \u0080",
                                                         guid="m1", author="J\u00c3\u00b6rg")),
    "surrogate references": rss_doc("<item><title>Acme &#xD83D; &#xD83D;&#xDE21;</title><guid>s</guid></item>"),
    "broken utf-8": rss_doc(rss_item(title="Acme", guid="b")).replace(b"Acme", b"Ac\xffme"),
    "undefined entity": rss_doc("<item><title>Acme &nbsp; &eacute;</title><guid>u</guid></item>"),
    "doctype": rss_doc(rss_item(title="Acme", guid="d"),
                       head='<?xml version="1.0"?>\n<!DOCTYPE rss [<!ENTITY acme "Acme Corp">]>\n'),
    "xml:base": rss_doc(rss_item(title="Acme", guid="x"), attrs=' xml:base="https://other.example/"'),
    "nested markup": rss_doc("<item><title>Acme <b>bold</b></title><guid>n</guid></item>"),
    "two titles": rss_doc("<item><title>one</title><title>two</title></item>"),
    "two descriptions": rss_doc("<item><description>one</description><description>two</description></item>"),
    "guid not a permalink": rss_doc('<item><guid isPermaLink="false">relative/1</guid></item>'
                                    '<item><guid isPermaLink="FALSE">relative/2</guid></item>'
                                    '<item><guid>http:///three//slashes</guid></item>'),
    "empty everything": rss_doc("<item/><item><title/><link/><description/><guid/></item>"),
    "unknown namespace": rss_doc('<item><x:title xmlns:x="urn:unknown">t</x:title></item>'),
    "prefix hijack": rss_doc('<item><dc:creator>a</dc:creator></item>', attrs=' xmlns:dc="urn:not-dublin-core"'),
    "rss 1.0 namespace on rss": rss_doc(rss_item(title="Acme"), attrs=' xmlns:r="http://purl.org/rss/1.0/"'),
    "leading whitespace": b"\n  " + rss_doc(rss_item(title="Acme", guid="w")),
    "utf-8 bom": b"\xef\xbb\xbf" + rss_doc(rss_item(title="Caf\u00e9 Acme", guid="bom")),
    "utf-8 bom, latin-1 declared": b"\xef\xbb\xbf" + rss_doc(rss_item(title="Acme", guid="bom2")).replace(
        b'encoding="utf-8"', b'encoding="iso-8859-1"'),
    "utf-16": rss_doc(rss_item(title="Acme", guid="16")).decode("utf-8").replace(
        'encoding="utf-8"', 'encoding="utf-16"').encode("utf-16"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
@pytest.mark.parametrize("content_type", [RSS_TYPE, None])
def test_hostile_feeds_read_the_same_or_go_to_feedparser(name, content_type):
    taken = agree(HOSTILE[name], content_type)
    if name == "utf-8 bom, latin-1 declared" and content_type is None:  # no HTTP charset: the declaration counts
        assert not taken
    if name in ("broken utf-8", "undefined entity", "doctype", "xml:base", "nested markup", "two titles",
                "unknown namespace", "prefix hijack", "rss 1.0 namespace on rss", "leading whitespace", "utf-16"):
        assert not taken, name
    if name in ("crlf titles", "script body", "megabyte entry", "cdata and entities", "surrogate references",
                "latin-1 mojibake and C1 controls", "guid not a permalink", "empty everything", "utf-8 bom"):
        assert taken, name


# -- Hypothesis: documents built from what feedparser treats specially ---------------------------------------

TEXT_PIECES = ["Acme", "refund", " ", "  ", "\n", "\r\n", "\t", "&", "<", ">", "\"", "'", "&amp;", "&lt;b&gt;",
               "<p>", "</p>", "<b>", "</b>", "<br/>", "<script>x()</script>", "<a href='/rel'>a</a>",
               '<a href="https://x.example/?a=1&amp;b=2">b</a>', "1. ", "* ", "# ", "\\", "_x_", "\u00c3\u00a9",
               "\u0093", "\u0080", "\u00a0", "\u2019", "\U0001f621", "&#8217;", "&copy;", "&#x26;", "&#38;",
               "http://a.example/p?x=1&y=2", "mailto:me@x.example", "jo@example.com (Jo)", "()", "<>", "&lt;&gt;"]
DATES = ["Sun, 22 Nov 2026 09:15:00 +0000", "Sun, 22 Nov 2026 09:15:00 GMT", "2026-11-22T09:15:00Z",
         "2026-11-22T09:15:00+02:00", "22 Nov 2026", "not a date", "", " Mon, 23 Nov 2026 10:00:00 EST ",
         "2026-11-22", "Tue, 01 Dec 2099 00:00:00 +0000"]
URLS = ["https://a.example/1", "/relative/2", "relative/3", "", "  https://a.example/4  ", "http:///x",
        "https://a.example/5?utm_source=rss&amp;b=2", "javascript:alert(1)", "https://user:pw@a.example/6",
        "urn:uuid:1225c695", "tag:a.example,2026:7"]
NAMESPACES = (' xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:content="http://purl.org/rss/1.0/modules/content/"'
              ' xmlns:atom="http://www.w3.org/2005/Atom" xmlns:wfw="http://wellformedweb.org/CommentAPI/"'
              ' xmlns:slash="http://purl.org/rss/1.0/modules/slash/" xmlns:media="http://search.yahoo.com/mrss/"'
              ' xmlns:dcterms="http://purl.org/dc/terms/" xmlns:x="urn:example:unknown"')

text = st.lists(st.sampled_from(TEXT_PIECES), max_size=8).map("".join)


def _escaped(value: str, cdata: bool) -> str:
    if cdata and "]]>" not in value and "\r" not in value:
        return f"<![CDATA[{value}]]>"
    return escape(value).replace("\r", "&#13;")


@st.composite
def rss_element(draw) -> str:
    kind = draw(st.sampled_from(["title", "link", "description", "guid", "pubDate", "author", "dc:creator",
                                 "dc:date", "content:encoded", "category", "comments", "enclosure", "source",
                                 "wfw:commentRss", "slash:comments", "media:title", "atom:link", "dcterms:created",
                                 "x:thing", "unknown", "date", "summary", "PubDate", "atom:updated", "media:group"]))
    value = draw(st.sampled_from(DATES) if "date" in kind.lower() or "updated" in kind or "created" in kind else
                 st.sampled_from(URLS) if kind in ("link", "guid", "comments", "wfw:commentRss") else text)
    cdata = draw(st.booleans())
    if kind == "guid":
        attr = draw(st.sampled_from(["", ' isPermaLink="false"', ' isPermaLink="true"', ' isPermaLink="False"']))
        return f"<guid{attr}>{_escaped(value, cdata)}</guid>"
    if kind == "enclosure":
        return f'<enclosure url={quoteattr(draw(st.sampled_from(URLS)))} length="1" type="audio/mpeg"/>'
    if kind == "atom:link":
        return f'<atom:link href={quoteattr(draw(st.sampled_from(URLS)))} rel="alternate"/>'
    if kind == "media:group":
        return f"<media:group><media:title>{_escaped(value, cdata)}</media:title></media:group>"
    if kind == "title" and draw(st.booleans()):
        return f'<title type={quoteattr(draw(st.sampled_from(["html", "text", "xhtml", "text/html"])))}>' \
               f"{_escaped(value, cdata)}</title>"
    return f"<{kind}>{_escaped(value, cdata)}</{kind}>"


@st.composite
def rss_feed(draw) -> bytes:
    items = []
    for _ in range(draw(st.integers(0, 4))):
        elements = draw(st.lists(rss_element(), max_size=7))
        items.append("<item>" + "\n".join(elements) + "</item>")
    channel_title = _escaped(draw(text), draw(st.booleans()))
    extra = draw(st.sampled_from(["", "<image><url>https://s.example/i.png</url><title>Logo</title></image>",
                                  "<language>en</language><lastBuildDate>Sun, 22 Nov 2026 09:15:00 GMT</lastBuildDate>",
                                  '<atom:link href="https://s.example/feed" rel="self" type="application/rss+xml"/>']))
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"{NAMESPACES}><channel>'
            f"<title>{channel_title}</title>{extra}{''.join(items)}</channel></rss>").encode("utf-8")


@st.composite
def atom_entry(draw) -> str:
    parts = []
    for kind in draw(st.lists(st.sampled_from(["title", "id", "link", "link2", "updated", "published", "author",
                                               "summary", "content", "category", "rights", "contributor",
                                               "dc:creator", "source"]), max_size=8)):
        value = draw(text)
        cdata = draw(st.booleans())
        content_type = draw(st.sampled_from(["", ' type="html"', ' type="text"', ' type="xhtml"', ' type="text/html"']))
        if kind in ("title", "summary", "content", "rights"):
            parts.append(f"<{kind}{content_type}>{_escaped(value, cdata)}</{kind}>")
        elif kind == "id":
            parts.append(f"<id>{_escaped(draw(st.sampled_from(URLS)), cdata)}</id>")
        elif kind in ("link", "link2"):
            rel = draw(st.sampled_from(["", ' rel="alternate"', ' rel="self"', ' rel="replies"', ' rel="enclosure"']))
            link_type = draw(st.sampled_from(["", ' type="text/html"', ' type="application/xhtml+xml"',
                                              ' type="application/atom+xml"']))
            parts.append(f"<link{rel}{link_type} href={quoteattr(draw(st.sampled_from(URLS)))}/>")
        elif kind in ("updated", "published"):
            parts.append(f"<{kind}>{escape(draw(st.sampled_from(DATES)))}</{kind}>")
        elif kind in ("author", "contributor"):
            fields = draw(st.lists(st.sampled_from(["name", "email", "uri"]), max_size=3, unique=True))
            inner = "".join(f"<{f}>{_escaped(draw(text), cdata)}</{f}>" for f in fields)
            parts.append(f"<{kind}>{inner}</{kind}>")
        elif kind == "source":
            parts.append(f"<source><id>urn:s</id><title>{_escaped(value, cdata)}</title></source>")
        else:
            parts.append(f"<{kind}>{_escaped(value, cdata)}</{kind}>")
    return "<entry>" + "\n".join(parts) + "</entry>"


@st.composite
def atom_feed(draw) -> bytes:
    entries = draw(st.lists(atom_entry(), max_size=4))
    return ('<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom"'
            ' xmlns:dc="http://purl.org/dc/elements/1.1/">'
            f"<title>{_escaped(draw(text), draw(st.booleans()))}</title><id>urn:feed</id>"
            f"<updated>2026-11-22T10:00:00Z</updated>{''.join(entries)}</feed>").encode("utf-8")


PARITY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PARITY
@given(rss_feed(), st.sampled_from([RSS_TYPE, None, "application/xml"]))
def test_generated_rss_reads_the_same_or_goes_to_feedparser(body, content_type):
    agree(body, content_type)


@PARITY
@given(atom_feed(), st.sampled_from(["application/atom+xml", None]))
def test_generated_atom_reads_the_same_or_goes_to_feedparser(body, content_type):
    agree(body, content_type)


def test_generated_feeds_mostly_take_the_fast_path():
    """The parity tests above mean little if the fast path declined nearly everything they made."""
    taken = {"rss": 0, "atom": 0}

    # Derandomized: a share drawn at random fell below the bar now and then (28 of 150 RSS feeds once).
    @settings(max_examples=150, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(rss_feed(), atom_feed())
    def count(rss_body, atom_body):
        taken["rss"] += agree(rss_body, RSS_TYPE)
        taken["atom"] += agree(atom_body, "application/atom+xml")

    count()
    assert taken["rss"] >= 30 and taken["atom"] >= 30, taken

"""A fast reading of plain, well-formed RSS 2.0 and Atom 1.0 feeds, for the fields ``feed_entries`` reads.

feedparser spends about 1 ms of pure-Python work on a small feed (a SAX event
and a handler call per element and per text piece); most feeds are plain
UTF-8 RSS 2.0 or Atom 1.0 that expat, through ``xml.etree``'s C tree builder,
reads in a tenth of that. ``parse_fast`` returns what feedparser would return
for the keys ``feed_entries`` uses (title, link, id, author, summary, content,
the three dates and their parsed forms; the feed's title; version), built by
feedparser's own rules in the order feedparser applies them, with its date
parser and URL joiner. For anything it is not sure of it returns ``None`` and
feedparser reads the feed: another encoding or its byte-order mark, a
DOCTYPE or entity declaration, ``xml:base``, XML that expat rejects, an
element it does not know in an entry (or a known one feedparser gives a
meaning it does not reproduce), nested markup, XHTML or base64 content,
repeated fields, RSS 0.9x/1.0 and Atom 0.3. feedparser is the oracle:
``tests/test_feed_parse_fast.py`` holds the two to the same mentions.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree

from feedparser.api import StrictFeedParser
from feedparser.datetimes import _parse_date
from feedparser.html import _cp1252
from feedparser.mixin import _FeedParserMixin
from feedparser.urls import _urljoin
from feedparser.util import FeedParserDict

XML_NS = "{http://www.w3.org/XML/1998/namespace}"
# feedparser's table of namespaces: a URI it knows gets its standard prefix ("" for the feed formats' own).
PREFIXES = {uri.lower(): prefix for uri, prefix in _FeedParserMixin.namespaces.items()}
STANDARD_PREFIXES = set(PREFIXES.values()) - {""}
MEDIA_TYPES = ("application/xml", "application/rss+xml", "application/atom+xml", "application/rdf+xml")
TEXT_TYPES = {"text", "text/plain", "html", "text/html"}  # as feedparser maps them: plain text or HTML
HTML_TYPES = _FeedParserMixin.html_types

_DECLARATION = re.compile(rb"^<\?xml[^>]*?encoding=['\"](.*?)['\"]")
# A DOCTYPE, an ENTITY or another markup declaration: feedparser rewrites those before parsing.
_MARKUP_DECLARATION = re.compile(rb"<!(?!\[CDATA\[|--)")
_NAMESPACE_DECLARATION = re.compile(rb"xmlns(?::([^\s=]+))?\s*=\s*([\"'])(.*?)\2", re.S)
_LINK_REFERENCE = re.compile("&([A-Za-z0-9_]+);")

# Fields of an entry, by feedparser's name of the element (namespace prefix + "_" + lower-case local name).
DATES = {"pubdate": "published", "published": "published", "issued": "published", "dcterms_issued": "published",
         "updated": "updated", "modified": "updated", "dc_date": "updated", "dcterms_modified": "updated",
         "created": "created", "dcterms_created": "created"}
AUTHORS = {"author", "dc_creator", "dc_author"}
# Elements that touch nothing feed_entries reads, though feedparser has handlers for them.
INERT = {"category", "enclosure", "comments", "source", "dc_subject", "dc_language", "dc_rights", "rights",
         "contributor", "slash_comments", "wfw_commentrss", "wfw_comment"}
# The keys feedparser fills for what we read: an unknown element by one of these names would overwrite it.
OUR_KEYS = {"title", "link", "id", "author", "summary", "content", "published", "updated", "created",
            "description", "guidislink", "links", "authors", "author_detail", "published_parsed", "updated_parsed",
            "created_parsed", *FeedParserDict.keymap}


class NotSure(Exception):
    """The feed has something ``parse_fast`` does not reproduce exactly: feedparser reads it."""


def parse_fast(body: bytes, *, content_type: str | None) -> FeedParserDict | None:
    """feedparser's result for the fields ``feed_entries`` reads, or ``None`` when feedparser must read it."""
    if body[:3] == b"\xef\xbb\xbf":
        body = body[3:]  # a UTF-8 byte-order mark: feedparser drops it before anything else
    try:
        _check_encoding(body, content_type)
        if _MARKUP_DECLARATION.search(body) or b"xml:base" in body:
            raise NotSure
        _check_namespaces(body)
        try:
            root = ElementTree.fromstring(body)
        except ElementTree.ParseError:
            raise NotSure from None
        return _Reader().read(root)
    except NotSure:
        return None


def _check_encoding(body: bytes, content_type: str | None) -> None:
    """UTF-8 all the way, as feedparser would decide it, with nothing it would report."""
    if body[:1] != b"<":  # another byte-order mark, UTF-16/32, EBCDIC, leading white space
        raise NotSure
    http_charset = ""
    if content_type is not None:
        media_type, _, params = content_type.partition(";")
        media_type = media_type.strip()
        if media_type not in MEDIA_TYPES and media_type != "text/xml":
            raise NotSure
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "charset":
                http_charset = value.strip().strip("\"'")
        if http_charset.lower() != "utf-8" and (http_charset or media_type == "text/xml"):
            raise NotSure  # text/xml without a charset is US-ASCII to feedparser (RFC 3023)
    if not http_charset:
        declared = _DECLARATION.match(body)
        if declared and declared[1].lower() != b"utf-8":
            raise NotSure
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise NotSure from None


def _check_namespaces(body: bytes) -> None:
    """Namespace declarations that would make feedparser name an element other than by its URI, or take the
    document for RSS 0.90/1.0, are left to it."""
    if b"xmlns" not in body:
        return
    for prefix, _, uri in _NAMESPACE_DECLARATION.findall(body):
        prefix, uri = prefix.decode("utf-8"), uri.decode("utf-8").lower()
        if uri in ("http://purl.org/rss/1.0/", "http://my.netscape.com/rdf/simple/0.9/"):
            raise NotSure
        if prefix in STANDARD_PREFIXES and PREFIXES.get(uri) != prefix:
            raise NotSure


def _name(tag: str) -> str:
    """feedparser's name of an element: its namespace's standard prefix and its local name, lower case."""
    if tag[0] != "{":
        return tag.lower()
    uri, _, local = tag[1:].partition("}")
    uri = uri.lower()
    if "backend.userland.com/rss" in uri:
        uri = "http://backend.userland.com/rss"
    prefix = PREFIXES.get(uri)
    if prefix is None:
        raise NotSure
    return f"{prefix}_{local.lower()}" if prefix else local.lower()


def _handled_by_feedparser(name: str) -> bool:
    """feedparser has a handler for the element (its own, or one of its namespace modules'): it means something."""
    return hasattr(StrictFeedParser, f"_start_{name}") or hasattr(StrictFeedParser, f"_end_{name}")


def _finish(text: str | None) -> str:
    """What feedparser's ``pop`` makes of an element's text: stripped, mis-decoded UTF-8 repaired, C1 controls
    taken as windows-1252."""
    output = (text or "").strip()
    try:
        output = output.encode("iso-8859-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        pass
    return output.translate(_cp1252)


def _leaf(element: ElementTree.Element) -> str | None:
    if len(element):
        raise NotSure  # markup inside a field: feedparser keeps it as text in ways not reproduced here
    return element.text


def _attributes(element: ElementTree.Element, allowed: set[str]) -> dict[str, str]:
    attrs = {}
    for key, value in element.attrib.items():
        if key.startswith(XML_NS) and key != XML_NS + "base":
            continue  # xml:lang and the like: nothing we read
        key = key.lower()
        if key not in allowed:
            raise NotSure
        attrs[key] = value.lower() if key in ("rel", "type") else value
    return attrs


def _text_type(element: ElementTree.Element) -> None:
    content_type = _attributes(element, {"type"}).get("type")
    if content_type is not None and content_type not in TEXT_TYPES:
        raise NotSure  # XHTML, base64 and other media types


class _Reader:
    def read(self, root: ElementTree.Element) -> FeedParserDict:
        name = _name(root.tag)
        if name == "rss" and root.tag == "rss":
            version = root.get("version", "")
            if not version.startswith("2.") or len(root) != 1 or _name(root[0].tag) != "channel":
                raise NotSure
            _attributes(root, {"version"})
            return self._feed(root[0], "rss20", entry_name="item")
        if root.tag == "{http://www.w3.org/2005/Atom}feed":
            return self._feed(root, "atom10", entry_name="entry")
        raise NotSure

    def _feed(self, container: ElementTree.Element, version: str, *, entry_name: str) -> FeedParserDict:
        feed = FeedParserDict()
        entries = []
        seen_title = False
        for child in container:
            name = _name(child.tag)
            if name == entry_name:
                entries.append(self._entry(child, atom=version == "atom10"))
            elif name == "title":
                if seen_title:
                    raise NotSure
                seen_title = True
                _text_type(child)
                feed["title"] = _finish(_leaf(child))
            elif name in ("item", "entry", "channel", "dc_title", "feed"):
                raise NotSure
            elif any(_name(e.tag) in ("title", "dc_title", "item", "entry") for e in child.iter() if e is not child):
                raise NotSure  # an image's or textinput's title, or an entry where feedparser does not expect it
        return FeedParserDict(bozo=False, version=version, feed=feed, entries=entries)

    def _entry(self, element: ElementTree.Element, *, atom: bool) -> FeedParserDict:
        _attributes(element, set())
        entry = FeedParserDict()
        seen: set[str] = set()
        has_content = False
        for child in element:
            name = _name(child.tag)
            if name == "link" and atom:
                self._atom_link(entry, child)
                continue
            if name in seen:
                raise NotSure  # feedparser keeps the first or the last depending on the element: not reproduced
            seen.add(name)
            if name == "title":
                _text_type(child)
                entry["title"] = _finish(_leaf(child))
            elif name == "link":
                _attributes(child, set())
                text = (_leaf(child) or "").strip()
                link = _finish(_urljoin("", text) if text else text)
                entry["link"] = _LINK_REFERENCE.sub(r"&\g<1>", link.replace("&amp;", "&"))
            elif name in ("guid", "id"):
                attrs = _attributes(child, {"ispermalink"})
                is_link = attrs.get("ispermalink", "true") == "true"
                text = (_leaf(child) or "").strip()
                value = _finish(_urljoin("", text) if is_link and text else text)
                entry["id"] = value
                if is_link:
                    entry.setdefault("link", value)
            elif name in ("description", "summary"):
                if "summary" in entry and not has_content:
                    raise NotSure  # feedparser takes it for content
                _text_type(child)
                entry["summary"] = _finish(_leaf(child))
            elif name in ("content_encoded", "content"):
                if name == "content" and not atom:
                    raise NotSure
                if name == "content":
                    _text_type(child)
                else:
                    _attributes(child, set())
                has_content = True
                value = _finish(_leaf(child))
                entry.setdefault("content", []).append(FeedParserDict(value=value))
                entry.setdefault("summary", value)
            elif name in DATES:
                _attributes(child, set())
                key = DATES[name]
                if key in entry:
                    raise NotSure
                value = _finish(_leaf(child))
                entry[key] = value
                entry[f"{key}_parsed"] = _parse_date(value)
            elif name in AUTHORS:
                if "author" in entry:
                    raise NotSure
                _attributes(child, set())
                entry["author"] = self._atom_author(child) if len(child) else _finish(child.text)
            elif name in INERT:
                if any(e is not child and _name(e.tag) in ("title", "link", "id") for e in child.iter()):
                    raise NotSure
            elif len(child) or name in OUR_KEYS or _handled_by_feedparser(name):
                raise NotSure
        return entry

    @staticmethod
    def _atom_link(entry: FeedParserDict, element: ElementTree.Element) -> None:
        attrs = _attributes(element, {"rel", "type", "href", "title", "length", "hreflang"})
        if "href" not in attrs or len(element) or (element.text or "").strip():
            raise NotSure
        rel = attrs.get("rel", "alternate")
        content_type = attrs.get("type", "application/atom+xml" if rel == "self" else "text/html")
        if rel == "alternate" and _FeedParserMixin.map_content_type(content_type) in HTML_TYPES:
            entry["link"] = _urljoin("", attrs["href"])

    @staticmethod
    def _atom_author(element: ElementTree.Element) -> str:
        """``name (email)``, the name or the email, as feedparser's ``_sync_author_detail`` writes them."""
        if (element.text or "").strip():
            raise NotSure
        detail = {}
        for child in element:
            name = _name(child.tag)
            if name not in ("name", "email", "uri") or name in detail or (child.tail or "").strip():
                raise NotSure
            _attributes(child, set())
            detail[name] = (_leaf(child) or "").strip()
        name, email = detail.get("name"), detail.get("email")
        if name and email:
            return f"{name} ({email})"
        return name or email or ""

"""From a feed's bytes to ``Mention``s: feedparser for every RSS and Atom dialect, html2text for the text.

Plain UTF-8 RSS 2.0 and Atom 1.0 feeds take a fast path (``feed_parse_fast``) that gives what feedparser
gives for the fields read here, with feedparser as its test oracle.

feedparser copes with the feeds found in the wild: RSS 0.9x, 1.0 (RDF) and
2.0, Atom 0.3 and 1.0, wrong or missing encodings, HTML entities, CDATA, and
XML that is not well-formed (``bozo``: it keeps what it could parse), and it
removes scripts from HTML content. Relative links are resolved here, against
where the feed was fetched from, not by feedparser: it would resolve a
relative guid too, and an entry's id must not change when its feed moves.
"""

from __future__ import annotations

import calendar
import hashlib
import io
import logging
import re
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urljoin

import feedparser
import html2text

from monitor.links import canonical_url, public_url
from monitor.mention import Mention

from .feed_parse_fast import parse_fast
from .html_text_fast import simple_html_to_text

log = logging.getLogger("complaint_monitor.sources.rss")


def html_to_text(html: str, *, base_url: str = "") -> str:
    if "<" not in html and "&" not in html:
        return html.strip()
    # Paragraphs, emphasis and plain links (most entry bodies) are written without html2text's parser, to
    # the same text; anything else goes to html2text.
    simple = simple_html_to_text(html, base_url=base_url)
    return simple if simple is not None else html2text_text(html, base_url=base_url)


def html2text_text(html: str, *, base_url: str = "") -> str:
    converter = html2text.HTML2Text(baseurl=base_url)
    converter.body_width = 0  # no hard wrapping: the email and the scorer wrap for themselves
    converter.ignore_images = True
    converter.ignore_emphasis = True  # **bold** and _italics_ are noise to the scorer and in an email
    converter.inline_links = True  # the responder wants the links: they stay, as [text](url)
    return converter.handle(html).strip()


# A numeric character reference, optionally followed by a second one (the two halves of a surrogate pair).
_CHARREFS = re.compile(rb"&#([xX][0-9a-fA-F]{1,8}|[0-9]{1,10});(?:&#([xX][0-9a-fA-F]{1,8}|[0-9]{1,10});)?")
_REPLACEMENT = b"&#xFFFD;"


def _codepoint(ref: bytes) -> int:
    return int(ref[1:], 16) if ref[:1] in (b"x", b"X") else int(ref)


def _surrogate(code: int) -> bool:
    return 0xD800 <= code <= 0xDFFF


def _fix_surrogate_refs(match: re.Match) -> bytes:
    first, second = _codepoint(match[1]), _codepoint(match[2]) if match[2] else None
    if 0xD800 <= first <= 0xDBFF and second is not None and 0xDC00 <= second <= 0xDFFF:
        # A UTF-16 pair written as two references (a truncated or naive encoder): the character it means.
        return b"&#x%X;" % (0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00))
    if not _surrogate(first) and (second is None or not _surrogate(second)):
        return match[0]
    return b"".join(_REPLACEMENT if _surrogate(code) else b"&#x%X;" % code
                    for code in (first, second) if code is not None)


def without_surrogate_refs(body: bytes) -> bytes:
    """``&#xD83D;`` (half an emoji) is no character: feedparser's fallback parser raises on it and the whole
    feed would fail on every poll. Each such reference becomes U+FFFD, the rest of the text stays."""
    return _CHARREFS.sub(_fix_surrogate_refs, body) if b"&#" in body else body


def parse_feed(body: bytes, *, content_type: str | None) -> feedparser.FeedParserDict:
    body = without_surrogate_refs(body)
    # Plain UTF-8 RSS 2.0 and Atom 1.0 are read by expat in a fraction of feedparser's time, to the same result
    # for every field read below; the rest (and whatever the fast reading is not sure of) goes to feedparser.
    fast = parse_fast(body, content_type=content_type)
    return fast if fast is not None else parse_with_feedparser(body, content_type=content_type)


def parse_with_feedparser(body: bytes, *, content_type: str | None) -> feedparser.FeedParserDict:
    headers = {"content-type": content_type} if content_type else {}
    # A stream, never bytes: feedparser treats a bare string or bytes as a file name or URL to open.
    # Its HTML sanitiser is skipped (a third of the parsing time): html2text drops scripts and styles
    # anyway, and the text is only ever put into HTML escaped. Links inside HTML are resolved by
    # html2text against where the feed came from, or here where the feed sets its own xml:base.
    return feedparser.parse(io.BytesIO(body), response_headers=headers, sanitize_html=False,
                            resolve_relative_uris=b"xml:base" in body)


def entry_time(entry: Any) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = entry.get(key)
        if value:
            return datetime.fromtimestamp(calendar.timegm(value), timezone.utc)
    return None


def entry_id(entry: Any) -> str:
    """guid, else link, else a hash of title and date: the same entry keeps its id when edited in place."""
    if entry.get("id"):
        return str(entry["id"])
    if entry.get("link"):
        return str(entry["link"])
    # The first-published date, not the updated one, so an edit does not make a new entry.
    # RSS 0.92 items may lack a title too: then their text tells them apart.
    title = entry.get("title") or entry.get("summary") or ""
    basis = f"{title}|{entry.get('published') or entry.get('created') or entry.get('updated', '')}"
    return "sha1:" + hashlib.sha1(basis.encode("utf-8", "replace")).hexdigest()


def entry_text(entry: Any, *, base_url: str = "") -> str:
    for content in entry.get("content") or []:
        if content.get("value"):
            return html_to_text(content["value"], base_url=base_url)
    return html_to_text(entry.get("summary") or "", base_url=base_url)


def newest_entries(entries: list[Any], limit: int, *, now: datetime) -> list[Any]:
    """The ``limit`` newest entries (an entry without a date counts as new), in the feed's order."""
    if len(entries) <= limit:
        return entries
    ranked = sorted(range(len(entries)), key=lambda i: entry_time(entries[i]) or now, reverse=True)
    return [entries[i] for i in sorted(ranked[:limit])]


def entry_mentions(parsed: feedparser.FeedParserDict, *, source: str, feed_id: str, feed_name: str,
                   base_url: str, reach: float, now: datetime, limit: int | None = None) -> list[Mention]:
    """One Mention per entry (the ``limit`` newest); ``feed_id`` (the configured URL) keeps ids stable when the
    feed moves.

    A date in the future (a wrong time zone, a typo) is taken as now, so age and velocity stay sane.

    ``base_url`` is where the feed came from: relative links are resolved against it, without the credentials
    it may carry (a ``user:password@`` would otherwise reach every stored and emailed link).
    """
    base_url = public_url(base_url)
    title = feed_name or html_to_text(parsed.feed.get("title") or "") or feed_id
    mentions = []
    entries = parsed.entries if limit is None else newest_entries(parsed.entries, limit, now=now)
    for entry in entries:
        try:
            link = urljoin(base_url, entry["link"]) if entry.get("link") else base_url
            mentions.append(Mention(
                source=source, source_id=f"{feed_id}|{entry_id(entry)}", kind="entry", url=link,
                title=html_to_text(entry.get("title") or ""), text=entry_text(entry, base_url=base_url),
                author=entry.get("author"), created_at=min(entry_time(entry) or now, now), fetched_at=now, place=title,
                reach=reach, extra={"feed": title, "feed_url": feed_id, "canonical_url": canonical_url(link)},
            ))
        except Exception as err:  # one malformed entry must not cost the feed's other entries
            log.warning("feed %s: skipped an entry that could not be read: %s: %s", feed_id, type(err).__name__, err)
    return mentions

"""html2text's output for the simplest HTML, without html2text: paragraphs, emphasis and plain links.

Most entry bodies are a paragraph or two with bold words and a link or two.
html2text reads them with ``html.parser`` and a state machine of some 80
attributes: about 70 us a body, most of what is left of reading a feed once
feedparser is out of the way. ``simple_html_to_text`` does html2text's own
steps for exactly this HTML (``<p>``, ``<b>``, ``<strong>``, ``<i>``, ``<em>``
and ``<a href>`` with a plain URL, no entities, nothing nested in a link but
emphasis), with html2text's escaping function and the settings of
``feed_entries.html_to_text`` (no wrapping, emphasis ignored, links inline),
and returns ``None`` for anything else: html2text reads that.
``tests/test_html_text_fast.py`` holds it to html2text on generated HTML.
"""

from __future__ import annotations

import re
from urllib.parse import urljoin

from html2text.utils import escape_md, escape_md_section

# The only markup read here; any other "<" (or any "&") and html2text reads the text.
_TAG = re.compile(r"<(/?)(p|b|strong|i|em|a)(?: href=(?:\"([^\"<>&\s]*)\"|'([^'<>&\s]*)'))?>")
_WHITESPACE = re.compile(r"\s+")
_ABSOLUTE_URL = re.compile(r"^[a-zA-Z+]+://")


class _Writer:
    """html2text's ``o()`` for the states this HTML can reach: no lists, quotes, pre, tables or footnotes."""

    def __init__(self):
        self.parts: list[str] = []
        self.start = True
        self.space = False
        self.p_p = 0
        self.last_was_newline = False

    def out(self, text: str) -> None:
        self.parts.append(text)
        if text:
            self.last_was_newline = text[-1] == "\n"

    def o(self, data: str, *, puredata: bool = False, end: bool = False) -> None:
        if puredata:
            data = _WHITESPACE.sub(" ", data)
            if data and data[0] == " ":
                self.space = True
                data = data[1:]
        if not data and not end:
            return
        if self.start:
            self.space, self.p_p, self.start = False, 0, False
        if end:
            self.p_p = 0
            self.out("\n")
            self.space = False
        if self.p_p:
            self.out("\n" * self.p_p)
            self.space = False
        if self.space:
            if not self.last_was_newline:
                self.out(" ")
            self.space = False
        self.p_p = 0
        self.out(data)


class _NotSimple(Exception):
    """Markup this module does not read: html2text reads the text."""


class _Converter(_Writer):
    """html2text's handling of the tags above, for one text."""

    def __init__(self, base_url: str):
        super().__init__()
        self.base_url = base_url
        self.link: str | None = None  # the open link's href
        self.automatic: str | None = None  # html2text's maybe_automatic_link: the href, until the text starts
        self.empty_link = False

    def data(self, data: str) -> None:
        """html2text's ``handle_data`` for text between tags."""
        if not data:
            return
        if "<" in data:
            raise _NotSimple
        if self.automatic is not None:
            if self.automatic == data and _ABSOLUTE_URL.match(self.automatic):
                self.o("<" + data + ">")
                self.empty_link = False
                return
            self.o("[")
            self.automatic, self.empty_link = None, False
        self.o(escape_md_section(data, snob=False), puredata=True)

    def tag(self, name: str, *, closing: bool, href: str | None) -> None:
        """html2text's ``handle_tag`` for these tags."""
        if (href is not None) != (name == "a" and not closing):
            raise _NotSimple  # a link without href, or an href anywhere else
        if not closing and self.automatic is not None:  # a tag as the first thing inside a link
            self.o("[")
            self.automatic, self.empty_link = None, False
        if name == "p":
            if self.link is not None:
                raise _NotSimple
            self.p_p = 2
        elif name == "a":
            if closing == (self.link is None) or (href or "").startswith("#"):
                raise _NotSimple  # nested, unopened, or internal (html2text drops those) links
            if not closing:
                self.link, self.automatic, self.empty_link = href, href, True
            elif self.automatic and not self.empty_link:  # written as <url> already
                self.automatic, self.link = None, None
            else:
                if self.empty_link:
                    self.o("[")
                    self.empty_link, self.automatic = False, None
                self.p_p = 0
                self.o(f"]({escape_md(urljoin(self.base_url, self.link))})")
                self.link = None
        # b, strong, i, em: nothing, with emphasis ignored

    def finish(self) -> str:
        if self.link is not None:
            raise _NotSimple
        if self.p_p == 0:  # html2text's closing pbr() and o("", force="end")
            self.p_p = 1
        self.o("", end=True)
        return "".join(self.parts).strip()


def simple_html_to_text(html: str, *, base_url: str = "") -> str | None:
    """What ``html_to_text`` makes of ``html`` with html2text, or ``None`` when the HTML is not this simple."""
    if "&" in html:
        return None
    converter = _Converter(base_url)
    position = 0
    try:
        for tag in _TAG.finditer(html):
            converter.data(html[position:tag.start()])
            converter.tag(tag[2], closing=tag[1] == "/", href=tag[3] if tag[3] is not None else tag[4])
            position = tag.end()
        converter.data(html[position:])
        return converter.finish()
    except _NotSimple:
        return None

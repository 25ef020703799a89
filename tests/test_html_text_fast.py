"""The fast path for simple HTML against html2text, its oracle, on HTML Hypothesis builds.

``simple_html_to_text`` returns exactly what html2text (with ``html_to_text``'s settings) writes, or
``None``. The HTML is built from the tags it reads and the ones it must leave to html2text, and from text
that html2text escapes or squeezes (list and heading openers, backslashes, brackets, every kind of white
space), with links whose text is their own URL; Hypothesis shrinks a disagreement to a short one.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sources.feed_entries import html2text_text, html_to_text
from sources.html_text_fast import simple_html_to_text

BASE = "https://blog.example/2026/post/"
HREFS = ["https://x.example/a", "/rel/1", "rel/2", "", "#top", "mailto:me@x.example", "https://x.example/(a)[b]",
         "http://y.example", "ftp://f.example/file"]
TAGS = ["<p>", "</p>", "<b>", "</b>", "<strong>", "</strong>", "<i>", "</i>", "<em>", "</em>", "</a>",
        "<br>", "<div>", "</div>", "<span>", "<script>x</script>", "<h2>", "</h2>", "<a>", "<P>", "<a  href='x'>",
        "<ul><li>", "</li></ul>", "<blockquote>", "<pre>", "<!-- c -->", "<img src='/i.png'>"]
WORDS = ["Acme", "refund", "1.", "1. ", "- ", "-", "+ ", "* ", "# ", "\\", "\\*", "[", "]", "(", ")", "_", "`", "!",
         "2026.", " ", "  ", "\n", "\t", "\r\n", "\u00a0", "\u2003", ".", "&amp;", "&", "x&y", ">", "<", "\u2019"]


@st.composite
def html(draw) -> str:
    pieces = []
    for _ in range(draw(st.integers(0, 14))):
        kind = draw(st.sampled_from(["word", "word", "word", "tag", "link", "autolink"]))
        if kind == "word":
            pieces.append(draw(st.sampled_from(WORDS)))
        elif kind == "tag":
            pieces.append(draw(st.sampled_from(TAGS)))
        else:
            href = draw(st.sampled_from(HREFS))
            quote = draw(st.sampled_from(['"', "'"]))
            pieces.append(f"<a href={quote}{href}{quote}>")
            if kind == "autolink":
                pieces.append(href)
    return "".join(pieces)


SIMPLE_WORDS = [w for w in WORDS if "&" not in w and "<" not in w]
SIMPLE_TAGS = ["<p>", "</p>", "<b>", "</b>", "<strong>", "</strong>", "<i>", "</i>", "<em>", "</em>"]


@st.composite
def simple_html(draw) -> str:
    """HTML of only the tags the fast path reads, links closed: what it should read itself."""
    pieces = []
    for _ in range(draw(st.integers(0, 14))):
        kind = draw(st.sampled_from(["word", "word", "word", "tag", "link"]))
        if kind == "word":
            pieces.append(draw(st.sampled_from(SIMPLE_WORDS)))
        elif kind == "tag":
            pieces.append(draw(st.sampled_from(SIMPLE_TAGS)))
        else:
            href = draw(st.sampled_from([h for h in HREFS if not h.startswith("#")]))
            inner = draw(st.sampled_from(["", href, "text", " spaced text ", "<b>bold</b>", "<em></em>x", "1. x",
                                          "[x]", href + " ", f"<b>{href}</b>"]))
            pieces.append(f"<a href='{href}'>{inner}</a>")
    return "".join(pieces)


PARITY = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PARITY
@given(st.one_of(html(), simple_html()))
def test_simple_html_reads_as_html2text_reads_it_or_goes_to_html2text(text):
    simple = simple_html_to_text(text, base_url=BASE)
    if simple is not None:
        assert simple == html2text_text(text, base_url=BASE)


def test_the_usual_entry_bodies_take_the_fast_path():
    bodies = ["<p>Ordered from <b>Acme</b> (order 7), charged twice. <a href='/complaints/7'>details</a></p>",
              '<p>Acme broke it.</p>\n<p>1. Call <a href="https://acme.example/help">https://acme.example/help</a>'
              " - nobody answers <em>[again]</em></p>",
              "<p>\\o/ <strong>- Acme</strong></p><p><a href='x'><b>bold link</b></a> + more</p>"]
    for body in bodies:
        simple = simple_html_to_text(body, base_url=BASE)
        assert simple is not None and simple == html2text_text(body, base_url=BASE) == html_to_text(body, base_url=BASE)


def test_html_of_the_tags_it_reads_takes_the_fast_path():
    taken = []

    @settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(simple_html())
    def count(text):
        taken.append(simple_html_to_text(text, base_url=BASE) is not None)

    count()
    assert sum(taken) >= 240, sum(taken)

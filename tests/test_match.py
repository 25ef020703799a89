from monitor.config import Brand
from monitor.match import BrandMatcher, quote_around

MATCHER = BrandMatcher([
    Brand(name="Acme", keywords=["acme", "@acmesupport", "acme cloud"], exclude=["acme thunderbolt"]),
    Brand(name="Globex", keywords=["globex"]),
])


def test_word_boundaries_case_and_handles():
    assert MATCHER.match("I hate ACME today").brand == "Acme"
    assert MATCHER.match("ping @AcmeSupport please").keyword == "@acmesupport"
    assert MATCHER.match("#acme is trending").brand == "Acme"
    assert MATCHER.match("Welcome to Acmeville") is None
    assert MATCHER.match("megaacme") is None


def test_exclusions_drop_only_their_brand():
    assert MATCHER.match("the Acme Thunderbolt whistle") is None
    found = MATCHER.match_all("acme thunderbolt vs globex")
    assert [m.brand for m in found] == ["Globex"]


def test_span_points_at_the_text_even_after_unicode_case_changes():
    text = "İstanbul office of Acme was rude"
    m = MATCHER.match(text)
    assert text[m.start:m.end] == "Acme"


def test_most_named_brand_first():
    found = MATCHER.match_all("globex, then acme, acme again, and acme cloud")
    assert found[0].brand == "Acme" and found[0].hits >= 3


def test_quote_is_the_sentence_around_the_hit():
    text = "Nice weather. Acme lost my parcel for the third time! Anyway, lunch."
    m = MATCHER.match(text)
    assert quote_around(text, m.start, m.end) == "Acme lost my parcel for the third time!"


def test_match_is_what_match_all_puts_first_ties_included():
    tied = BrandMatcher([Brand(name="Initech", keywords=["tps"]), Brand(name="Initrode", keywords=["tps", "initrode"]),
                         Brand(name="Globex", keywords=["globex"])])
    texts = ["tps report", "globex and tps", "tps, tps and initrode", "globex globex tps tps", "nothing here", ""]
    for text in texts:
        found = tied.match_all(text)
        assert tied.match(text) == (found[0] if found else None), text
    assert tied.match("tps report").brand == "Initech"  # equal hits at the same place: the first configured
    assert tied.match("tps, tps and initrode").brand == "Initrode"  # named three times

"""The fast paths against their references on texts Hypothesis makes: they run with or without ../shared/data.

``SentimentScorer.vader`` drives VADER's own steps itself and must give exactly what ``polarity_scores``
gives; the rule book's fast path (prefilters, literals, compiled regexes) must fire exactly what
rule-engine's own evaluation fires. The texts are built from the words those references react to
(VADER's lexicon, boosters, negations, emoji; the shipped rules' example phrases), so every run
reaches their rules, and Hypothesis shrinks a disagreement to a short text.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vaderSentiment.vaderSentiment import BOOSTER_DICT, NEGATE, SPECIAL_CASES, SentimentIntensityAnalyzer

from monitor.config import Thresholds
from monitor.mention import Engagement, Mention
from monitor.rules import FIELDS, DeclaredField, RuleBook, RuleFields, load_pack
from monitor.score import Scorer
from monitor.sentiment import SentimentScorer, split_sentences
from tests.conftest import RULE_PACKS

REFERENCE = SentimentIntensityAnalyzer()
LEXICON = {"refund": -1.5, "Overcharged": -2.0, "cancelled": -1.0}
EXTENDED = SentimentIntensityAnalyzer()
EXTENDED.lexicon.update({w.lower(): v for w, v in LEXICON.items()})

# What VADER reacts to: its words, and the words around them that change how much they count.
VADER_WORDS = sorted(REFERENCE.lexicon)[::7] + sorted(BOOSTER_DICT) + list(NEGATE) + list(SPECIAL_CASES) + [
    "but", "BUT", "kind of", "sort of", "least", "at least", "very least", "without a doubt", "no", "never so",
    "refund", "overcharged", "cancelled", "Acme", "support", "order", "is", "the", "was", "I", "it"]
EMOJI = sorted(REFERENCE.emojis)[::60]
PUNCTUATION = [".", "!", "?", "!!!", "???", "?!", "...", ",", ":)", ":(", ";-)"]

RULES = [rule for pack in RULE_PACKS for rule in load_pack(Path(pack))]
EXAMPLES = [e for rule in RULES for e in rule.examples_match + rule.examples_no_match if isinstance(e, str)]
RULE_WORDS = sorted({w for e in EXAMPLES for w in e.split()})

PARITY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _word(vocabulary: list[str]):
    word = st.sampled_from(vocabulary)
    return st.one_of(word, word.map(str.upper), word.map(str.capitalize))


def texts(vocabulary: list[str], phrases: list[str] | None = None):
    token = st.one_of(_word(vocabulary), st.sampled_from(EMOJI), st.sampled_from(PUNCTUATION),
                      *([st.sampled_from(phrases)] if phrases else []))
    return st.lists(token, max_size=40).map(" ".join)


def _agree(scorer: SentimentScorer, reference: SentimentIntensityAnalyzer, text: str) -> None:
    pieces = [text] + [text[a:b].strip() for a, b in split_sentences(text)]
    for piece in pieces:
        assert scorer.vader(piece) == reference.polarity_scores(piece), piece
    document = scorer.score(text)
    if len(pieces) > 2:  # the document's scores are built from those very sentence scores
        each = [reference.polarity_scores(piece)["compound"] for piece in pieces[1:]]
        assert (document.min_sentence, document.sentences) == (min(each), len(each)), text


@PARITY
@given(texts(VADER_WORDS))
def test_fast_vader_equals_polarity_scores_on_generated_texts(text):
    _agree(SentimentScorer(), REFERENCE, text)


@PARITY
@given(texts(VADER_WORDS + list(LEXICON)))
def test_fast_vader_with_an_extra_lexicon_equals_polarity_scores_on_generated_texts(text):
    _agree(SentimentScorer(lexicon=LEXICON), EXTENDED, text)


FACTS = Scorer(rules=RuleBook([]), sentiment=SentimentScorer(), thresholds=Thresholds())
BOOK = RuleBook(RULES)
# Any number a rule may read (growth, reach, sightings, spike, ...), now and then set to a value of its own.
NUMBER = st.one_of(st.integers(0, 20).map(float), st.floats(-1, 1), st.floats(0, 1e7))
NUMBERS = st.fixed_dictionaries({}, optional={name: NUMBER for name, (kind, _) in FIELDS.items()
                                              if kind == FIELDS["score"][0]})


@PARITY
@given(text=texts(RULE_WORDS + VADER_WORDS[::5], EXAMPLES), title=texts(RULE_WORDS, EXAMPLES[::4]),
       score=st.integers(0, 5000), comments=st.integers(0, 800), numbers=NUMBERS, own_account=st.booleans(),
       tags=st.lists(st.sampled_from(sorted({t for r in RULES for t in r.tags} | {"failure"})), max_size=3))
def test_fast_rule_path_fires_what_rule_engine_fires_on_generated_texts(text, title, score, comments, numbers,
                                                                        own_account, tags):
    mention = Mention(source="t", source_id="1", url="", title=title, text=text, brand="Acme",
                      engagement=Engagement(score=score, comments=comments))
    facts = {**FACTS.score(mention).facts, **numbers, "own_account": own_account}
    # Each rule alone, with the tags given ...
    _fast_path_agrees(RULES, BOOK, alone={**facts, "tags": tuple(tags)}, in_order=facts)


def _fast_path_agrees(rules, book: RuleBook, *, alone: dict, in_order: dict) -> None:
    """Each rule alone on ``alone`` (the fast check, compiled alone and in the book, against rule-engine's own) ...
    and the whole book in order on ``in_order``, each rule seeing the tags of those that fired before it."""
    for rule, in_book in zip(rules, book.rules):
        expected = rule.expression.matches(dict(alone))
        assert bool(rule.check(dict(alone))) == expected, rule.when
        assert bool(in_book.check(dict(alone))) == expected, rule.when
    fired, gathered = [], list(in_order["tags"])
    for rule in rules:
        if rule.expression.matches({**in_order, "tags": tuple(gathered)}):
            fired.append(rule.name)
            gathered.extend(t for t in rule.tags if t not in gathered)
    verdict = book.evaluate(in_order)
    assert (verdict.fired, verdict.tags) == (fired, gathered)


# Declared source fields (typed by the book's own context): the fast path reads them as it reads core fields.
DECLARED = RuleFields([DeclaredField("instance", "string", "instance", frozenset({"mastodon"})),
                       DeclaredField("reblogs", "integer", "boosts", frozenset({"mastodon"})),
                       DeclaredField("nsfw", "boolean", "over 18", frozenset({"reddit"})),
                       DeclaredField("langs", "strings", "languages", frozenset({"bluesky", "mastodon"}))])
DECLARED_WHENS = [
    'reblogs >= 3', 'reblogs < 2 or compound <= -0.5', 'nsfw', 'not nsfw and score > 10',
    'instance == "social.test"', 'instance != "social.test" and reblogs > 0', 'instance =~ "^social"',
    'instance.as_lower =~~ "test"', '"de" in langs', '"de" in langs and text.as_lower =~~ "acme"',
    'source == "mastodon" and reblogs >= 1 and "failure" in tags', 'nsfw and instance == ""',
]


def _declared_rules(tmp: Path) -> list:
    pack = tmp / "declared.yaml"
    pack.write_text("rules:\n" + "".join(f"  - {{name: r{i}, when: '{when}', urgency: 1, tags: [t{i % 3}]}}\n"
                                         for i, when in enumerate(DECLARED_WHENS)), encoding="utf-8")
    return load_pack(pack, DECLARED)


@PARITY
@given(text=texts(RULE_WORDS + ["acme", "Acme"], EXAMPLES[::4]), source=st.sampled_from(["mastodon", "reddit", "bluesky", "t"]),
       instance=st.sampled_from(["social.test", "SOCIAL.TEST", "other.test", "", 7]),
       reblogs=st.one_of(st.integers(0, 6), st.none(), st.just("many")), nsfw=st.one_of(st.booleans(), st.none()),
       langs=st.one_of(st.lists(st.sampled_from(["en", "de", "fr"]), max_size=3), st.none()), score=st.integers(0, 40),
       tags=st.lists(st.sampled_from(["failure", "t1"]), max_size=2))
def test_fast_rule_path_fires_what_rule_engine_fires_on_declared_source_fields(tmp_path_factory, text, source, instance,
                                                                              reblogs, nsfw, langs, score, tags):
    rules = _declared_rules(tmp_path_factory.mktemp("pack"))
    book = RuleBook(rules, fields=DECLARED)
    scorer = Scorer(rules=book, sentiment=SentimentScorer(), thresholds=Thresholds())
    extra = {k: v for k, v in {"instance": instance, "reblogs": reblogs, "nsfw": nsfw, "langs": langs}.items()
             if v is not None}
    mention = Mention(source=source, source_id="1", url="", title="", text=text, brand="Acme", extra=extra,
                      engagement=Engagement(score=score))
    facts = {**scorer.score(mention).facts, "tags": tuple(tags)}
    assert set(facts) == set(DECLARED.defaults())  # every declared field is there, read or empty
    _fast_path_agrees(rules, book, alone=facts, in_order=facts)

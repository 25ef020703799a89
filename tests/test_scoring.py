"""Sentiment, the fast rule path, and the score / explain / backtest commands."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from monitor.config import Thresholds, load_config
from monitor.mention import Engagement, Mention
from monitor.pipeline import Pipeline
from monitor.rules import RuleBook, literal_prefilter, load_pack, required_literals
from monitor.score import Scorer
from monitor.sentiment import SentimentScorer, split_sentences
from monitor.source import Poll
from monitor.store import Store
from tests.conftest import ROOT, RULE_PACKS, SHARED_DATA

VADER = SentimentIntensityAnalyzer()


def cli(config, *args, stdin: str | None = None):
    return subprocess.run([sys.executable, "-m", "monitor.cli", "--config", str(config), *args], input=stdin,
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def real_tweets() -> list[str]:
    path = SHARED_DATA / "vader_groundtruth" / "tweets_GroundTruth.txt"
    if not path.exists():
        pytest.skip(f"shared data absent: {path}")
    return [line.rstrip("\r").split("\t", 2)[2] for line in path.read_text(encoding="utf-8").splitlines()]


# -- sentiment ----------------------------------------------------------------


def test_single_sentence_texts_get_exactly_vaders_scores():
    scorer = SentimentScorer()
    singles = [t for t in real_tweets() if len(split_sentences(t)) == 1][:300]
    assert len(singles) >= 100
    for text in singles:
        s, v = scorer.score(text), VADER.polarity_scores(text)
        assert (s.compound, s.negative, s.neutral, s.positive) == (v["compound"], v["neg"], v["neu"], v["pos"]), text
        assert s.min_sentence == v["compound"] and s.sentences == 1


# Each of VADER's own rules at least once (negation, "but", ALL CAPS, boosters, "kind of",
# "least", idioms, "!"/"?" emphasis, emoji, emoticons): the fast path must not drift from
# polarity_scores even where ../shared/data is absent and the real-text tests skip.
VADER_RULE_CASES = [
    "The service was not good.", "The food is GREAT but the staff is RUDE!!!", "It was kind of okay?",
    "This is the least helpful support ever", "They never fail to disappoint", "Absolutely horrible, no refund",
    "I'm not sure it isn't bad", "The bomb! This is the shit", "Cut me some slack, it was a hard day",
    "😡😡 worst order ever", "ok :( not happy", "Meh.", "", "   ", "no", "Without a doubt, excellent???",
    "Acme is extremely unhelpful and somewhat rude, but the refund came", "NOT BAD AT ALL",
]


@pytest.mark.parametrize("lexicon", [None, {"refund": -1.5, "overcharged": -2.0}])
def test_fast_vader_equals_polarity_scores_on_every_vader_rule(lexicon):
    scorer = SentimentScorer(lexicon=lexicon)
    reference = SentimentIntensityAnalyzer()
    if lexicon:
        reference.lexicon.update(lexicon)
    for text in VADER_RULE_CASES:
        assert scorer.vader(text) == reference.polarity_scores(text), text


def every_real_text() -> list[str]:
    """Every text people wrote in ../shared/data: VADER's four ground-truth sets, UCI's review
    sentences and every message (customers' and agents') of the IBM customer-care conversations."""
    texts = []
    for path in sorted((SHARED_DATA / "vader_groundtruth").glob("*_GroundTruth.txt")):
        texts += [line.rstrip("\r").split("\t", 2)[2] for line in path.read_text(encoding="utf-8").splitlines()]
    for path in sorted((SHARED_DATA / "uci_sentiment_labelled_sentences").glob("*_labelled.txt")):
        texts += [line.rpartition("\t")[0] for line in path.read_text(encoding="utf-8").split("\n") if "\t" in line]
    for path in sorted((SHARED_DATA / "ibm_twitter_customer_care").glob("*.json")):
        for conversation in json.loads(path.read_text(encoding="utf-8")) if path.stem in ("dev", "test") else []:
            texts += [m["message"] for m in conversation["dialogContent"]]
    if len(texts) < 20_000:
        pytest.skip(f"shared data absent or incomplete: {SHARED_DATA}")
    return texts


@pytest.mark.parametrize("lexicon", [None, {"refund": -1.5, "Overcharged": -2.0, "cancelled": -1.0}])
def test_sentence_scores_equal_vader_on_every_real_text_and_sentence(lexicon):
    """SentimentScorer.vader drives VADER's own per-word steps itself; on every real text, and on
    every sentence it is cut into, it must give exactly what polarity_scores gives."""
    scorer = SentimentScorer(lexicon=lexicon)
    reference = SentimentIntensityAnalyzer()
    reference.lexicon.update({w.lower(): v for w, v in (lexicon or {}).items()})
    texts = every_real_text()
    compared = with_emoji = with_but = 0
    for text in texts:
        pieces = [text] + [text[a:b].strip() for a, b in split_sentences(text)]
        for piece in pieces if len(pieces) > 2 else pieces[:1]:
            assert scorer.vader(piece) == reference.polarity_scores(piece), piece
            compared += 1
        if len(pieces) > 2:  # and the document's scores are built from those very sentence scores
            each = [reference.polarity_scores(piece)["compound"] for piece in pieces[1:]]
            document = scorer.score(text)
            assert document.min_sentence == min(each) and document.sentences == len(each), text
            assert document.negative_share == round(sum(c <= -0.05 for c in each) / len(each), 4), text
        with_emoji += not reference.emojis.keys().isdisjoint(text)
        with_but += " but " in text.lower()
    assert compared > len(texts) + 5_000 and with_emoji > 50 and with_but > 1_000


def test_long_text_aggregates_its_sentences():
    sentences = ["The delivery was quick and the kettle looks lovely.",
                 "Sadly Acme's kettle broke after two days and support was rude and useless.",
                 "I made tea."]
    text = " ".join(sentences)
    start = text.index("Acme")
    s = SentimentScorer().score(text, brand_span=(start, start + 4))
    each = [VADER.polarity_scores(x)["compound"] for x in sentences]
    weights = [x.count(" ") + 1 + (i > 0) for i, x in enumerate(sentences)]  # chunks keep their leading space
    assert s.sentences == 3
    assert s.min_sentence == min(each) < -0.5
    assert s.worst_sentence == sentences[1]
    assert s.negative_share == round(sum(c <= -0.05 for c in each) / 3, 4)
    assert s.brand_compound == round(each[1], 4)  # only the sentence naming the brand
    assert s.compound == round(sum(c * w for c, w in zip(each, weights)) / sum(weights), 4)


def test_wall_of_text_is_cut_so_vader_never_sees_a_long_input():
    text = " ".join(["word"] * 1000)  # no punctuation at all
    spans = split_sentences(text)
    assert len(spans) == 13 and all(text[a:b].count(" ") < 80 for a, b in spans)


@pytest.mark.parametrize(("text", "sentences"), [
    ("Acme.com is down again. 32.58 mbps, R.I.P. my evening!", ["Acme.com is down again.", "32.58 mbps, R.I.P.",
                                                                 "my evening!"]),
    ('He said "no." Then he hung up (twice!) and left...', ['He said "no."', "Then he hung up (twice!)",
                                                            "and left..."]),
    ("wtf...wtf ... ok?!\n\nline two", ["wtf...wtf ...", "ok?!", "line two"]),
    ("!!!!! no words", ["!!!!!", "no words"]),
])
def test_sentences_end_at_punctuation_before_a_space_not_inside_a_word(text, sentences):
    assert [text[a:b].strip() for a, b in split_sentences(text)] == sentences


def test_splitting_a_megabyte_of_punctuation_gives_whole_runs():
    # The runs are possessive: "!!!...!" then a space is one piece, found without backtracking.
    text = "!" * 500_000 + " x " + "a." * 250_000
    assert [(b - a) for a, b in split_sentences(text)] == [500_000, len(" x ") + 500_000]  # spans keep the space

def test_lexicon_extension_makes_complaint_words_count():
    text = "I want a refund for the overcharged order."
    plain = SentimentScorer().score(text)
    extended = SentimentScorer(lexicon={"refund": -1.5, "Overcharged": -2.0}).score(text)
    assert plain.compound >= 0  # VADER alone finds nothing wrong here
    assert extended.compound < -0.5


# -- rules: the fast path equals rule-engine ------------------------------------


def test_fast_rule_path_agrees_with_rule_engine_on_real_texts():
    alone = [rule for pack in RULE_PACKS for rule in load_pack(Path(pack))]
    book = RuleBook(alone).rules  # compiled together: one prefilter pass per text, cached in the facts
    scorer = Scorer(rules=RuleBook([]), sentiment=SentimentScorer(), thresholds=Thresholds())
    texts = real_tweets()[:600] + ["Acme's app crashed again lol", "Does Acme ship to Canada?",
                                   "The Acme agent named Kevin hung up", "Third time I call Acme"]
    checked = fired = 0
    for i, text in enumerate(texts):
        mention = Mention(source="t", source_id=str(i), url="", title="", text=text, brand="Acme",
                          engagement=Engagement(score=i * 7 % 300, comments=i % 40))
        facts = scorer.score(mention).facts
        for tags in ((), ("failure",)):
            facts["tags"] = tags
            shared = dict(facts)
            for rule, in_book in zip(alone, book):
                expected = rule.expression.matches(dict(facts))
                assert bool(rule.check(dict(facts))) == expected, (rule.name, text)
                assert bool(in_book.check(shared)) == expected, (rule.name, text)
                checked += 1
                fired += expected
    assert fired > 100 and checked > 10_000


def test_rule_book_fires_what_rule_engine_fires_on_real_texts():
    """RuleBook.evaluate skips a rule whose first regex lacks every literal it needs; on real texts
    it must fire exactly the rules, in the order and with the tags, that rule-engine's own evaluation gives."""
    rules = [rule for pack in RULE_PACKS for rule in load_pack(Path(pack))]
    book = RuleBook(rules)
    scorer = Scorer(rules=RuleBook([]), sentiment=SentimentScorer(), thresholds=Thresholds())
    examples = [e for rule in rules for e in rule.examples_match + rule.examples_no_match if isinstance(e, str)]
    texts = [t for t in every_real_text() if len(t) < 2_000][::3] + examples
    fired_anywhere = set()
    for i, text in enumerate(texts):
        mention = Mention(source="t", source_id=str(i), url="", title="", text=text, brand="Acme",
                          engagement=Engagement(score=i * 7 % 300, comments=i % 40))
        facts = scorer.score(mention).facts
        facts["own_account"] = i % 5 == 0
        tags: list[str] = []
        expected = []
        for rule in rules:
            if rule.expression.matches({**facts, "tags": tuple(tags)}):
                expected.append(rule.name)
                tags.extend(t for t in rule.tags if t not in tags)
        verdict = book.evaluate(facts)
        assert verdict.fired == expected and verdict.tags == tags, text
        fired_anywhere.update(expected)
    assert len(texts) > 8_000
    assert fired_anywhere >= {"repeated-contact", "service-failure", "named-employee", "going-public", "joking",
                              "brand-own-account", "legal-or-safety", "praise", "complaint-evidence",
                              "angry-and-spreading"}


def test_fast_path_tries_regexes_where_their_literals_start_with_the_same_answers(tmp_path):
    """The fast path runs a regex only where one of its leading literals starts; word boundaries,
    anchors and lookbehinds there must still see the text before that place."""
    pack = tmp_path / "edges.yaml"
    pack.write_text("rules:\n" + "".join(
        f"  - name: r{i}\n    when: 'text.as_lower =~~ \"{pattern}\"'\n" for i, pattern in enumerate(
            [r"\\bcan\\b", r"^can", r"(?<=a)can", r"can\\?\\s*$", r"\\b(can|cannot) (help|fix)", r"cancan"])))
    rules = load_pack(pack)
    book = RuleBook(rules)
    texts = ["pecan", "pecan can", "can", "scan cans", "acan", " can", "can?", "can? ok", "so can?  ",
             "cannot fix", "cancannot help", "cancancan", "CAN", "a can", "", "pecan help"]
    for text in texts:
        facts = {**book_facts(text), "tags": ()}
        expected = [r.name for r in rules if r.expression.matches(facts)]
        assert [r.name for r in book.rules if r.check(dict(facts))] == expected, text
        assert book.evaluate(facts).fired == expected, text


def book_facts(text: str) -> dict:
    scorer = Scorer(rules=RuleBook([]), sentiment=SentimentScorer(), thresholds=Thresholds())
    return scorer.score(Mention(source="t", source_id="1", url="", title="", text=text)).facts


def test_literals_a_match_must_contain_need_not_start_it():
    assert required_literals(r"\d+ times") is None
    assert required_literals(r"\d+ times", anywhere=True) == {" times"}
    assert required_literals(r"\b(\d+(st|nd) time|weeks? later)\b", anywhere=True) == {" time", " later"}
    assert required_literals(r"x*y?", anywhere=True) is None  # nothing is certain to be there


def test_literal_prefilter_is_a_necessary_condition():
    may = literal_prefilter(r"\b(lawyer|injur(y|ed)|burnt?|small claims)\b")
    assert may("my lawyer") and may("i was injured") and may("small claims court") and may("burn")
    assert not may("all good here")
    one = literal_prefilter(r"\?\s*$")  # a single literal: found without an automaton
    assert one("why?") and one("a? b?") and not one("no question")
    assert literal_prefilter(r"(?i)lawyer") is None  # case-folding: no shortcut
    assert literal_prefilter(r"\d+ times") is None  # no literal every match starts with
    assert literal_prefilter(r"(|abc)") is None  # an alternative can be empty


def test_rule_pack_errors_name_file_and_rule(tmp_path):
    from monitor.config import ConfigError
    pack = tmp_path / "broken.yaml"
    pack.write_text("rules:\n  - name: bad-regex\n    when: 'text =~~ \"(unclosed\"'\n    urgency: 5\n")
    with pytest.raises(ConfigError) as err:
        load_pack(pack)
    assert "broken.yaml" in str(err.value) and "'bad-regex'" in str(err.value)
    pack.write_text("rules: [\n")
    with pytest.raises(ConfigError, match="broken.yaml"):
        load_pack(pack)


# -- the commands ---------------------------------------------------------------


def test_score_reads_a_megabyte_from_stdin(write_config):
    config = write_config()
    sentence = "Acme lost my parcel and nobody answers the phone. "
    text = sentence * (1_000_000 // len(sentence))
    result = cli(config, "score", "-", "--json", stdin=text)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["brand"] == "Acme"
    assert out["sentiment"]["sentences"] == 1_000_000 // len(sentence)
    assert {r["name"] for r in out["reasons"] if r["kind"] == "rule"} >= {"service-failure"}
    assert out["is_complaint"] and out["complaint"] >= 0.7  # the model reads the first 4,000 characters
    assert set(out["signals"]) >= {"score_velocity", "sightings", "brand_spike"}


def test_explain_a_stored_mention(write_config):
    config_path = write_config()
    config = load_config(config_path)
    store = Store(config.store_path)
    now = datetime.now(timezone.utc)
    Pipeline(config=config, store=store).process("rss", Poll(mentions=[Mention(
        source="rss", source_id="e1", url="https://blog.example/e1", title="Acme double charged me",
        text="Acme charged me twice and still no refund. I'm talking to a lawyer.", created_at=now,
        place="Blog", reach=2_000_000.0)]), now=now)
    mention_id = store.query("SELECT id FROM mentions")[0][0]
    store.close()

    result = cli(config_path, "explain", str(mention_id), "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    rules = {r["name"]: r for r in out["reasons"] if r["kind"] == "rule"}
    assert rules["legal-or-safety"]["urgency"] == 30
    model = [r for r in out["reasons"] if r["kind"] == "model"]
    assert [r["name"] for r in model] == ["complaint"] and model[0]["urgency"] > 0 and out["is_complaint"]
    assert model[0]["urgency"] == round(out["complaint"] * config.complaint.urgency_points, 1)
    assert out["urgency"] == min(100, sum(r["urgency"] for r in rules.values()) + model[0]["urgency"])
    # No votes yet: the audience is the only growth signal; the rules add their points on top.
    signals = {r["name"]: r for r in out["reasons"] if r["kind"] == "signal"}
    assert set(signals) == {"reach"} and signals["reach"]["virality"] > 0
    assert out["virality"] == pytest.approx(signals["reach"]["virality"] + sum(r["virality"] for r in rules.values()))
    assert out["signals"]["sightings"] == 1

    text = cli(config_path, "explain", str(mention_id))
    assert text.returncode == 0, text.stderr
    assert "rule legal-or-safety: urgency +30" in text.stdout and f"complaint {out['complaint']:.2f}" in text.stdout
    assert f"reach: 2,000,000 can see it; virality +{signals['reach']['virality']:g}" in text.stdout
    assert "sightings = 1" in text.stdout

    missing = cli(config_path, "explain", "999")
    assert missing.returncode == 1 and "no mention 999" in missing.stderr


def _write_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_backtest_ranks_and_writes_every_row(write_config, tmp_path):
    config = write_config()
    rows = [
        {"id": "calm", "text": "Acme delivered on Tuesday.", "title": "", "author": "a", "score": "2"},
        {"id": "angry", "text": "Acme charged me twice, still no refund. Third time I call. Never again!",
         "title": "Acme double charge", "author": "b", "score": "5"},
        {"id": "praise", "text": "Huge thanks to Acme support, great service!", "title": "", "author": "c",
         "score": ""},
    ]
    source = tmp_path / "mentions.csv"
    _write_csv(source, rows)
    out = tmp_path / "scored.csv"
    result = cli(config, "backtest", str(source), "--out", str(out))
    assert result.returncode == 0, result.stderr
    ranking = [line.split()[5] for line in result.stdout.splitlines()[1:4]]
    assert ranking[0] == "angry"
    with open(out, newline="", encoding="utf-8") as f:
        scored = {r["id"]: r for r in csv.DictReader(f)}
    assert set(scored) == {"calm", "angry", "praise"}
    for row in rows:  # every input column comes back unchanged
        assert all(scored[row["id"]][k] == v for k, v in row.items())
    assert float(scored["angry"]["urgency"]) > float(scored["calm"]["urgency"])
    assert "money-back" in scored["angry"]["reasons"] and scored["angry"]["priority"] in ("P1", "P2")
    assert "growth" not in scored["angry"]["reasons"]  # no created_at: no velocity to speak of
    assert "praise" in scored["praise"]["reasons"]


def test_backtest_json_lines_brand_and_progress(write_config, tmp_path):
    config = write_config({"brands": [{"name": "Acme", "keywords": ["acme"]}, {"name": "Globex", "keywords": ["globex"]}]})
    source = tmp_path / "many.jsonl"
    with open(source, "w", encoding="utf-8") as f:
        for i in range(1200):
            f.write(json.dumps({"id": i, "text": "my order is late" if i % 2 else "Globex lost my bag, no refund",
                                "created_at": f"2026-11-22T10:{i % 60:02d}:00Z", "comments": i % 7}) + "\n")
    out = tmp_path / "scored.jsonl"
    result = cli(config, "backtest", str(source), "--brand", "Acme", "--out", str(out), "--top", "3")
    assert result.returncode == 0, result.stderr
    assert "scored 1200/1200 rows" in result.stderr  # progress on a large file
    scored = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(scored) == 1200 and {r["brand"] for r in scored} == {"Acme"}
    assert "1200 rows:" in result.stdout


def test_backtest_says_what_is_wrong_with_the_file(write_config, tmp_path):
    config = write_config()
    source = tmp_path / "bad.csv"
    source.write_text("identifier,body\n1,hello\n")
    result = cli(config, "backtest", str(source))
    assert result.returncode == 1
    assert "bad.csv" in result.stderr and "id, text" in result.stderr


def test_facts_hold_every_rule_field_in_order_with_its_type():
    from monitor.rules import FIELDS, default_facts
    scorer = Scorer(rules=RuleBook([]), sentiment=SentimentScorer(), thresholds=Thresholds())
    bare = scorer.score(Mention(source="t", source_id="1", url="", title="", text="Acme is fine")).facts
    assert list(bare) == list(FIELDS)
    defaults = default_facts()
    assert {k: type(v) for k, v in bare.items()} == {k: type(v) for k, v in defaults.items()}
    unset = {"upvote_ratio", "sightings", "text", "length", "compound", "positive", "min_sentence",
             "brand_compound", "age_hours", "kind", "source", "complaint"}  # set by this mention or its scores
    assert {k: v for k, v in bare.items() if k not in unset} == {k: v for k, v in defaults.items() if k not in unset}
    assert bare["upvote_ratio"] == 1.0 and bare["sightings"] == 1.0  # unknown ratio, seen once
    # Reddit's `subreddit` and RSS's `feed` are their sources' declared fields: after the core's, each read from
    # the extra of its own source's mentions only.
    from monitor.rules import DeclaredField, RuleFields
    fields = RuleFields([DeclaredField("subreddit", "string", "", frozenset({"reddit"})),
                         DeclaredField("feed", "string", "", frozenset({"rss"}))])
    scorer = Scorer(rules=RuleBook([], fields=fields), sentiment=SentimentScorer(), thresholds=Thresholds())
    full = scorer.score(Mention(source="reddit", source_id="2", url="", title="T", text="x", author="bob",
                                brand="Acme", reach=5, extra={"subreddit": "espresso", "feed": "F"},
                                engagement=Engagement(score=3, comments=2, upvote_ratio=0.5, awards=1))).facts
    assert list(full) == [*FIELDS, "subreddit", "feed"]
    assert (full["subreddit"], full["feed"], full["author"], full["brand"], full["score"], full["comments"],
            full["upvote_ratio"], full["awards"], full["reach"]) == ("espresso", "", "bob", "Acme", 3.0, 2.0,
                                                                     0.5, 1.0, 5.0)
    entry = scorer.score(Mention(source="rss", source_id="3", url="", title="T", text="x",
                                 extra={"subreddit": "espresso", "feed": "Kettle news"})).facts
    assert (entry["subreddit"], entry["feed"]) == ("", "Kettle news")


def test_rounded_is_round_with_a_shortcut_for_zero():
    import math

    from monitor.sentiment import rounded
    for value, digits in [(0.0, 2), (-0.0, 2), (0, 3), (1.23456, 2), (-2.5e-5, 4), (0.005, 2), (7, 2), (1e300, 4)]:
        fast, slow = rounded(value, digits), round(value, digits)
        assert fast == slow and type(fast) is type(slow) and math.copysign(1, fast) == math.copysign(1, slow)
    assert math.isnan(rounded(float("nan"), 2))


def test_points_are_clamped_to_0_and_100(tmp_path):
    pack = tmp_path / "p.yaml"
    pack.write_text("rules:\n  - {name: calm, when: 'true', urgency: -20, virality: 150}\n")
    verdict = RuleBook.from_files([pack]).evaluate(book_facts("anything"))
    assert (verdict.urgency, verdict.virality) == (0.0, 100.0)

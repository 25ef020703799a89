"""Every shipped rule runs its own examples; rule packs are checked on load."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.config import ConfigError, Thresholds
from monitor.mention import Mention
from monitor.rules import FIELDS, RuleBook, load_pack
from monitor.score import Scorer, Signals, signals_from_mention
from monitor.sentiment import SentimentScorer
from tests.conftest import RULE_PACKS

SCORER = Scorer(rules=RuleBook([]), sentiment=SentimentScorer(), thresholds=Thresholds())
SIGNAL_FIELDS = set(Signals._fields)


def example_facts(example) -> dict:
    """Facts for an example: the text scored for real, then the example's own field values."""
    spec = {"text": example} if isinstance(example, str) else dict(example)
    mention = Mention(source="example", source_id="1", url="", title=spec.get("title", ""), text=spec["text"],
                      brand="Acme")
    signals = Signals(**{k: spec[k] for k in SIGNAL_FIELDS & spec.keys()})
    scores = SCORER.score(mention, signals=signals)
    facts = dict(scores.facts)
    facts.update({k: (float(v) if isinstance(v, int) and not isinstance(v, bool) else v)
                  for k, v in spec.items()})
    return facts


def _shipped_rules():
    for pack in RULE_PACKS:
        for rule in load_pack(Path(pack)):
            yield pytest.param(rule, id=f"{Path(pack).stem}:{rule.name}")


SHIPPED = list(_shipped_rules())


@pytest.mark.parametrize("rule", SHIPPED)
def test_every_shipped_rule_has_examples_both_ways(rule):
    assert rule.examples_match, f"rule {rule.name} has no 'match' examples"
    assert rule.examples_no_match, f"rule {rule.name} has no 'no_match' examples"
    assert rule.description, f"rule {rule.name} has no description (it is shown to responders)"


@pytest.mark.parametrize("rule", SHIPPED)
def test_shipped_rule_examples(rule):
    for example in rule.examples_match:
        assert rule.matches(example_facts(example)), f"{rule.name} should match {example!r}"
    for example in rule.examples_no_match:
        assert not rule.matches(example_facts(example)), f"{rule.name} should not match {example!r}"


def test_unknown_field_is_reported_with_file_and_rule(tmp_path):
    pack = tmp_path / "bad.yaml"
    pack.write_text("rules:\n  - name: typo\n    when: compnd < -0.5\n    urgency: 10\n")
    with pytest.raises(ConfigError) as err:
        load_pack(pack)
    message = str(err.value)
    assert "bad.yaml" in message and "'typo'" in message and "compnd" in message


def test_type_error_in_expression_is_reported(tmp_path):
    pack = tmp_path / "bad.yaml"
    pack.write_text("rules:\n  - name: mixed\n    when: 'compound =~ \"x\"'\n")
    with pytest.raises(ConfigError, match="mixed"):
        load_pack(pack)


def test_unknown_rule_key_is_reported(tmp_path):
    pack = tmp_path / "bad.yaml"
    pack.write_text("rules:\n  - name: r\n    when: compound < 0\n    urgncy: 10\n")
    with pytest.raises(ConfigError, match="urgncy"):
        load_pack(pack)


def test_rules_add_up_clamp_and_explain(tmp_path):
    pack = tmp_path / "p.yaml"
    pack.write_text(
        "rules:\n"
        "  - {name: a, when: 'true', urgency: 70, tags: [x]}\n"
        "  - {name: b, when: '\"x\" in tags', urgency: 50, virality: 5}\n"
        "  - {name: c, when: 'false', urgency: 10}\n")
    book = RuleBook.from_files([pack])
    verdict = book.evaluate(example_facts("anything"))
    assert verdict.urgency == 100 and verdict.virality == 5
    assert verdict.fired == ["a", "b"]
    assert verdict.tags == ["x"]


def test_every_field_is_documented_in_readme():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    missing = [name for name in FIELDS if f"`{name}`" not in readme]
    assert not missing, f"rule fields missing from README's rule reference: {missing}"


def test_velocity_signal_from_snapshots():
    from datetime import datetime, timedelta, timezone
    now = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)
    m = Mention(source="s", source_id="1", url="", title="", text="", created_at=now - timedelta(hours=2))
    m.engagement.score = 300
    earlier = [(now - timedelta(hours=1), 100, 0), (now - timedelta(minutes=30), 150, 0)]
    signals = signals_from_mention(m, now=now, previous=earlier)
    assert signals.recent_velocity == 300.0  # 150 points in the last half hour
    assert signals.score_velocity == 150.0  # 300 points in two hours
    # 100 points/hour over the half hour before, 300 over the last: +200 per half hour between their middles.
    assert signals.acceleration == 400.0

    # The posting counts as a reading of nothing: the second reading already compares two rates.
    first = [(now - timedelta(hours=1), 100, 0)]
    second = signals_from_mention(m, now=now, previous=first)
    assert (second.score_velocity, second.recent_velocity) == (150.0, 200.0)
    assert second.acceleration == 100.0  # 100/hour in the first hour, 200/hour in the second

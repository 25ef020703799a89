"""The rule engine: YAML rule packs, evaluated with ``rule-engine`` (no eval).

A rule pack is data an operator edits::

    rules:
      - name: legal-threat
        when: 'text.as_lower =~~ "\\\\b(lawyer|lawsuit|sue)\\\\b"'
        urgency: +30
        tags: [legal]
        examples:
          match: ["My lawyer will hear about this, Acme"]
          no_match: ["I love my Acme kettle"]

Every expression is checked against the field names and types below when the
pack loads, so a typo is reported with file and rule name, not at 3 a.m.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rule_engine
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .config import ConfigError, format_validation_error

_T = rule_engine.DataType
# The fields a rule can read, with their types. The README's rule reference
# is generated from the descriptions; a test fails when one is missing.
FIELDS: dict[str, tuple[Any, str]] = {
    "text": (_T.STRING, "the mention's text (plain text, HTML removed)"),
    "title": (_T.STRING, "the title of the post or entry; empty for comments"),
    "source": (_T.STRING, "the adapter that found it: reddit, rss, ..."),
    "kind": (_T.STRING, "post, comment or entry"),
    "place": (_T.STRING, "where it was said, e.g. r/espresso or the feed's name"),
    "subreddit": (_T.STRING, "the subreddit's name, empty outside Reddit"),
    "feed": (_T.STRING, "the feed's name, empty outside RSS"),
    "author": (_T.STRING, "the author's name or handle, empty if unknown"),
    "brand": (_T.STRING, "the matched brand's configured name"),
    "own_account": (_T.BOOLEAN, "true when the author is one of the brand's own accounts"),
    "compound": (_T.FLOAT, "VADER compound of the whole text, -1..1"),
    "negative": (_T.FLOAT, "VADER's share of negative words, 0..1"),
    "positive": (_T.FLOAT, "VADER's share of positive words, 0..1"),
    "min_sentence": (_T.FLOAT, "compound of the most negative sentence"),
    "negative_share": (_T.FLOAT, "share of sentences that are negative, 0..1"),
    "brand_compound": (_T.FLOAT, "compound of the sentences naming the brand"),
    "title_compound": (_T.FLOAT, "compound of the title alone"),
    "score": (_T.FLOAT, "score/upvotes now (0 where unknown)"),
    "comments": (_T.FLOAT, "number of comments now (0 where unknown)"),
    "upvote_ratio": (_T.FLOAT, "share of upvotes, 0..1 (1 where unknown)"),
    "awards": (_T.FLOAT, "awards received"),
    "reach": (_T.FLOAT, "audience: subreddit subscribers, or the feed's weight x 1000"),
    "score_velocity": (_T.FLOAT, "score gained per hour since it was posted or last read"),
    "comment_velocity": (_T.FLOAT, "comments gained per hour"),
    "acceleration": (_T.FLOAT, "change of score velocity per hour between the last two reads"),
    "age_hours": (_T.FLOAT, "hours since it was posted"),
    "sightings": (_T.FLOAT, "places the same story was seen (1 = only here)"),
    "brand_spike": (_T.FLOAT, "brand's mentions in the last hour divided by its hourly baseline"),
    "length": (_T.FLOAT, "characters in the text"),
    "tags": (_T.ARRAY(_T.STRING), "tags added by rules that ran before this one"),
}

_CONTEXT = rule_engine.Context(
    type_resolver=rule_engine.type_resolver_from_dict({name: t for name, (t, _) in FIELDS.items()}),
    default_timezone="UTC",
)


def default_facts() -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for name, (dtype, _) in FIELDS.items():
        if dtype == _T.STRING:
            facts[name] = ""
        elif dtype == _T.FLOAT:
            facts[name] = 0.0
        elif dtype == _T.BOOLEAN:
            facts[name] = False
        else:
            facts[name] = ()
    facts["upvote_ratio"] = 1.0
    facts["sightings"] = 1.0
    return facts


class _Examples(BaseModel):
    model_config = ConfigDict(extra="forbid")
    match: list[str | dict[str, Any]] = Field(default_factory=list)
    no_match: list[str | dict[str, Any]] = Field(default_factory=list)


class _RuleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    description: str = ""
    when: str = Field(min_length=1)
    urgency: float = 0
    virality: float = 0
    tags: list[str] = Field(default_factory=list)
    suppress: bool = False
    notify: list[str] = Field(default_factory=list)
    examples: _Examples = Field(default_factory=_Examples)


class _PackSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str = ""
    rules: list[_RuleSpec] = Field(default_factory=list)


@dataclass(frozen=True)
class Rule:
    name: str
    pack: str
    expression: rule_engine.Rule
    urgency: float
    virality: float
    tags: tuple[str, ...]
    suppress: bool
    notify: tuple[str, ...]
    description: str
    examples_match: tuple[str | dict, ...]
    examples_no_match: tuple[str | dict, ...]

    @property
    def when(self) -> str:
        return self.expression.text

    def matches(self, facts: dict[str, Any]) -> bool:
        return bool(self.expression.matches(facts))


@dataclass(frozen=True, slots=True)
class Reason:
    """One line of an explanation: a rule that fired or a signal with its value."""

    kind: str  # "rule" or "signal"
    name: str
    urgency: float = 0.0
    virality: float = 0.0
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "urgency": self.urgency,
                "virality": self.virality, "detail": self.detail}

    def __str__(self) -> str:
        parts = []
        if self.urgency:
            parts.append(f"urgency {self.urgency:+g}")
        if self.virality:
            parts.append(f"virality {self.virality:+g}")
        effect = ", ".join(parts) or "no points"
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.name}: {effect}{detail}"


@dataclass
class Verdict:
    urgency: float
    virality: float
    reasons: list[Reason] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    suppressed: bool = False
    notify: list[str] = field(default_factory=list)

    @property
    def fired(self) -> list[str]:
        return [r.name for r in self.reasons if r.kind == "rule"]


def _compile(expression: str, where: str) -> rule_engine.Rule:
    try:
        return rule_engine.Rule(expression, context=_CONTEXT)
    except rule_engine.errors.SymbolResolutionError as err:
        known = ", ".join(FIELDS)
        raise ConfigError(f"{where}: unknown field {err.symbol_name!r} (fields: {known})") from None
    except rule_engine.errors.EngineError as err:
        raise ConfigError(f"{where}: {type(err).__name__}: {err.message}") from None


def load_pack(path: Path) -> list[Rule]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"rules: {path}: no such rule pack") from None
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"rules: {path}: cannot read: {err}") from None
    try:
        spec = _PackSpec.model_validate(raw or {})
    except ValidationError as err:
        raise ConfigError(f"rules: {path}:\n" + format_validation_error(err)) from None
    rules = []
    seen = set()
    for i, r in enumerate(spec.rules):
        where = f"rules: {path}: rule {r.name!r}"
        if r.name in seen:
            raise ConfigError(f"{where}: the name is used twice in this pack")
        seen.add(r.name)
        rules.append(Rule(
            name=r.name, pack=path.stem, expression=_compile(r.when, where), urgency=r.urgency,
            virality=r.virality, tags=tuple(r.tags), suppress=r.suppress, notify=tuple(r.notify),
            description=r.description, examples_match=tuple(r.examples.match),
            examples_no_match=tuple(r.examples.no_match),
        ))
    return rules


class RuleBook:
    """All loaded packs, applied in order: later rules can read earlier rules' tags."""

    def __init__(self, rules: list[Rule]):
        self.rules = rules

    @classmethod
    def from_files(cls, paths: list[Path]) -> "RuleBook":
        rules: list[Rule] = []
        for path in paths:
            rules.extend(load_pack(path))
        return cls(rules)

    def evaluate(self, facts: dict[str, Any]) -> Verdict:
        verdict = Verdict(urgency=0.0, virality=0.0)
        facts = dict(facts)
        tags = list(facts.get("tags") or ())
        for rule in self.rules:
            facts["tags"] = tuple(tags)
            try:
                fired = rule.matches(facts)
            except rule_engine.errors.EvaluationError as err:
                verdict.reasons.append(Reason("error", rule.name, detail=f"could not evaluate: {err.message}"))
                continue
            if not fired:
                continue
            verdict.urgency += rule.urgency
            verdict.virality += rule.virality
            verdict.reasons.append(Reason("rule", rule.name, rule.urgency, rule.virality, rule.description))
            tags.extend(t for t in rule.tags if t not in tags)
            verdict.suppressed |= rule.suppress
            verdict.notify.extend(e for e in rule.notify if e not in verdict.notify)
        verdict.tags = tags
        verdict.urgency = max(0.0, min(100.0, verdict.urgency))
        verdict.virality = max(0.0, min(100.0, verdict.virality))
        return verdict

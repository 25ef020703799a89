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
pack loads, so a typo is reported with file and rule name, not at 3 a.m. The
fields are the core's ``FIELDS`` and the rule fields sources declare
(``monitor.source.SourceField``; Reddit's ``subreddit``, RSS's ``feed``): the
configured sources' and every installed one's (``monitor.source.rule_fields_for``),
so a pack loads whatever sources a config reads. Each rule book has its own
``RuleFields`` (and rule-engine context), so two configs never see each
other's fields or types.
"""

from __future__ import annotations

import dataclasses
import decimal
import operator
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import ahocorasick
import rule_engine
import rule_engine.ast as rule_ast
import yaml

try:  # CPython's regex parser, for the literal prefilter only
    import re._constants as _sre
    import re._parser as _sre_parser
except ImportError:  # Python < 3.11 names
    import sre_constants as _sre
    import sre_parse as _sre_parser
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
    "complaint": (_T.FLOAT, "the complaint model's probability that someone unhappy wants an answer, 0..1"),
    "score": (_T.FLOAT, "score/upvotes now: Hacker News points, Mastodon favourites + boosts, Bluesky likes"
                        " + reposts + quotes (0 where unknown)"),
    "comments": (_T.FLOAT, "number of comments now (0 where unknown)"),
    "upvote_ratio": (_T.FLOAT, "share of upvotes, 0..1 (1 where unknown)"),
    "awards": (_T.FLOAT, "awards received"),
    "reach": (_T.FLOAT, "audience: subreddit subscribers, the feed's weight x 1000, or the author's followers"
                        " (Mastodon, Bluesky)"),
    "score_velocity": (_T.FLOAT, "score gained per hour since it was posted (the overall rate)"),
    "recent_velocity": (_T.FLOAT, "score gained per hour since the last reading (at the first reading, the"
                                  " overall rate)"),
    "comment_velocity": (_T.FLOAT, "comments gained per hour (since the last reading, once there is one)"),
    "acceleration": (_T.FLOAT, "change of the score gained per hour between the last two intervals between"
                               " readings (the posting counts as a reading of 0), per hour"),
    "age_hours": (_T.FLOAT, "hours since it was posted"),
    "sightings": (_T.FLOAT, "places the same story was seen (1 = only here)"),
    "brand_spike": (_T.FLOAT, "brand's mentions in the last hour divided by its hourly baseline"),
    "spike_ratio": (_T.FLOAT, "the configured `spikes.ratio`: from this `brand_spike` on, the brand spikes"),
    "length": (_T.FLOAT, "characters in the text"),
    "tags": (_T.ARRAY(_T.STRING), "tags added by rules that ran before this one"),
}

# A declared rule field's type (``SourceField.type``) as rule-engine's, and the value a mention from another
# source (or one without the key) reads: rule-engine's comparisons refuse null, so each type has an empty value.
SOURCE_FIELD_TYPES: dict[str, Any] = {"string": _T.STRING, "float": _T.FLOAT, "integer": _T.FLOAT,
                                      "boolean": _T.BOOLEAN, "strings": _T.ARRAY(_T.STRING), "mapping": _T.MAPPING}
SOURCE_FIELD_EMPTY: dict[str, Any] = {"string": "", "float": 0.0, "integer": 0.0, "boolean": False, "strings": (),
                                      "mapping": {}}


@dataclass(frozen=True)
class DeclaredField:
    """A rule field a source declares: its ``SourceField`` type, meaning, and the sources declaring it (their
    names: ``Mention.source``); a mention from any other source reads the type's empty value."""

    name: str
    type: str
    doc: str
    sources: frozenset[str]

    @property
    def empty(self) -> Any:
        return SOURCE_FIELD_EMPTY[self.type]

    def value(self, raw: Any) -> Any:
        """``Mention.extra[name]`` as the field's type; a value of another type reads as empty (a source's odd
        item must not turn every rule on the field into an evaluation error)."""
        if raw is None:
            return self.empty
        kind = self.type
        if kind == "string":
            return raw if isinstance(raw, str) else self.empty
        if kind in ("float", "integer"):
            return float(raw) if isinstance(raw, (int, float)) and not isinstance(raw, bool) else 0.0
        if kind == "boolean":
            return raw if isinstance(raw, bool) else False
        if kind == "strings":
            return tuple(v for v in raw if isinstance(v, str)) if isinstance(raw, (list, tuple)) else ()
        return raw if isinstance(raw, dict) else {}


class RuleFields:
    """The fields one rule book's rules may read: the core's ``FIELDS`` and the sources' declared ones, with the
    rule-engine context that types them. Immutable once made."""

    def __init__(self, declared: list[DeclaredField] | tuple[DeclaredField, ...] = ()):
        for f in declared:
            if f.name in FIELDS:
                raise ConfigError(f"sources.{min(f.sources)}: rule field {f.name!r} is a core rule field already;"
                                  " a source must name its own fields differently")
        self.declared: tuple[DeclaredField, ...] = tuple(declared)
        self.types: dict[str, Any] = {name: t for name, (t, _) in FIELDS.items()}
        self.types.update({f.name: SOURCE_FIELD_TYPES[f.type] for f in self.declared})
        self.context = rule_engine.Context(type_resolver=rule_engine.type_resolver_from_dict(dict(self.types)),
                                           default_timezone="UTC")

    def describe(self, name: str) -> str:
        """``'reblogs' (integer, declared by source mastodon)``: what an error says about a field."""
        for f in self.declared:
            if f.name == name:
                return f"{name!r} ({f.type}, declared by source {', '.join(sorted(f.sources))})"
        return f"{name!r} ({self.types[name].name.lower()}, a core field)"

    def defaults(self) -> dict[str, Any]:
        """Every field's value for a mention that says nothing: the core's defaults, then the declared fields' empty
        values."""
        return {**_DEFAULT_FACTS, **{f.name: f.empty for f in self.declared}}


CORE_FIELDS = RuleFields()


def default_facts() -> dict[str, Any]:
    return dict(_DEFAULT_FACTS)


def _default_facts() -> dict[str, Any]:
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
    facts["spike_ratio"] = 3.0  # spikes.ratio's default
    return facts


_DEFAULT_FACTS = _default_facts()


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
    check: Callable[[dict[str, Any]], Any] = field(repr=False, compare=False, default=None)

    @property
    def when(self) -> str:
        return self.expression.text

    def matches(self, facts: dict[str, Any]) -> bool:
        if self.check is None:
            return bool(self.expression.matches(facts))
        return bool(self.check(facts))


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


# -- the fast path -------------------------------------------------------
#
# rule-engine parses and type-checks every expression, and its evaluator is the
# reference; but walking its AST costs tens of microseconds per rule, more than
# VADER spends on a tweet. ``fast_check`` turns the parsed AST into nested Python
# closures for the node kinds the packs use (logic, comparisons, regex search,
# symbols, ``as_lower``, ``in``, literals); any other node is handed back to
# rule-engine's own ``evaluate``, so behaviour never depends on the fast path
# knowing a construct. A test checks both agree on every shipped rule.

_ORDER = {"ge": operator.ge, "gt": operator.gt, "le": operator.le, "lt": operator.lt}
_FLOAT = _T.FLOAT


def _literal(value: Any) -> Any:
    return float(value) if isinstance(value, decimal.Decimal) else value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, decimal.Decimal)) and not isinstance(value, bool)


def _equal(left: Any, right: Any) -> bool:
    # rule-engine turns every number into a Decimal, so 1 == 1.0; other types must match exactly.
    if _is_number(left) and _is_number(right):
        return left == right
    return type(left) is type(right) and left == right


_REPEATS = tuple(getattr(_sre, name) for name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT") if hasattr(_sre, name))


def _literals_of(items: list, anywhere: bool) -> set[str] | None:
    """Literal strings one of which every match of ``items`` starts with (``anywhere``: contains);
    None when that cannot be told."""
    candidates: list[set[str]] = []
    i = 0
    while i < len(items):
        op, av = items[i]
        if op is _sre.AT:  # \b, ^: zero-width, consume nothing
            i += 1
            continue
        found: set[str] | None = None
        if op is _sre.LITERAL:
            chars = []
            while i < len(items) and items[i][0] is _sre.LITERAL:
                chars.append(chr(items[i][1]))
                i += 1
            found = {"".join(chars)}
        else:
            i += 1
            if op is _sre.SUBPATTERN:
                _, add_flags, _, inner = av
                found = None if add_flags & re.IGNORECASE else _literals_of(list(inner), anywhere)
            elif op is _sre.BRANCH:
                found = set()
                for alternative in av[1]:
                    literals = _literals_of(list(alternative), anywhere)
                    if literals is None:
                        found = None
                        break
                    found |= literals
            elif anywhere and op in _REPEATS and av[0] >= 1:  # at least once: its literals are in every match
                found = _literals_of(list(av[2]), anywhere)
        if not anywhere:
            return found
        if found and "" not in found:
            candidates.append(found)
    # Of several sets that would do, the one with the longest shortest literal gives the fewest false hits.
    return max(candidates, key=lambda c: min(map(len, c))) if candidates else None


def required_literals(pattern: str, flags: int = 0, *, anywhere: bool = False) -> set[str] | None:
    """Literals one of which every match of ``pattern`` starts with (``anywhere``: contains somewhere);
    None when there is no such set."""
    try:
        parsed = _sre_parser.parse(pattern, flags)
    except Exception:  # the parser is CPython's own; if it ever disagrees, just skip the shortcut
        return None
    if (parsed.state.flags | flags) & re.IGNORECASE:
        return None
    literals = _literals_of(list(parsed), anywhere)
    if not literals or "" in literals:
        return None
    return literals


class LiteralIndex:
    """The required literals of many regexes in one Aho-Corasick automaton: one pass over a text
    tells which of the regexes can match it at all. Most texts contain none of a rule's words, so
    a regex, which tries every alternative at every position, runs only where it might match."""

    def __init__(self):
        self._owners: dict[str, set[int]] = {}
        self._numbers: dict[frozenset[str], int] = {}
        self._automaton = None

    def add(self, literals: set[str]) -> int:
        """The number ``hits`` reports when the text holds one of ``literals`` (the same set, the same number)."""
        key = frozenset(literals)
        if key in self._numbers:
            return self._numbers[key]
        number = self._numbers[key] = len(self._numbers)
        for literal in literals:
            self._owners.setdefault(literal, set()).add(number)
        self._automaton = None
        return number

    def hits(self, text: str) -> dict[int, list[int]]:
        """number -> where in ``text`` one of its literals starts, for every number with a literal there."""
        if len(self._owners) == 1:
            # One literal (like the "?" of a question rule): str.find beats walking an automaton.
            [(literal, owners)] = self._owners.items()
            starts = []
            start = text.find(literal)
            while start >= 0:
                starts.append(start)
                start = text.find(literal, start + 1)
            return {number: starts for number in owners} if starts else {}
        if self._automaton is None:
            self._automaton = ahocorasick.Automaton()
            for literal, owners in self._owners.items():
                self._automaton.add_word(literal, tuple((number, len(literal) - 1) for number in sorted(owners)))
            self._automaton.make_automaton()
        found: dict[int, list[int]] = {}
        for last, owners in self._automaton.iter(text):
            for number, back in owners:
                starts = found.get(number)
                if starts is None:
                    found[number] = [last - back]
                else:
                    starts.append(last - back)
        return found


def literal_prefilter(pattern: str, flags: int = 0) -> Callable[[str], bool] | None:
    """A cheap necessary condition for ``re.search(pattern, text)``, or None when there is none."""
    literals = required_literals(pattern, flags)
    if literals is None:
        return None
    index = LiteralIndex()
    number = index.add(literals)
    return lambda text: number in index.hits(text)


def _value_key(node: Any) -> str | None:
    """A name for an expression whose value is the same throughout one evaluation (a field, or a folded field)."""
    if type(node) is rule_ast.SymbolExpression and node.scope is None:
        return node.name
    if type(node) is rule_ast.GetAttributeExpression and type(node.object) is rule_ast.SymbolExpression:
        return f"{node.object.name}.{node.name}"
    return None


def fast_check(node: Any, indexes: dict[str, LiteralIndex] | None = None) -> Callable[[dict[str, Any]], Any]:
    """``indexes`` (one per regex subject, e.g. ``text.as_lower``) lets the rules of a book share one
    prefilter pass per text; without it each regex gets its own."""
    if indexes is None:
        indexes = {}
    kind = type(node)
    if kind is rule_ast.Statement:
        return fast_check(node.expression, indexes)
    if kind is rule_ast.LogicExpression:
        first, second = _field_vs_constant(node.left), _field_vs_constant(node.right)
        if first is not None and second is not None:
            # Two field-vs-constant comparisons ("compound <= -0.6 or min_sentence <= -0.75") in one call.
            (name1, op1, constant1), (name2, op2, constant2) = first, second
            if node.type == "and":
                return lambda facts: bool(op1(facts[name1], constant1) and op2(facts[name2], constant2))
            return lambda facts: bool(op1(facts[name1], constant1) or op2(facts[name2], constant2))
        left, right = fast_check(node.left, indexes), fast_check(node.right, indexes)
        if node.type == "and":
            return lambda facts: bool(left(facts) and right(facts))
        return lambda facts: bool(left(facts) or right(facts))
    if kind is rule_ast.ArithmeticComparisonExpression and node.left.result_type == _FLOAT \
            and node.right.result_type == _FLOAT and node.type in _ORDER:
        op = _ORDER[node.type]
        comparison = _field_vs_constant(node)
        if comparison is not None:
            # The common case, "field <= constant", in one call.
            name, op, constant = comparison
            return lambda facts: op(facts[name], constant)
        left, right = fast_check(node.left, indexes), fast_check(node.right, indexes)
        return lambda facts: op(left(facts), right(facts))
    if kind is rule_ast.ComparisonExpression and node.type in ("eq", "ne"):
        left, right = fast_check(node.left, indexes), fast_check(node.right, indexes)
        if node.type == "eq":
            return lambda facts: _equal(left(facts), right(facts))
        return lambda facts: not _equal(left(facts), right(facts))
    if kind is rule_ast.FuzzyComparisonExpression and isinstance(node.right, rule_ast.StringExpression) \
            and node.type in ("eq_fzs", "ne_fzs", "eq_fzm", "ne_fzm"):
        left = fast_check(node.left, indexes)
        pattern = re.compile(node.right.value, flags=node.context.regex_flags)
        find = pattern.search if node.type.endswith("fzs") else pattern.match
        wanted = node.type.startswith("eq")
        literals = required_literals(node.right.value, node.context.regex_flags) if find == pattern.search else None
        subject = _value_key(node.left)
        if literals is None or subject is None:
            def regex(facts):
                value = left(facts)
                if value is None:
                    return not wanted
                return (find(value) is not None) == wanted
            return regex
        index = indexes.setdefault(subject, LiteralIndex())
        number = index.add(literals)
        hits_key = ("literal hits", subject)  # not a string: cannot shadow a field

        match_at = pattern.match

        def prefiltered(facts):
            hits = facts.get(hits_key)
            if hits is not None and number not in hits:
                return not wanted
            value = left(facts)
            if value is None:
                return not wanted
            if hits is None:
                hits = facts[hits_key] = index.hits(value)
                if number not in hits:
                    return not wanted
            # Every match starts where one of the literals does: try the regex there only
            # (match at a position still sees the text before it, for \b and lookbehinds).
            for start in hits[number]:
                if match_at(value, start) is not None:
                    return wanted
            return not wanted
        return prefiltered
    if kind is rule_ast.SymbolExpression and node.scope is None:
        # The book's context resolved the symbol (a core or a declared field), and facts carry every field.
        return operator.itemgetter(node.name)
    if kind is rule_ast.GetAttributeExpression and node.name in ("as_lower", "as_upper") \
            and node.object.result_type == _T.STRING:
        inner = fast_check(node.object, indexes)
        fold = str.lower if node.name == "as_lower" else str.upper
        if type(node.object) is not rule_ast.SymbolExpression:
            return lambda facts: fold(inner(facts))
        # Several rules read text.as_lower: fold the text once per evaluation
        # (the key is no field name, so it cannot shadow one).
        key = f"{node.object.name}.{node.name}"

        def folded(facts):
            value = facts.get(key)
            if value is None:
                value = facts[key] = fold(inner(facts))
            return value
        return folded
    if kind is rule_ast.UnaryExpression and node.type == "not":
        right = fast_check(node.right, indexes)
        return lambda facts: not right(facts)
    if kind is rule_ast.ContainsExpression:
        container, member = fast_check(node.container, indexes), fast_check(node.member, indexes)
        return lambda facts: member(facts) in container(facts)
    if kind in (rule_ast.FloatExpression, rule_ast.StringExpression, rule_ast.BooleanExpression):
        value = _literal(node.value)
        return lambda facts: value
    return node.evaluate


class _Everything:
    """The literal hits of a subject that is missing: no rule is ruled out, each decides for itself."""

    def __contains__(self, item: Any) -> bool:
        return True


_EVERYTHING = _Everything()


@dataclass(frozen=True, slots=True)
class _Gate:
    """A necessary condition for a rule, as ``test(facts[key], value)`` with C-level ``test``: its first
    regex needs a literal the book's shared literal pass did not find (``key`` names the hits, ``value``
    the regex's number), its first comparison of a field with a constant is false, or it starts with a
    flag that is False."""

    key: Any
    test: Callable[[Any, Any], bool]
    value: Any
    # For a literal gate: how to compute the hits before the rules run.
    subject: Callable[[dict[str, Any]], Any] | None = None
    index: LiteralIndex | None = None


def _field_vs_constant(node: Any) -> tuple[str, Callable[[Any, Any], bool], float] | None:
    """(field, comparison, constant) for ``field <op> constant`` on floats, the packs' common case."""
    if type(node) is rule_ast.ArithmeticComparisonExpression and node.type in _ORDER \
            and type(node.left) is rule_ast.SymbolExpression and node.left.scope is None \
            and node.left.result_type == _FLOAT \
            and type(node.right) is rule_ast.FloatExpression:
        return node.left.name, _ORDER[node.type], _literal(node.right.value)
    return None


def _gate(node: Any, indexes: dict[str, LiteralIndex]) -> _Gate | None:
    """The gate of the expression's first conjunct (evaluation stops there when it is false, so skipping
    the rest changes nothing, errors included); a regex gate needs the literal index ``fast_check`` made."""
    kind = type(node)
    if kind is rule_ast.Statement:
        return _gate(node.expression, indexes)
    if kind is rule_ast.LogicExpression and node.type == "and":
        return _gate(node.left, indexes)
    comparison = _field_vs_constant(node)
    if comparison is not None:
        name, test, constant = comparison
        return _Gate(name, test, constant)
    if kind is rule_ast.SymbolExpression and node.scope is None and node.result_type == _T.BOOLEAN:
        return _Gate(node.name, operator.is_not, False)  # a flag that is False cannot make the rule true
    if kind is not rule_ast.FuzzyComparisonExpression or node.type != "eq_fzs" \
            or not isinstance(node.right, rule_ast.StringExpression):
        return None
    subject = _value_key(node.left)
    # A gate only needs a literal somewhere in every match, not at its start.
    literals = required_literals(node.right.value, node.context.regex_flags, anywhere=True)
    if subject not in indexes or literals is None:
        return None
    index = indexes[subject]
    return _Gate(("literal hits", subject), operator.contains, index.add(literals),
                 subject=fast_check(node.left, indexes), index=index)


_LITERALS = (rule_ast.FloatExpression, rule_ast.StringExpression, rule_ast.BooleanExpression)


def _children(node: Any) -> list[Any]:
    # rule-engine's nodes keep their operands in slots (Statement) or in their __dict__ (the expressions).
    names = {n for cls in type(node).__mro__ for n in getattr(cls, "__slots__", ())} | set(getattr(node, "__dict__", ()))
    return [v for v in (getattr(node, n, None) for n in sorted(names)) if isinstance(v, rule_ast.ASTNodeBase)]


def _mistyped_equality(node: Any) -> tuple[str, Any] | None:
    """A field compared with ``==``/``!=`` to a literal of another type (``reblogs == "3"``, never true):
    rule-engine allows it, so it is caught here; (field, the literal's type) or None."""
    if type(node) is rule_ast.ComparisonExpression and node.type in ("eq", "ne"):
        for field_side, other in ((node.left, node.right), (node.right, node.left)):
            if type(field_side) is rule_ast.SymbolExpression and field_side.scope is None \
                    and isinstance(other, _LITERALS) and field_side.result_type != _T.UNDEFINED \
                    and not _T.is_compatible(field_side.result_type, other.result_type):
                return field_side.name, other.result_type
    for child in _children(node):
        found = _mistyped_equality(child)
        if found is not None:
            return found
    return None


def _named_fields(expression: str, fields: RuleFields) -> list[str]:
    return [name for name in dict.fromkeys(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", expression)) if name in fields.types]


def _compile(expression: str, where: str, fields: RuleFields = CORE_FIELDS) -> rule_engine.Rule:
    try:
        rule = rule_engine.Rule(expression, context=fields.context)
    except rule_engine.errors.SymbolResolutionError as err:
        known = ", ".join(fields.types)
        hint = f"; did you mean {err.suggestion!r}?" if getattr(err, "suggestion", None) else ""
        raise ConfigError(f"{where}: unknown field {err.symbol_name!r}{hint} (fields: {known}; a source's own"
                          " fields are known when the source is installed)") from None
    except rule_engine.errors.EngineError as err:
        named = _named_fields(expression, fields)
        about = f" (fields: {', '.join(fields.describe(n) for n in named)})" if named else ""
        raise ConfigError(f"{where}: {type(err).__name__}: {err.message} in {expression!r}{about}") from None
    mistyped = _mistyped_equality(rule.statement)
    if mistyped is not None:
        name, other = mistyped
        raise ConfigError(f"{where}: field {fields.describe(name)} is compared with a {other.name.lower()}"
                          f" in {expression!r}: never equal")
    return rule


def load_pack(path: Path, fields: RuleFields = CORE_FIELDS) -> list[Rule]:
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
            name=r.name, pack=path.stem, expression=_compile(r.when, where, fields), urgency=r.urgency,
            virality=r.virality, tags=tuple(r.tags), suppress=r.suppress, notify=tuple(r.notify),
            description=r.description, examples_match=tuple(r.examples.match),
            examples_no_match=tuple(r.examples.no_match),
        ))
        rules[-1] = dataclasses.replace(rules[-1], check=fast_check(rules[-1].expression.statement))
    return rules


class RuleBook:
    """All loaded packs, applied in order: later rules can read earlier rules' tags."""

    def __init__(self, rules: list[Rule], *, fields: RuleFields = CORE_FIELDS):
        # The fields its rules were compiled against: the facts it evaluates carry every one of them.
        self.fields = fields
        # The book's rules share their regex prefilters: one pass over the text for all of them.
        indexes: dict[str, LiteralIndex] = {}
        self.rules = [dataclasses.replace(r, check=fast_check(r.expression.statement, indexes)) for r in rules]
        # How evaluate finds the rules that may fire: by position in the book, the ungated ones, the
        # ones whose first comparison (or flag) holds, and, per literal pass, those whose literal was found.
        self._entries: list[tuple[Rule, Callable, Reason]] = []
        self._ungated: list[int] = []
        self._compared: list[tuple[int, str, Callable, Any]] = []
        self._literal_passes: dict[Any, tuple[Callable, LiteralIndex, dict[int, list[int]], list[int]]] = {}
        for position, rule in enumerate(self.rules):
            # A rule's reason never changes (and is immutable): made once, not per mention.
            reason = Reason("rule", rule.name, rule.urgency, rule.virality, rule.description)
            self._entries.append((rule, rule.check or rule.expression.matches, reason))
            gate = _gate(rule.expression.statement, indexes)
            if gate is None:
                self._ungated.append(position)
            elif gate.index is None:
                self._compared.append((position, gate.key, gate.test, gate.value))
            else:
                _, _, by_number, gated = self._literal_passes.setdefault(gate.key, (gate.subject, gate.index, {}, []))
                by_number.setdefault(gate.value, []).append(position)
                gated.append(position)
        self._literal_passes_list = list(self._literal_passes.items())

    @classmethod
    def from_files(cls, paths: list[Path], *, fields: RuleFields = CORE_FIELDS) -> "RuleBook":
        rules: list[Rule] = []
        for path in paths:
            rules.extend(load_pack(path, fields))
        return cls(rules, fields=fields)

    @classmethod
    def from_config(cls, config: Any) -> "RuleBook":
        """The config's rule packs, checked against the core's fields and those the sources declare (the
        configured ones', then the other installed ones')."""
        from .source import rule_fields_for  # source imports the config; rules need it only here
        return cls.from_files(config.rule_paths, fields=RuleFields(rule_fields_for(config)))

    def evaluate(self, facts: dict[str, Any], *, urgency: float = 0.0, virality: float = 0.0) -> Verdict:
        """The rules' points added to ``urgency`` and ``virality`` (the continuous bases the complaint model and
        the growth signals give), clamped to 0-100."""
        facts = dict(facts)
        tags = list(facts.get("tags") or ())
        facts["tags"] = tuple(tags)
        # Gates read literal hits and numbers, never the tags rules add, so all can be tested first.
        positions = [position for position, key, test, value in self._compared if test(facts[key], value)]
        positions += self._ungated
        for key, (subject, index, by_number, gated) in self._literal_passes_list:
            value = subject(facts)
            if value is None:
                facts[key] = _EVERYTHING
                positions += gated
                continue
            hits = facts[key] = index.hits(value)
            for number in hits:
                positions += by_number.get(number, ())
        positions.sort()
        entries = self._entries
        reasons: list[Reason] = []
        notify: list[str] = []
        suppressed = False
        for position in positions:
            rule, check, reason = entries[position]
            try:
                fired = check(facts)
            except rule_engine.errors.EvaluationError as err:
                reasons.append(Reason("error", rule.name, detail=f"could not evaluate: {err.message}"))
                continue
            if not fired:
                continue
            urgency += rule.urgency
            virality += rule.virality
            reasons.append(reason)
            if rule.tags:
                tags.extend(t for t in rule.tags if t not in tags)
                facts["tags"] = tuple(tags)
            suppressed |= rule.suppress
            if rule.notify:
                notify.extend(e for e in rule.notify if e not in notify)
        return Verdict(_clamp(urgency), _clamp(virality), reasons, tags, suppressed, notify)


def _clamp(points: float) -> float:
    """``max(0.0, min(100.0, points))``, NaN and signed zeros included, without two builtin calls."""
    points = points if points < 100.0 else 100.0
    return points if points > 0.0 else 0.0

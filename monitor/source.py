"""The ``Source`` protocol and the one way adapters are found: entry points.

An adapter is a class registered in the ``complaint_monitor.sources`` entry
point group (the built-in ``reddit`` and ``rss`` adapters are registered in
``pyproject.toml`` exactly as a third party's would be). It declares a
pydantic ``Settings`` model for its ``sources.<name>`` config section and is
built by ``from_settings``. Only the adapters the config names are built;
rule packs know the rule fields of every installed one (``rule_fields_for``).

An adapter also declares what it adds beyond the core's ``Mention`` fields:
``extra_keys`` (the keys it puts in ``Mention.extra``) and ``rule_fields``
(facts of its own for rules, read from those keys), each a ``SourceField``
with a type and the sentence the README's tables carry (a test fails when one
is missing there); ``engagement`` (an ``EngagementMap``: its own numbers and
the core growth signal each feeds); and for ``status``, ``status_section``
(its stored state as data and lines) with ``status_key``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ValidationError

from .config import Config, ConfigError, format_validation_error
from .mention import Engagement, Mention

if TYPE_CHECKING:
    from .rules import DeclaredField

ENTRY_POINT_GROUP = "complaint_monitor.sources"


@dataclass
class Poll:
    """What one poll found, and the cursor to store with it.

    The pipeline stores the mentions and then ``state`` in one transaction, so
    a crash mid-poll repeats the poll instead of skipping what it found.
    """

    mentions: list[Mention] = field(default_factory=list)
    # Fresh numbers (score, comments, reach) for items stored before: growth tracking.
    updates: list[Mention] = field(default_factory=list)
    # Keys to store for the next poll; a key set to None is forgotten (e.g. a feed no longer configured).
    state: dict[str, Any] = field(default_factory=dict)
    # Health per part of the source ("feed:URL", "listing:new:a+b"): what failed and why,
    # and what worked, so a failure that repeats is reported once and its recovery too.
    failed: dict[str, str] = field(default_factory=dict)
    succeeded: list[str] = field(default_factory=list)
    # Nothing was due (a source that is asked every second and paces itself): nothing to store or record.
    idle: bool = False

    @property
    def errors(self) -> list[str]:
        return [f"{subject}: {reason}" for subject, reason in self.failed.items()]


@dataclass(frozen=True)
class SourceContext:
    """What the core hands an adapter when it is built."""

    name: str
    search_terms: dict[str, list[str]]  # brand name -> keywords to search for
    log: logging.Logger
    # A one-shot read (``complaint-monitor once``): what is there now, through requests that end; nothing
    # long-lived (a stream) is opened, since the process exits after one poll.
    once: bool = False


@dataclass(frozen=True)
class SourceField:
    """One key a source adds (to ``Mention.extra``, or as a rule field): its type and what it means."""

    type: Literal["string", "float", "integer", "boolean", "strings", "mapping"]
    doc: str


@dataclass(frozen=True)
class EngagementMap:
    """How a source's own engagement numbers feed the core's growth signals (``monitor/virality.py``).

    ``numbers`` declares each number the source reads (its type and meaning). ``score`` names those summed into
    the score (score velocity, recent velocity, acceleration), ``comments`` those summed into the comments
    (comments per hour), ``reach`` those summed, times ``reach_scale``, into the reach; ``upvote_ratio`` and
    ``awards`` (Reddit's) pass one number through. A name an item lacks counts nothing; an item with none of a
    signal's numbers leaves it unknown (None). ``score_unit`` and ``comment_unit`` are what the explanation of a
    mention's virality calls them ("favourites + boosts/hour").
    """

    numbers: dict[str, SourceField]
    score: tuple[str, ...] = ()
    comments: tuple[str, ...] = ()
    reach: tuple[str, ...] = ()
    reach_scale: float = 1.0
    upvote_ratio: str | None = None
    awards: str | None = None
    score_unit: str = "points"
    comment_unit: str = "comments"

    def __post_init__(self) -> None:
        used = [*self.score, *self.comments, *self.reach, *filter(None, (self.upvote_ratio, self.awards))]
        undeclared = [name for name in used if name not in self.numbers]
        if undeclared:
            raise TypeError(f"EngagementMap maps numbers it does not declare: {', '.join(undeclared)}")

    def engagement(self, numbers: dict[str, Any]) -> Engagement:
        """The core's ``Engagement`` from what the source read (a number absent or None is not known)."""
        ratio = numbers.get(self.upvote_ratio) if self.upvote_ratio else None
        return Engagement(score=_total(self.score, numbers), comments=_total(self.comments, numbers),
                          upvote_ratio=ratio, awards=numbers.get(self.awards) if self.awards else None)

    def reach_of(self, numbers: dict[str, Any]) -> float | None:
        total = _total(self.reach, numbers)
        return None if total is None else float(total * self.reach_scale)

    def feeds(self, name: str) -> str:
        """Which core signal a declared number feeds, for the README's table."""
        if name in self.score:
            return "score"
        if name in self.comments:
            return "comments"
        if name in self.reach:
            return "reach" + (f" (x {self.reach_scale:g})" if self.reach_scale != 1 else "")
        return {self.upvote_ratio: "upvote_ratio", self.awards: "awards"}.get(name, "-")


def _total(names: tuple[str, ...], numbers: dict[str, Any]) -> Any:
    present = [numbers[name] for name in names if numbers.get(name) is not None]
    return sum(present) if present else None


def engagement_map(cls: type) -> EngagementMap:
    """A source's ``engagement`` declaration; a source that declares none feeds no growth signal (but may still set
    ``Mention.engagement`` itself, as a third-party source written before the declaration does)."""
    declared = getattr(cls, "engagement", None)
    if declared is None:
        return EngagementMap(numbers={})
    if not isinstance(declared, EngagementMap):
        raise TypeError(f"{cls.__name__}.engagement must be an EngagementMap, not {type(declared).__name__}")
    return declared


def engagement_table() -> str:
    """The README's rows, ``| source | `number` | type | meaning | feeds |``, for every installed adapter."""
    rows = []
    for name, entry in sorted(available_sources().items()):
        declared = engagement_map(entry.load())
        rows.extend(f"| {name} | `{key}` | {spec.type} | {spec.doc} | {declared.feeds(key)} |"
                    for key, spec in declared.numbers.items())
    return "\n".join(rows)


@dataclass(frozen=True)
class StatusView:
    """What the core knows of one source when ``status`` asks: its stored ``state`` (what its polls returned),
    the ongoing ``failures`` of its parts (subject without the source's name, e.g. ``feed:URL``: since, last_at,
    count, last_error), and its mentions of the last hour per value of its ``status_key`` extra key."""

    name: str
    state: dict[str, Any]
    now: float
    failures: dict[str, dict[str, Any]] = field(default_factory=dict)
    mentions_by: dict[str, int] = field(default_factory=dict)
    # How status prints a stored time (epoch seconds or ISO text), None for one never set: every time alike.
    time: Callable[[Any], str | None] = lambda value: str(value) if value else None


@dataclass
class StatusSection:
    """A source's own part of ``status``: ``data`` joins its JSON (``--json``), ``lines`` are printed under it."""

    data: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)


def status_section(name: str, view: StatusView) -> StatusSection:
    """The source's ``status_section(view)`` (nothing for a source that declares none); a section that fails says
    so in one line: ``status`` must work for the operator whatever one adapter's state holds."""
    try:
        builder = getattr(load_source_class(name), "status_section", None)
        return builder(view) if builder is not None else StatusSection()
    except Exception as err:  # noqa: BLE001 - an adapter's bug or an odd stored state costs its section only
        return StatusSection(lines=[f"  (no detail: {type(err).__name__}: {err})"])


def status_key(name: str) -> str | None:
    """The extra key a source's status counts mentions by (``feed_url``, ``instance``), if it declares one."""
    try:
        key = getattr(load_source_class(name), "status_key", None)
    except ConfigError:
        return None
    return key if isinstance(key, str) and key.isidentifier() else None


def declared_fields(cls: type, kind: Literal["extra_keys", "rule_fields"]) -> dict[str, SourceField]:
    """What an adapter class declares (nothing when it declares nothing: the declarations are optional)."""
    declared = getattr(cls, kind, None) or {}
    for key, spec in declared.items():
        if not isinstance(spec, SourceField):
            raise TypeError(f"{cls.__name__}.{kind}[{key!r}] must be a SourceField, not {type(spec).__name__}")
    return dict(declared)


def also_rule_fields(extra_keys: dict[str, SourceField], *keys: str) -> dict[str, SourceField]:
    """``rule_fields`` made of some of a source's ``extra_keys``: a rule field's value is ``Mention.extra[key]``."""
    return {key: extra_keys[key] for key in keys}


@runtime_checkable
class Source(Protocol):
    Settings: ClassVar[type[BaseModel]]
    # Optional declarations (see ``SourceField``): keys this source puts in Mention.extra, rule fields it adds
    # (each one of its extra keys), and how its engagement numbers feed the core's growth signals:
    # extra_keys: ClassVar[dict[str, SourceField]]; rule_fields: ClassVar[dict[str, SourceField]];
    # engagement: ClassVar[EngagementMap]
    name: str
    interval: float

    @classmethod
    def from_settings(cls, settings: Any, *, context: SourceContext) -> "Source": ...

    def poll(self, state: dict[str, Any]) -> Poll:
        """Fetch what is new since ``state`` (the last stored cursor); never raise for one bad item."""
        ...

    def close(self) -> None: ...
    # Optional, for ``status``: ``status_key`` (an extra key its mentions are counted by) and
    # ``status_section(view: StatusView) -> StatusSection`` (a staticmethod: it reads stored state, no network).


def available_sources() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def source_fields_table(kind: Literal["extra_keys", "rule_fields"] = "extra_keys") -> str:
    """The README's rows for every installed adapter's declarations: ``| source | `key` | type | meaning |`` for
    extra keys; rule fields in the rule reference's own shape, ``| `field` | type | source: meaning |``."""
    rows = []
    for name, entry in sorted(available_sources().items()):
        for key, spec in declared_fields(entry.load(), kind).items():
            rows.append(f"| {name} | `{key}` | {spec.type} | {spec.doc} |" if kind == "extra_keys"
                        else f"| `{key}` | {spec.type} | {name}: {spec.doc} |")
    return "\n".join(rows)


def load_source_class(name: str) -> type:
    found = available_sources()
    if name not in found:
        known = ", ".join(sorted(found)) or "none installed"
        raise ConfigError(f"sources.{name}: no source adapter named {name!r} (installed: {known})")
    return found[name].load()


def rule_fields_for(config: Config) -> list["DeclaredField"]:
    """The rule fields a config's rule packs may read (each from ``Mention.extra`` under its name): those its
    sources declare, then those of every other installed source, so a pack naming ``subreddit`` loads whatever the
    config reads (the field is then empty for every mention). Two configured sources may share a field of the same
    type; a name a configured source declares with another type is a config error naming both. An installed
    source the config does not name costs nothing when it cannot be loaded, and gives no field whose name is
    taken, by the core or with another type (a rule naming such a field fails as an unknown field)."""
    from .rules import FIELDS, DeclaredField  # the rules need this module only through here

    found: dict[str, DeclaredField] = {}
    for name in config.sources:
        for key, spec in declared_fields(load_source_class(name), "rule_fields").items():
            known = found.get(key)
            if known is None:
                found[key] = DeclaredField(key, spec.type, spec.doc, frozenset([name]))
            elif known.type != spec.type:
                raise ConfigError(f"sources.{name}: rule field {key!r} is of type {spec.type} here but {known.type}"
                                  f" in sources.{min(known.sources)}: one name, one type")
            else:
                found[key] = DeclaredField(key, known.type, known.doc, known.sources | {name})
    installed: dict[str, DeclaredField] = {}
    ambiguous: set[str] = set()
    for name, entry in sorted(available_sources().items()):
        if name in config.sources:
            continue
        try:
            declared = declared_fields(entry.load(), "rule_fields")
        except Exception:  # noqa: BLE001 - a broken adapter the config does not use must not stop this one
            continue
        for key, spec in declared.items():
            if key in FIELDS or key in found:
                continue
            known = installed.get(key)
            if known is None:
                installed[key] = DeclaredField(key, spec.type, spec.doc, frozenset([name]))
            elif known.type != spec.type:
                ambiguous.add(key)
            else:
                installed[key] = DeclaredField(key, known.type, known.doc, known.sources | {name})
    return [*found.values(), *(f for key, f in installed.items() if key not in ambiguous)]


def validate_source_settings(config: Config) -> dict[str, tuple[type, BaseModel]]:
    """Each configured adapter's class and validated settings; errors name the key path."""
    validated = {}
    problems = []
    for name, section in config.sources.items():
        cls = load_source_class(name)
        try:
            validated[name] = (cls, cls.Settings.model_validate(section))
        except ValidationError as err:
            problems.append(format_validation_error(err, prefix=f"sources.{name}", model=cls.Settings))
    if problems:
        raise ConfigError("\n".join(problems))
    return validated

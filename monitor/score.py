"""Turn a matched mention into scores: sentiment, signals, rules, priority.

This stage owns the facts a rule can read; the rules themselves decide what
those facts are worth. Every number it produces carries its reasons.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NamedTuple

from .complaint import ModelFile
from .config import ComplaintSettings, Config, Thresholds
from .match import BrandMatch
from .mention import Mention
from .rules import Reason, RuleBook, Verdict
from .sentiment import Sentiment, SentimentScorer, rounded
from .virality import POINTS, Units, growth_risk


class Signals(NamedTuple):
    """Measured facts about spread, as opposed to what the words say (immutable; a NamedTuple is
    made in a fifth of a frozen dataclass's time, and one is made per mention)."""

    score_velocity: float = 0.0  # since it was posted: the overall rate
    comment_velocity: float = 0.0
    acceleration: float = 0.0
    age_hours: float = 0.0
    sightings: int = 1
    brand_spike: float = 0.0
    recent_velocity: float = 0.0  # since the last reading (the overall rate at the first one)

    def as_dict(self) -> dict[str, float]:
        return self._asdict()


class Reading(NamedTuple):
    """What the words of a mention say, before any rule reads them."""

    sentiment: Sentiment
    title_compound: float
    complaint: float = 0.0  # the complaint model's probability, 0..1


@dataclass
class Scores:
    sentiment: Sentiment
    title_compound: float
    signals: Signals
    verdict: Verdict
    priority: str
    facts: dict[str, Any] = field(repr=False, default_factory=dict)
    complaint: float = 0.0
    # A complaint is paged by ``priority``; anything else is P4 as a complaint, and ``viral_priority`` (its
    # virality risk alone) is what a responder who asked for viral alerts hears about.
    is_complaint: bool = False
    viral_priority: str = "P4"

    @property
    def about(self) -> str:
        """What an alert about it is: a complaint to answer, or a mention that spreads (praise, a joke, news)."""
        return "complaint" if self.is_complaint else "viral"

    @property
    def alert_priority(self) -> str:
        return self.priority if self.is_complaint else self.viral_priority

    @property
    def urgency(self) -> float:
        return self.verdict.urgency

    @property
    def virality(self) -> float:
        return self.verdict.virality

    @property
    def reasons(self) -> list[Reason]:
        return self.verdict.reasons

    def explain(self) -> dict[str, Any]:
        return {
            "priority": self.priority,
            "urgency": self.urgency,
            "virality": self.virality,
            "complaint": self.complaint,
            "is_complaint": self.is_complaint,
            "sentiment": {**self.sentiment.as_dict(), "title_compound": self.title_compound},
            "signals": self.signals.as_dict(),
            "reasons": [r.as_dict() for r in self.reasons],
            "tags": self.verdict.tags,
            "suppressed": self.verdict.suppressed,
        }


SENTIMENT_COLUMNS = ("compound", "negative", "neutral", "positive", "min_sentence", "negative_share",
                     "brand_compound", "title_compound")


def stored_explanation(row) -> dict[str, Any]:
    """The explanation of a stored mention (a ``store.MentionRecord``), in the same shape as ``Scores.explain``."""
    return {
        "mention_id": row.id, "brand": row.brand, "source": row.source, "place": row.place,
        "url": row.url, "title": row.title, "quote": row.quote,
        "priority": row.priority, "urgency": row.urgency, "virality": row.virality,
        "complaint": row.complaint, "is_complaint": row.is_complaint,
        "sentiment": {c: getattr(row, c) for c in SENTIMENT_COLUMNS},
        "signals": row.signals, "reasons": row.reasons, "tags": row.tags, "suppressed": row.suppressed,
    }


def format_explanation(explained: dict[str, Any]) -> str:
    """An explanation for a person: the scores, then each rule with its points and each signal with its value."""
    compound = explained["sentiment"].get("compound") or 0.0
    complaint = explained.get("complaint")
    what = ("complaint" if explained.get("is_complaint") else "not a complaint") + (
        f" {complaint:.2f}" if complaint is not None else "")
    lines = [f"{explained['priority']}  urgency {explained['urgency']:.0f}  virality {explained['virality']:.0f}"
             f"  {what}  compound {compound:+.3f}  brand {explained.get('brand') or '(none matched)'}"
             + ("  (suppressed)" if explained.get("suppressed") else "")]
    reasons = [Reason(**r) for r in explained["reasons"]]
    rules = [r for r in reasons if r.kind != "signal"]
    lines.append("rules:" if rules else "rules: none fired")
    lines.extend(f"  {r.kind} {r}" for r in rules)
    details = {r.name: f"{r.detail}; virality {r.virality:+g}" if r.virality else r.detail
               for r in reasons if r.kind == "signal"}
    lines.append("signals:")
    for name, value in explained["signals"].items():
        lines.append(f"  {name} = {value:g}" + (f" ({details.pop(name)})" if name in details else ""))
    lines.extend(f"  {name}: {detail}" for name, detail in details.items())
    sentiment = explained["sentiment"]
    lines.append("sentiment: " + ", ".join(f"{k} {v:.3f}" for k, v in sentiment.items() if isinstance(v, float)))
    if explained.get("tags"):
        lines.append("tags: " + ", ".join(explained["tags"]))
    return "\n".join(lines)


def complaint_level(urgency: float, virality: float) -> float:
    """How much a complaint needs answering now, 0-100: it grows with its urgency and with its spread, either
    alone enough to reach the top (a probabilistic "or": 60 urgency and 50 virality make 80)."""
    return 100 - (100 - urgency) * (100 - virality) / 100


def priority_for(urgency: float, virality: float, thresholds: Thresholds) -> str:
    """A complaint's priority."""
    return level_priority(complaint_level(urgency, virality), thresholds)


def level_priority(level: float, thresholds: Thresholds) -> str:
    if level >= thresholds.p1:
        return "P1"
    if level >= thresholds.p2:
        return "P2"
    if level >= thresholds.p3:
        return "P3"
    return "P4"


def signals_from_mention(mention: Mention, *, now: datetime | None = None, sightings: int = 1,
                         brand_spike: float = 0.0, previous: list[tuple[datetime, int, int]] | None = None) -> Signals:
    """Velocities from the post's age and, when there are earlier readings (growth snapshots), from the
    last of them: the overall rate says how big it is for its age, the recent one whether it still grows."""
    now = now or datetime.now(timezone.utc)
    age = (now - mention.created_at).total_seconds() / 3600
    age = 0.0 if 0.0 > age else age  # max(age, 0.0), without the builtin call
    score = mention.engagement.score or 0
    comments = mention.engagement.comments or 0
    # A post seen minutes after it was made would get an absurd rate: at least a quarter hour.
    hours = 0.25 if 0.25 > age else age
    score_velocity = recent_velocity = score / hours
    comment_velocity = comments / hours
    acceleration = 0.0
    if previous:
        # The posting counts as a reading of nothing, so the second reading already has two rates to compare.
        points = sorted(previous) + [(now, score, comments)]
        if mention.created_at < points[0][0]:
            points.insert(0, (mention.created_at, 0, 0))
        (t0, s0, c0), (t1, s1, c1) = points[-2], points[-1]
        span = max((t1 - t0).total_seconds() / 3600, 1 / 60)
        recent_velocity = max(s1 - s0, 0) / span
        comment_velocity = max(c1 - c0, 0) / span
        if len(points) >= 3:
            tp, sp, _ = points[-3]
            earlier = max((t0 - tp).total_seconds() / 3600, 1 / 60)
            before = max(s0 - sp, 0) / earlier
            # Per hour between the middles of the two intervals the rates were measured over.
            acceleration = (recent_velocity - before) / ((span + earlier) / 2)
    return Signals(rounded(score_velocity, 2), rounded(comment_velocity, 2), rounded(acceleration, 2),
                   rounded(age, 2), sightings, rounded(brand_spike, 2), rounded(recent_velocity, 2))


class Scorer:
    def __init__(self, *, rules: RuleBook, sentiment: SentimentScorer, thresholds: Thresholds,
                 complaint: ModelFile | None = None, complaint_settings: ComplaintSettings | None = None,
                 own_account=lambda brand, author: False, spike_ratio: float = 3.0,
                 units: dict[str, Units] | None = None):
        self.rules = rules
        self.spike_ratio = float(spike_ratio)  # the brand-spike rule compares brand_spike with it
        self.sentiment = sentiment
        self.thresholds = thresholds
        self.complaint = complaint or ModelFile()  # the shipped model
        self.complaint_settings = complaint_settings or ComplaintSettings()
        self._own_account = own_account
        # The rule fields sources declare, read from a mention's extra when it comes from one of them, else empty
        # (see ``rules.DeclaredField``): the facts carry every field the book's rules may read. Per source, made
        # once: a book knows every installed source's fields and a mention reads only its own source's.
        self._declared_empty = {f.name: f.empty for f in rules.fields.declared}
        self._declared_by_source: dict[str, list[Any]] = {}
        for declared in rules.fields.declared:
            for source in declared.sources:
                self._declared_by_source.setdefault(source, []).append(declared)
        self._units = dict(units or {})  # source -> what its score and comments count, for the explanation

    @classmethod
    def from_config(cls, config: Config, *, own_account=lambda brand, author: False) -> "Scorer":
        return cls(rules=RuleBook.from_config(config),
                   sentiment=SentimentScorer(lexicon=config.sentiment.lexicon),
                   thresholds=config.thresholds, complaint=ModelFile(config.complaint_model_path),
                   complaint_settings=config.complaint, own_account=own_account, spike_ratio=config.spikes.ratio,
                   units=source_units(config))

    def facts(self, mention: Mention, match: BrandMatch | None, sentiment: Sentiment,
              title_compound: float, signals: Signals, complaint: float = 0.0) -> dict[str, Any]:
        e = mention.engagement
        extra = mention.extra
        # One dict display, in FIELDS order (a test holds it to FIELDS): no defaults copied and overwritten.
        facts = {
            "text": mention.text, "title": mention.title, "source": mention.source, "kind": mention.kind,
            "place": mention.place, "author": mention.author or "",
            "brand": mention.brand or "", "own_account": bool(self._own_account(mention.brand, mention.author)),
            "compound": sentiment.compound, "negative": sentiment.negative, "positive": sentiment.positive,
            "min_sentence": sentiment.min_sentence, "negative_share": sentiment.negative_share,
            "brand_compound": sentiment.brand_compound, "title_compound": title_compound,
            "complaint": complaint,
            "score": float(e.score or 0), "comments": float(e.comments or 0),
            "upvote_ratio": float(e.upvote_ratio if e.upvote_ratio is not None else 1.0),
            "awards": float(e.awards or 0), "reach": float(mention.reach or 0),
            "score_velocity": float(signals.score_velocity), "recent_velocity": float(signals.recent_velocity),
            "comment_velocity": float(signals.comment_velocity),
            "acceleration": float(signals.acceleration), "age_hours": float(signals.age_hours),
            "sightings": float(signals.sightings), "brand_spike": float(signals.brand_spike),
            "spike_ratio": self.spike_ratio,
            "length": float(len(mention.text)), "tags": (),
        }
        facts.update(self._declared_empty)
        for declared in self._declared_by_source.get(mention.source, ()):
            facts[declared.name] = declared.value(extra.get(declared.name))
        return facts

    def read(self, mention: Mention, match: BrandMatch | None = None) -> Reading:
        """What the words say: the first stage of scoring, which needs nothing stored."""
        brand_span = None
        if match is not None and mention.title and match.start >= len(mention.title) + 1:
            # The matcher saw "title\ntext"; shift the span into the text.
            brand_span = (match.start - len(mention.title) - 1, match.end - len(mention.title) - 1)
        elif match is not None and not mention.title:
            brand_span = (match.start, match.end)
        sentiment = self.sentiment.score(mention.text, brand_span=brand_span)
        title_compound = self.sentiment.vader(mention.title)["compound"] if mention.title else 0.0
        if mention.title and (not mention.text or mention.text.isspace()):
            sentiment = self.sentiment.score(mention.title)
        # The model reads the title too: on Reddit and in feeds the title is often the complaint itself.
        words = f"{mention.title}\n{mention.text}" if mention.title else mention.text
        complaint = rounded(self.complaint.model.probability(words, sentiment), 4)
        return Reading(sentiment, title_compound, complaint)

    def rank(self, mention: Mention, match: BrandMatch | None, reading: Reading, *,
             signals: Signals | None = None) -> Scores:
        """The second stage: the reading and the signals through the rules, to urgency, virality and priority."""
        signals = signals or signals_from_mention(mention)
        facts = self.facts(mention, match, reading.sentiment, reading.title_compound, signals, reading.complaint)
        settings = self.complaint_settings
        # Every mention starts from what the model says, so no clear complaint sits at 0 and no two tie for no
        # reason; rules add severity (legal, safety, money, leaving...) on top.
        base = rounded(reading.complaint * settings.urgency_points, 1)
        growth = growth_risk(signals, mention.reach, self._units.get(mention.source, POINTS))
        verdict = self.rules.evaluate(facts, urgency=base, virality=growth.base)
        verdict.reasons.insert(0, Reason("model", "complaint", urgency=base,
                                         detail=f"complaint model {reading.complaint:.2f}"))
        verdict.reasons.extend(growth.reasons)
        if signals.brand_spike:
            verdict.reasons.append(_spike_reason(signals.brand_spike))
        # A rule may vouch for a complaint the model doubts (tag "complaint": the rules are right when they fire),
        # or say that it is none whatever the model thinks (tag "not-complaint": a joke, praise, our own post).
        tags = verdict.tags
        is_complaint = (reading.complaint >= settings.threshold or "complaint" in tags) and "not-complaint" not in tags
        priority = priority_for(verdict.urgency, verdict.virality, self.thresholds) if is_complaint else "P4"
        return Scores(reading.sentiment, reading.title_compound, signals, verdict, priority, facts,
                      complaint=reading.complaint, is_complaint=is_complaint,
                      viral_priority=level_priority(verdict.virality, self.thresholds))

    def score(self, mention: Mention, match: BrandMatch | None = None, *, signals: Signals | None = None) -> Scores:
        """Both stages for one mention. Many at once go faster stage by stage (see ``Pipeline.process``)."""
        return self.rank(mention, match, self.read(mention, match), signals=signals)

def source_units(config: Config) -> dict[str, Units]:
    """What each configured source's score and comments count (its ``EngagementMap``), for explanations."""
    from .source import engagement_map, load_source_class  # source imports what score imports
    units = {}
    for name in config.sources:
        declared = engagement_map(load_source_class(name))
        units[name] = Units(declared.score_unit, declared.comment_unit)
    return units


def _spike_reason(ratio: float) -> Reason:
    """The value behind the brand-spike rule (its points are the rule's), so an explanation shows it."""
    return Reason("signal", "brand_spike", detail=f"{ratio:g}x the usual hourly volume")

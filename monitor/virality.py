"""Virality risk from the growth signals: a graded base from 0 to 100, with every point explained.

Step rules ("more than 100 points an hour: +40") saturate: on real Reddit
posts nearly every post that later took off had already crossed them, and so
had most that did not. Here each signal adds points on a log scale, so 200 and
2,000 points an hour are different risks, and the sum goes through one smooth
curve to 0..100 (never reaching 100, so nothing ties at the top).

The weights were fitted (logistic regression) on one half of the simulated
growth data of ``bench/bench_virality_eval.py`` and are measured there on the
other half. At first sighting the score velocity carries most of the weight:
it is the best single predictor of where a post ends, and the risk rises with
it. From the second reading on, the velocity since the last reading says
whether the post still grows, and acceleration whether it is taking off.

Rules add their points on top of this base (``RuleBook.evaluate(virality=...)``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

from .rules import Reason

if TYPE_CHECKING:  # score imports this module
    from .score import Signals

# Points per decade (log10 of 1 + the value) of each signal: ten times the logistic-regression coefficients
# fitted on the tuning half of bench/bench_virality_eval.py (``--fit``), rounded to a tenth.
OVERALL_WEIGHT = 19.6  # points/hour since posted: the best single predictor of where a post ends
RECENT_WEIGHT = 0.5  # points/hour since the last reading (5 minutes of fuzzed votes say little more)
COMMENT_WEIGHT = 4.1  # comments/hour
REACH_WEIGHT = 1.6  # audience, in thousands
ACCELERATION_WEIGHT = 1.3  # points/hour per hour, signed: a slowdown takes points away
SIGHTINGS_WEIGHT = 5.0  # per doubling of the places the story was seen in (set by judgment: not simulated)
# The curve from summed points to risk, 100 * (1 - exp(-points / SCALE)): about 1 risk per point at first,
# flattening but never flat. 10 points/hour (no comments, 300k subscribers) is about 24, 100/hour 39 (P3),
# 1,000/hour 52 (P2), 10,000/hour 62.
SCALE = 100.0


# What each signal's value means, for the explanation (made only for the signals that add points), in the units
# of the mention's source: each source's EngagementMap says what its score and comments are made of
# ("favourites + boosts", "replies"); Reddit's are points and comments.
_DETAILS = {
    "score_velocity": lambda v, u: f"{v:g} {u.score}/hour since posted",
    "recent_velocity": lambda v, u: f"{v:g} {u.score}/hour since the last reading",
    "comment_velocity": lambda v, u: f"{v:g} {u.comments}/hour",
    "reach": lambda v, u: f"{v:,.0f} can see it",
    "acceleration": lambda v, u: f"{v:+g} {u.score}/hour per hour",
    "sightings": lambda v, u: f"seen in {v:g} places",
}


class Units(NamedTuple):
    """What a source's score and comments count, for the explanation."""

    score: str = "points"
    comments: str = "comments"


POINTS = Units()


class Growth(NamedTuple):
    base: float
    reasons: list[Reason]


def _decades(value: float) -> float:
    """log10(1 + value) for a rate that cannot be negative (0 for a missing or negative one)."""
    return math.log10(1.0 + value) if value > 0 else 0.0


def growth_risk(signals: "Signals", reach: float | None, units: Units = POINTS) -> Growth:
    """The virality base 0..100 from a mention's growth signals and its reach, and its reasons: one
    ``Reason("signal", ...)`` per signal that adds (or, for a slowdown, takes away) points; they sum to the base.
    The signals are the source's own numbers mapped by its ``EngagementMap`` (the same weights for every source);
    ``units`` only names them in the reasons."""
    score_velocity, recent_velocity = signals.score_velocity, signals.recent_velocity
    comment_velocity, acceleration, sightings = signals.comment_velocity, signals.acceleration, signals.sightings
    if recent_velocity == score_velocity:  # one reading (or a steady rate): one rate, one reason
        velocity = [("score_velocity", (OVERALL_WEIGHT + RECENT_WEIGHT) * _decades(score_velocity))]
    else:
        velocity = [("score_velocity", OVERALL_WEIGHT * _decades(score_velocity)),
                    ("recent_velocity", RECENT_WEIGHT * _decades(recent_velocity))]
    parts = velocity + [
        ("comment_velocity", COMMENT_WEIGHT * _decades(comment_velocity)),
        ("reach", REACH_WEIGHT * _decades((reach or 0.0) / 1000.0)),
        ("acceleration", math.copysign(ACCELERATION_WEIGHT * _decades(abs(acceleration)), acceleration)),
        ("sightings", SIGHTINGS_WEIGHT * math.log2(sightings) if sightings > 1 else 0.0),
    ]
    points = sum(p for _, p in parts)
    if points <= 0:
        return Growth(0.0, [])
    risk = 100.0 * (1.0 - math.exp(-points / SCALE))
    # Each signal's share of the risk is its share of the points; rounded to tenths, and the base is their
    # sum, so the explanation adds up exactly.
    values = {"score_velocity": score_velocity, "recent_velocity": recent_velocity,
              "comment_velocity": comment_velocity, "reach": reach, "acceleration": acceleration,
              "sightings": sightings}
    reasons = [Reason("signal", name, virality=round(p * risk / points, 1), detail=_DETAILS[name](values[name], units))
               for name, p in parts if p]
    return Growth(round(sum(r.virality for r in reasons), 1), reasons)

"""Replay a file of mentions through the current rules, to tune rules before deploying them.

The input is CSV or JSON Lines with at least ``id`` and ``text``; ``title``,
``author``, ``source``, ``created_at`` and the engagement counts (``score``,
``comments``, ``upvote_ratio``, ``awards``) and ``reach`` are used when present.
Every input row comes back unchanged with ``brand``, ``compound``, ``urgency``,
``virality``, ``priority`` and ``reasons`` added.

A replay has no store: each row is scored on its own, so ``sightings`` is 1
and ``brand_spike`` 0. Velocities are measured against the newest
``created_at`` in the file, as if the replay ran right after it; a row
without ``created_at`` has no velocities.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from .config import Config, ConfigError
from .match import BrandMatch, BrandMatcher
from .mention import Engagement, Mention, utcnow
from .score import Scorer, Signals, signals_from_mention

REQUIRED = ("id", "text")
ENGAGEMENT = ("score", "comments", "upvote_ratio", "awards")
ADDED = ("brand", "compound", "urgency", "virality", "priority", "reasons")
JSON_LINES = (".jsonl", ".ndjson", ".json")


class BacktestError(ValueError):
    """The input file cannot be replayed; the message names the file and the problem."""


def read_mentions(path: str | Path) -> pd.DataFrame:
    """The input rows as strings, exactly as written (no NaN for empty cells)."""
    path = Path(path)
    try:
        if path.suffix.lower() in JSON_LINES:
            frame = pd.read_json(path, lines=True, dtype=False)
        else:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise BacktestError(f"{path}: no such file") from None
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as err:
        raise BacktestError(f"{path}: cannot read it as {'JSON Lines' if path.suffix.lower() in JSON_LINES else 'CSV'}:"
                            f" {err}") from None
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise BacktestError(f"{path}: required column(s) missing: {', '.join(missing)}"
                            f" (found: {', '.join(map(str, frame.columns)) or 'none'})")
    clashing = [c for c in ADDED if c in frame.columns]
    if clashing:
        raise BacktestError(f"{path}: column(s) {', '.join(clashing)} would be overwritten by the scores;"
                            " rename them first")
    return frame


def _text(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _number(value, kind=int):
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else kind(number)


@dataclass
class Progress:
    """Reports to stderr every ``every`` seconds, for files that take a while."""

    total: int
    every: float = 2.0
    stream = sys.stderr

    def __post_init__(self):
        self.started = self.last = time.monotonic()

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last < self.every and done < self.total:
            return
        self.last = now
        rate = done / max(now - self.started, 1e-9)
        print(f"scored {done}/{self.total} rows ({rate:,.0f} rows/s)", file=self.stream, flush=True)


def backtest(frame: pd.DataFrame, *, config: Config, brand: str | None = None,
             progress: Callable[[int], None] | None = None) -> pd.DataFrame:
    """Each row scored with the configured brands, lexicon and rules; the rows come back with the scores added.

    With ``brand``, every row is taken to be about that brand (files exported
    per brand often no longer name it in every text).
    """
    if brand is not None and brand not in {b.name for b in config.brands}:
        raise ConfigError(f"--brand {brand!r} is not a configured brand ({', '.join(b.name for b in config.brands)})")
    matcher = BrandMatcher(config.brands)
    scorer = Scorer.from_config(config, own_account=matcher.is_own_account)
    created = (pd.to_datetime(frame["created_at"], errors="coerce", utc=True, format="mixed")
               if "created_at" in frame.columns else pd.Series(pd.NaT, index=frame.index))
    reference = created.max() if created.notna().any() else None
    now = reference.to_pydatetime() if reference is not None else utcnow()
    added: dict[str, list] = {c: [] for c in ADDED}
    for done, (index, row) in enumerate(frame.iterrows(), start=1):
        mention = Mention(
            source=_text(row.get("source")) or "backtest", source_id=_text(row["id"]), url=_text(row.get("url")),
            title=_text(row.get("title")), text=_text(row["text"]), author=_text(row.get("author")) or None,
            created_at=created[index].to_pydatetime() if pd.notna(created[index]) else now, fetched_at=now,
            engagement=Engagement(*(_number(row.get(c), float if c == "upvote_ratio" else int) for c in ENGAGEMENT)),
            reach=_number(row.get("reach"), float),
        )
        match = _match(matcher, mention, brand)
        mention.brand = match.brand if match else brand
        # Without a posting time there is no rate: a score of 5 is not "20 points an hour".
        signals = signals_from_mention(mention, now=now) if pd.notna(created[index]) else Signals()
        scores = scorer.score(mention, match, signals=signals)
        added["brand"].append(mention.brand or "")
        added["compound"].append(scores.sentiment.compound)
        added["urgency"].append(scores.urgency)
        added["virality"].append(scores.virality)
        added["priority"].append(scores.priority)
        added["reasons"].append("; ".join(str(r) for r in scores.reasons if r.kind == "rule"))
        if progress:
            progress(done)
    return frame.assign(**added)


def _match(matcher: BrandMatcher, mention: Mention, brand: str | None) -> BrandMatch | None:
    haystack = f"{mention.title}\n{mention.text}" if mention.title else mention.text
    matches = matcher.match_all(haystack)
    if brand is not None:
        return next((m for m in matches if m.brand == brand), None)
    return matches[0] if matches else None


def ranking(scored: pd.DataFrame) -> pd.DataFrame:
    """Most urgent first: priority, then the higher of urgency and virality, then urgency."""
    level = scored[["urgency", "virality"]].max(axis=1)
    order = pd.DataFrame({"priority": scored["priority"], "level": -level, "urgency": -scored["urgency"]})
    return scored.loc[order.sort_values(["priority", "level", "urgency"], kind="stable").index]


def format_ranking(scored: pd.DataFrame, *, top: int) -> str:
    lines = [f"{'rank':>4}  pri  urg  vir  compound  id  text"]
    for rank, (_, row) in enumerate(ranking(scored).head(top).iterrows(), start=1):
        text = " ".join(_text(row.get("title") or row["text"]).split())
        lines.append(f"{rank:>4}  {row['priority']}  {row['urgency']:>3.0f}  {row['virality']:>3.0f}"
                     f"  {row['compound']:+.3f}    {_text(row['id'])}  {text[:80]}")
        if row["reasons"]:
            lines.append(f"{'':>6}{row['reasons']}")
    counts = scored["priority"].value_counts().sort_index()
    lines.append(f"{len(scored)} rows: " + ", ".join(f"{p} {n}" for p, n in counts.items()))
    return "\n".join(lines)


def write_scored(scored: pd.DataFrame, out: str | Path) -> None:
    out = Path(out)
    if out.suffix.lower() in JSON_LINES:
        scored.to_json(out, orient="records", lines=True, force_ascii=False)
    else:
        scored.to_csv(out, index=False)

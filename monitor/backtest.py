"""Replay a file of mentions through the current rules, to tune rules before deploying them.

The input is CSV or JSON Lines with at least ``id`` and ``text``; ``title``,
``author``, ``source``, ``kind``, ``url``, ``place``, ``subreddit``,
``created_at``, ``fetched_at``, the engagement counts (``score``,
``comments``, ``upvote_ratio``, ``awards``), ``reach``, ``sightings`` and
``brand_spike`` are used when present (a row with a ``subreddit`` and no
``source`` is Reddit's, so rules read its ``subreddit``). Every input row comes back unchanged
with ``brand``, ``compound``, ``urgency``, ``virality``, ``priority`` and
``reasons`` added.

A row is one reading of a mention at its ``fetched_at``. Several rows with
the same ``source`` and ``id`` are successive readings of one post: each is
ranked with the readings before it, through the same ``signals_from_mention``
the pipeline uses for growth snapshots, so the velocity since the last reading
and the acceleration are what the daemon computed. A history exported from a
store (mentions joined with their snapshots) therefore replays to the scores
the daemon gave, or shows what new rules would have given.

A replay has no store: ``sightings`` is 1 and ``brand_spike`` 0 unless the
file says otherwise. A row without ``fetched_at`` is read at ``now``: the
``--now`` given, else the newest ``fetched_at`` or ``created_at`` in the file
(as if the replay ran right after it); a row without ``created_at`` has no
velocities.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

import pandas as pd

from .bulk import collector_paused
from .config import Config, ConfigError
from .match import BrandMatch, BrandMatcher
from .mention import Engagement, Mention, utcnow
from .score import Reading, Scorer, Signals, signals_from_mention

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
    """Reports to stderr every ``every`` seconds, for files that take a while: rows read (the words: most
    of the time), then rows scored (ranked)."""

    total: int
    every: float = 2.0
    stream = sys.stderr

    def __post_init__(self):
        self.last = time.monotonic()
        self.stage = None

    def __call__(self, done: int, stage: str = "scored") -> None:
        now = time.monotonic()
        if stage != self.stage:
            self.stage, self.stage_started = stage, now
        if now - self.last < self.every and done < self.total:
            return
        self.last = now
        rate = done / max(now - self.stage_started, 1e-9)
        print(f"{stage} {done}/{self.total} rows ({rate:,.0f} rows/s)", file=self.stream, flush=True)


def backtest(frame: pd.DataFrame, *, config: Config, brand: str | None = None, now: datetime | None = None,
             progress: Callable[[int, str], None] | None = None) -> pd.DataFrame:
    """Each row scored with the configured brands, lexicon and rules; the rows come back with the scores added.

    With ``brand``, every row is taken to be about that brand (files exported
    per brand often no longer name it in every text). Like ``Pipeline.process``, the rows go through the
    stages together: all matched, all read (each distinct text once), then each ranked in the order of its
    reading. ``progress(done, stage)`` hears of every row read (stage ``"read"``), then of every row ranked
    (``"scored"``): reading the words is most of the time.
    """
    # A Mention, a Reading and Scores per row, all kept to the end: the collector would walk them over and
    # over as they pile up (a fifth of a 14,000-row replay).
    with collector_paused():
        return _replay(frame, config=config, brand=brand, now=now, progress=progress)


def _replay(frame: pd.DataFrame, *, config: Config, brand: str | None, now: datetime | None,
            progress: Callable[[int, str], None] | None) -> pd.DataFrame:
    if brand is not None and brand not in {b.name for b in config.brands}:
        raise ConfigError(f"--brand {brand!r} is not a configured brand ({', '.join(b.name for b in config.brands)})")
    matcher = BrandMatcher(config.brands)
    scorer = Scorer.from_config(config, own_account=matcher.is_own_account)
    created, fetched = _times(frame, "created_at"), _times(frame, "fetched_at")
    newest = pd.concat([created, fetched]).max()
    now = now or (newest.to_pydatetime() if pd.notna(newest) else utcnow())
    mentions = _mentions(frame, created, fetched, now)
    matches = []
    for mention in mentions:
        match = _match(matcher, mention, brand)
        mention.brand = match.brand if match else brand
        matches.append(match)
    # Successive readings of a post mostly repeat its words: each distinct text (and brand span) is read once.
    texts = [(m.title, m.text, match and (match.start, match.end)) for m, match in zip(mentions, matches)]
    readings: dict[tuple, Reading] = {}
    for done, (key, mention, match) in enumerate(zip(texts, mentions, matches), start=1):
        if key not in readings:
            readings[key] = scorer.read(mention, match)
        if progress:
            progress(done, "read")
    sightings = _column(frame, "sightings", lambda v: _number(v) or 1)
    spikes = _column(frame, "brand_spike", lambda v: _number(v, float) or 0.0)
    has_created = created.notna().tolist()
    earlier: dict[tuple[str, str], list[tuple[datetime, int, int]]] = {}
    scored: list = [None] * len(mentions)
    # In the order of the readings (a stable sort keeps the file's order among equal times).
    for done, i in enumerate(sorted(range(len(mentions)), key=lambda i: mentions[i].fetched_at), start=1):
        mention, match = mentions[i], matches[i]
        at = mention.fetched_at
        before = earlier.setdefault(mention.key, [])
        if has_created[i]:
            signals = signals_from_mention(mention, now=at, sightings=sightings[i], brand_spike=spikes[i],
                                           previous=[r for r in before if r[0] < at] or None)
        else:  # without a posting time there is no rate: a score of 5 is not "20 points an hour"
            signals = Signals(sightings=sightings[i], brand_spike=spikes[i])
        before.append((at, mention.engagement.score or 0, mention.engagement.comments or 0))
        scored[i] = scorer.rank(mention, match, readings[texts[i]], signals=signals)
        if progress:
            progress(done, "scored")
    return frame.assign(
        brand=[m.brand or "" for m in mentions],
        compound=[s.sentiment.compound for s in scored],
        urgency=[s.urgency for s in scored],
        virality=[s.virality for s in scored],
        priority=[s.priority for s in scored],
        reasons=["; ".join(str(r) for r in s.reasons if r.kind == "rule") for s in scored],
    )


def _times(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame.columns:
        return pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns, UTC]")
    return pd.to_datetime(frame[column], errors="coerce", utc=True, format="mixed")


def _column(frame: pd.DataFrame, column: str, convert: Callable) -> list:
    """The column's values converted, or what ``convert`` makes of a missing value for every row."""
    values = frame[column].tolist() if column in frame.columns else [None] * len(frame)
    return [convert(v) for v in values]


def _mentions(frame: pd.DataFrame, created: pd.Series, fetched: pd.Series, now: datetime) -> list[Mention]:
    """One Mention per row, read column by column (no per-row Series)."""
    text = {c: _column(frame, c, _text) for c in ("id", "text", "title", "author", "source", "kind", "url",
                                                  "place", "subreddit")}
    numbers = [_column(frame, c, lambda v, c=c: _number(v, float if c == "upvote_ratio" else int))
               for c in ENGAGEMENT]
    reach = _column(frame, "reach", lambda v: _number(v, float))
    posted = [t.to_pydatetime() if pd.notna(t) else now for t in created]
    read_at = [t.to_pydatetime() if pd.notna(t) else now for t in fetched]
    mentions = []
    for i in range(len(frame)):
        subreddit = text["subreddit"][i]
        mentions.append(Mention(
            # A subreddit is Reddit's own rule field: a row that names one and no source is Reddit's.
            source=text["source"][i] or ("reddit" if subreddit else "backtest"), source_id=text["id"][i], url=text["url"][i],
            title=text["title"][i], text=text["text"][i], author=text["author"][i] or None,
            created_at=posted[i], fetched_at=read_at[i], kind=text["kind"][i] or "post",
            place=text["place"][i] or (f"r/{subreddit}" if subreddit else ""),
            engagement=Engagement(*(column[i] for column in numbers)), reach=reach[i],
            extra={"subreddit": subreddit} if subreddit else {},
        ))
    return mentions


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

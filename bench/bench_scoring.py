"""Scoring throughput against bare VADER, on real texts, in the same run.

The pipeline's cost per mention (match over 300 brands + sentence-level VADER
+ every shipped rule) is printed as a ratio to ``vaderSentiment``'s
``polarity_scores`` on the very same texts. Tweet-length texts: VADER's
ground-truth tweets and the IBM customer-care requests (target: at most 1.5x
bare VADER). Long texts: real review and editorial sentences concatenated into
one document (target: far cheaper than bare VADER, which is quadratic; above
50,000 characters bare VADER takes minutes, so it is timed up to that size only
and extrapolated beyond, marked as such).

    .venv/bin/python bench/bench_scoring.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import realdata  # noqa: E402
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer  # noqa: E402

from monitor.config import Brand, Config  # noqa: E402
from monitor.match import BrandMatcher  # noqa: E402
from monitor.mention import Mention  # noqa: E402
from monitor.score import Scorer  # noqa: E402
from monitor.sentiment import split_sentences  # noqa: E402

ROUNDS = 3
LONG_SIZES = (10_000, 50_000, 200_000, 1_000_000)
VADER_TIMED_UP_TO = 50_000


def bench_config() -> Config:
    """300 brands: the 25 companies of the customer-care data (by handle) and 275 made-up names."""
    handles = sorted({r["company"] for r in realdata.customer_care_requests()})
    brands = [Brand(name=h, keywords=[f"@{h}", h]) for h in handles]
    brands += [Brand(name=f"Brand{i:03d}", keywords=[f"Brand{i:03d}", f"#brand{i:03d}", f"@brand{i:03d}care"])
               for i in range(300 - len(brands))]
    packs = sorted(str(p) for p in (realdata.ROOT / "rules").glob("*.yaml"))
    return Config(brands=brands, rules=packs, sentiment={"lexicon": {"refund": -1.5, "overcharged": -2.0}})


class Pipeline:
    """What the daemon does per mention, minus the store: match, sentiment, signals, rules, priority."""

    def __init__(self, config: Config):
        self.matcher = BrandMatcher(config.brands)
        self.scorer = Scorer.from_config(config, own_account=self.matcher.is_own_account)

    def __call__(self, text: str):
        mention = Mention(source="bench", source_id="1", url="", title="", text=text)
        match = self.matcher.match(text)
        mention.brand = match.brand if match else None
        return self.scorer.score(mention, match)


def best_of(func, texts, rounds=ROUNDS) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for text in texts:
            func(text)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    if not realdata.available():
        print(f"skipped: no shared data at {realdata.DATA}")
        return 0
    vader = SentimentIntensityAnalyzer()
    pipeline = Pipeline(bench_config())
    tweets = realdata.tweet_texts()
    mean_len = statistics.mean(len(t) for t in tweets)
    print(f"tweet-length texts: {len(tweets)} real texts, mean {mean_len:.0f} chars; best of {ROUNDS} rounds")
    # Interleaved, so a busy machine slows both alike.
    bare = pipe = sentiment = float("inf")
    for _ in range(ROUNDS):
        bare = min(bare, best_of(vader.polarity_scores, tweets, 1))
        pipe = min(pipe, best_of(pipeline, tweets, 1))
        sentiment = min(sentiment, best_of(pipeline.scorer.sentiment.score, tweets, 1))
    ratio = pipe / bare
    print(f"  bare VADER polarity_scores : {len(tweets) / bare:10,.0f} mentions/s")
    print(f"  match+sentiment+rules      : {len(tweets) / pipe:10,.0f} mentions/s")
    print(f"  pipeline cost / VADER cost : {ratio:.2f}x  (target <= 1.5x: {'met' if ratio <= 1.5 else 'NOT met'})")
    print(f"    of which sentence-level sentiment alone: {sentiment / bare:.2f}x"
          f" ({sum(len(split_sentences(t)) > 1 for t in tweets) / len(tweets):.0%} of these texts have 2+ sentences,"
          " each scored by its own VADER call)")

    print("long texts (real sentences concatenated into one document):")
    print(f"  {'chars':>9}  {'pipeline s':>10}  {'bare VADER s':>12}  {'VADER / pipeline':>16}")
    per_char = None
    for size in LONG_SIZES:
        text = realdata.long_text(size)
        pipe = best_of(pipeline, [text], 1 if size > 200_000 else 2)
        if size <= VADER_TIMED_UP_TO:
            bare = best_of(vader.polarity_scores, [text], 1)
            per_char = bare / size ** 2
            note = ""
        else:
            bare = per_char * size ** 2  # VADER's cost grows with the square of the length
            note = " (extrapolated)"
        print(f"  {size:>9,}  {pipe:>10.3f}  {bare:>12.2f}  {bare / pipe:>15,.0f}x{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

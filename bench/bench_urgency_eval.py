"""How well does urgency pick out complaints? Real human-written texts, against plain VADER.

Labelled set (no sentence here was written by us):
- complaint (1): the customer's opening tweet of each IBM customer-care
  conversation (1,025; every one a support request or complaint to a brand's
  support handle, 25 brands).
- rest (0): VADER's ground-truth tweets (4,200 everyday tweets rated by people;
  a few may be complaints too, which only makes the task harder).
Set B keeps only the rest tweets that people rated negative (mean rating < 0):
complaints against mere negativity, the distinction a responder needs.

Rules were tuned looking only at the tuning half (IBM dev.json, even-numbered
VADER tweets); the held-out half (IBM test.json, odd-numbered tweets) was not
looked at while tuning, and is the number to quote.

Both texts go through the shipped rule packs and the shipped config's lexicon,
with no brand match (so no rule can key on the brand handle) and no engagement
numbers. The baseline ranks by plain VADER compound, negated (most negative
first). Printed: ROC AUC (Mann-Whitney, ties count half) and precision of the
top 20 (ties at the cut-off counted at their expected share).

    .venv/bin/python bench/bench_urgency_eval.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import realdata  # noqa: E402
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer  # noqa: E402

from monitor.config import Brand, Config  # noqa: E402
from monitor.mention import Mention  # noqa: E402
from monitor.score import Scorer  # noqa: E402

TOP = 20


def roc_auc(labels: pd.Series, scores: pd.Series) -> float:
    """Probability that a random complaint outranks a random other text (Mann-Whitney U / n1 n0)."""
    ranks = scores.rank(method="average")
    positives = labels == 1
    n1, n0 = int(positives.sum()), int((~positives).sum())
    return float((ranks[positives].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def precision_at(labels: pd.Series, scores: pd.Series, k: int = TOP) -> float:
    """Share of complaints among the k highest scores; a tie at the cut-off counts at its mean."""
    order = scores.sort_values(ascending=False)
    cutoff = order.iloc[k - 1]
    above = scores > cutoff
    tied = scores == cutoff
    expected = labels[above].sum() + (k - above.sum()) * labels[tied].mean()
    return float(expected / k)


def labelled_set() -> pd.DataFrame:
    complaints = realdata.customer_care_requests()
    rest = realdata.vader_groundtruth("tweets")
    return pd.DataFrame({
        "text": [r["text"] for r in complaints] + [t for t, _ in rest],
        "label": [1] * len(complaints) + [0] * len(rest),
        "human_rating": [np.nan] * len(complaints) + [r for _, r in rest],
        "held_out": [r["file"] == "test.json" for r in complaints] + [i % 2 == 1 for i in range(len(rest))],
    })


def shipped_scorer() -> Scorer:
    shipped = yaml.safe_load((realdata.ROOT / "config.yaml").read_text(encoding="utf-8"))
    packs = [str(realdata.ROOT / p) for p in shipped["rules"]]
    config = Config(brands=[Brand(name="any", keywords=["any"])], rules=packs,
                    sentiment=shipped.get("sentiment", {}))
    return Scorer.from_config(config)


def main() -> int:
    if not realdata.available():
        print(f"skipped: no shared data at {realdata.DATA}")
        return 0
    data = labelled_set()
    scorer = shipped_scorer()
    vader = SentimentIntensityAnalyzer()
    urgency, fired = [], []
    for text in data["text"]:
        scores = scorer.score(Mention(source="eval", source_id="-", url="", title="", text=text))
        urgency.append(scores.urgency)
        fired.append([r.name for r in scores.reasons if r.kind == "rule"])
    data["urgency"] = urgency
    data["fired"] = fired
    data["neg_compound"] = [-vader.polarity_scores(t)["compound"] for t in data["text"]]
    # The ranking responders see: urgency first, VADER only to order equal urgencies.
    data["urgency_then_vader"] = data["urgency"] + data["neg_compound"] / 10

    negative_only = (data.label == 1) | (data.human_rating < 0)
    sets = {"A: complaints vs everyday tweets, held out": data[data.held_out],
            "B: complaints vs tweets people rated negative, held out": data[data.held_out & negative_only],
            "A, tuning half": data[~data.held_out],
            "B, tuning half": data[~data.held_out & negative_only]}
    for name, subset in sets.items():
        print(f"{name} ({int(subset.label.sum())} complaints, {int((subset.label == 0).sum())} others)")
        print(f"  {'ranking':34s} {'ROC AUC':>8} {'P@' + str(TOP):>6}")
        for column, label in (("neg_compound", "plain VADER (negated compound)"), ("urgency", "urgency"),
                              ("urgency_then_vader", "urgency, ties ordered by VADER")):
            print(f"  {label:34s} {roc_auc(subset.label, subset[column]):8.3f}"
                  f" {precision_at(subset.label, subset[column]):6.2f}")
    rules = data[~data.held_out].explode("fired").dropna(subset=["fired"]).groupby("fired")["label"].agg(["count", "mean"])
    print("rules fired (tuning half): count, share that are complaints")
    for rule, row in rules.sort_values("count", ascending=False).iterrows():
        print(f"  {rule:28s} {int(row['count']):5d}  {row['mean']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Does virality risk pick out the posts that will take off? Simulated growth, read by the real source.

No real Reddit history is reachable here, so the growth is simulated, with
every parameter fixed (and seeded) before any result was looked at:

- 2,000 posts in 150 subreddits whose subscribers are log-normal (median
  300k, sigma 1.5, clipped to 2k..40M);
- each post's eventual score is log-normal (median 150, sigma 1.5: heavy
  tailed), only loosely tied to its subreddit's size (+0.25 standard
  deviations of log score per standard deviation of log subscribers);
- it grows on a logistic curve from 0 at posting: half of the eventual score
  at a random midpoint (log-normal, median 2.5 h, sigma 0.6) with a random
  width (log-normal, median 0.8 h, sigma 0.5), so some posts are seen before
  they take off and some after they have stopped;
- comments follow the score at a per-post ratio (log-normal, median 0.25,
  sigma 0.6); every reading is fuzzed like Reddit's vote counts (score +-2%,
  comments +-5%, normal);
- each post is first seen when it is 0.25-3 h old (uniform, like the issue's
  r/all measurement: posts at most 3 h old), and read again 5 minutes later
  (the growth schedule's first re-read).

The posts are served by the local Reddit-compatible server
(tests/servers/reddit.py); the real Reddit source (praw) reads them, and the
real pipeline scores and stores them (first sighting from the subreddit
listings, the second reading through /api/info), exactly as the daemon does.
The label: the post ends (24 h) in the top quartile of score.

The growth weights in monitor/virality.py were fitted (``--fit``: logistic
regression on the signals the pipeline stored) on the tuning half of the posts
only; the held-out half is reported. Printed per ranking: ROC AUC and
precision of the top 20 (ties at the cut-off counted at their expected share),
with the step rules this replaced (through the rule engine, on the same
readings) for comparison, and paired bootstrap intervals for the differences.

    .venv/bin/python bench/bench_virality_eval.py [--fit]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from monitor.config import parse_config  # noqa: E402
from monitor.pipeline import Pipeline  # noqa: E402
from monitor.rules import RuleBook, default_facts, load_pack  # noqa: E402
from monitor.store import Store  # noqa: E402
from sources.reddit import RedditSettings, RedditSource, reddit_client  # noqa: E402
from tests.servers.reddit import ManualClock, RedditServer  # noqa: E402

SEED = 13
POSTS = 2_000
SUBREDDITS = 150
REREAD_MINUTES = 5
TOP_K = 20


def simulate(n: int = POSTS, seed: int = SEED) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(subreddits, posts): the growth parameters of every post, drawn once from the seed."""
    rng = np.random.default_rng(seed)
    subscribers = np.clip(np.exp(rng.normal(math.log(300_000), 1.5, SUBREDDITS)), 2_000, 40_000_000).round()
    subs = pd.DataFrame({"name": [f"sim{i:03d}" for i in range(SUBREDDITS)], "subscribers": subscribers})
    log_subs = np.log(subscribers)
    sub = rng.integers(0, SUBREDDITS, n)
    z_reach = (log_subs[sub] - log_subs.mean()) / log_subs.std()
    posts = pd.DataFrame({
        "id": [f"v{i}" for i in range(n)],
        "subreddit": subs["name"].to_numpy()[sub],
        "final": np.exp(math.log(150) + 1.5 * rng.standard_normal(n) + 0.25 * z_reach),
        "midpoint": np.exp(rng.normal(math.log(2.5), 0.6, n)),
        "width": np.exp(rng.normal(math.log(0.8), 0.5, n)),
        "comment_ratio": np.exp(rng.normal(math.log(0.25), 0.6, n)),
        "seen_age": rng.uniform(0.25, 3.0, n),
        "tuning": rng.permutation(n) < n // 2,  # the half the weights were fitted on
    })
    return subs, posts


def true_score(posts: pd.DataFrame, hours: np.ndarray | float) -> np.ndarray:
    """Logistic growth from 0 at posting to ``final``."""
    def sigmoid(x):
        return 1 / (1 + np.exp(-x))
    start = sigmoid(-posts["midpoint"] / posts["width"])
    now = sigmoid((hours - posts["midpoint"]) / posts["width"])
    return (posts["final"] * (now - start) / (1 - start)).to_numpy()


def observed(posts: pd.DataFrame, hours, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(score, comments) as Reddit would show them at ``hours`` after posting: fuzzed, whole numbers."""
    score = true_score(posts, hours)
    shown = np.maximum(1, np.round(1 + score * (1 + 0.02 * rng.standard_normal(len(posts)))))
    comments = np.maximum(0, np.round(score * posts["comment_ratio"].to_numpy()
                                      * (1 + 0.05 * rng.standard_normal(len(posts)))))
    return shown.astype(int), comments.astype(int)


def run_pipeline(subs: pd.DataFrame, posts: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Serve the posts, let the real source and pipeline read them twice; what the store held after each."""
    rng = np.random.default_rng(SEED + 1)
    with RedditServer() as server, tempfile.TemporaryDirectory() as folder:
        for name, subscribers in subs.itertuples(index=False):
            server.add_subreddit(name, subscribers=int(subscribers))
        clock = ManualClock()
        score, comments = observed(posts, posts["seen_age"], rng)
        for i, post in enumerate(posts.itertuples()):
            server.add_post(subreddit=post.subreddit, id=post.id, title=f"Acme {post.id}",
                            selftext="Thoughts on my new Acme kettle?", created_utc=clock.now - post.seen_age * 3600,
                            score=int(score[i]), num_comments=int(comments[i]))
        config = parse_config({"brands": [{"name": "Acme", "keywords": ["acme"]}], "store": "virality.db",
                               "rules": [str(p) for p in sorted((ROOT / "rules").glob("*.yaml"))]},
                              base_dir=Path(folder))
        store = Store(config.store_path)
        pipeline = Pipeline(config=config, store=store)
        settings = RedditSettings(client_id="test-id", client_secret="test-secret", user_agent="bench",
                                  subreddits=list(subs["name"]), search=False, comments=False,
                                  oauth_url=server.url, reddit_url=server.url, backfill_hours=3.5,
                                  track_max_posts=POSTS * 2)
        source = RedditSource(settings=settings, reddit=reddit_client(settings), clock=clock)
        readings = []
        for reading in (1, 2):
            poll = source.poll(store.source_state("reddit"))
            assert not poll.failed, poll.failed
            pipeline.process("reddit", poll)
            readings.append(pd.DataFrame([dict(r) for r in store.query(
                "SELECT source_id, score, comments, reach, virality, signals FROM mentions")]))
            clock.advance(REREAD_MINUTES * 60)
            score, comments = observed(posts, posts["seen_age"] + REREAD_MINUTES / 60, rng)
            for i, post in enumerate(posts.itertuples()):
                server.update_post(post.id, score=int(score[i]), num_comments=int(comments[i]))
        store.close()
    first, second = ([frame.assign(id=frame["source_id"].str.removeprefix("t3_")).set_index("id").loc[posts["id"]]
                      for frame in readings])
    return first, second


# The step rules this replaced (rules/virality.yaml before the graded base), for comparison; they read
# score_velocity as the rate since the last reading, which is recent_velocity now.
STEP_RULES = """
rules:
  - {name: fast-growth, when: recent_velocity >= 100, virality: 40}
  - {name: steady-growth, when: recent_velocity >= 20 and recent_velocity < 100, virality: 20}
  - {name: busy-thread, when: comment_velocity >= 20, virality: 20}
  - {name: accelerating, when: acceleration >= 50, virality: 15}
  - {name: large-audience, when: reach >= 1000000, virality: 20}
  - {name: medium-audience, when: reach >= 100000 and reach < 1000000, virality: 10}
"""


def step_rules(readings: pd.DataFrame) -> np.ndarray:
    """The old step rules' virality for each reading, through the real rule engine."""
    with tempfile.TemporaryDirectory() as folder:
        pack = Path(folder) / "steps.yaml"
        pack.write_text(STEP_RULES)
        book = RuleBook(load_pack(pack))
    facts = default_facts()
    values = []
    for reach, signals in zip(readings["reach"].fillna(0), readings["signals"]):
        facts.update({k: float(v) for k, v in json.loads(signals).items() if k in facts}, reach=float(reach))
        values.append(book.evaluate(facts).virality)
    return np.array(values)


def precision_at(labels: np.ndarray, scores: np.ndarray, k: int = TOP_K) -> float:
    """Precision of the top k; the items tied at the cut-off count at their share of the places left."""
    order = np.sort(scores)[::-1]
    cut = order[k - 1]
    above = scores > cut
    tied = scores == cut
    left = k - above.sum()
    return float((labels[above].sum() + left * labels[tied].mean()) / k)


def auc_difference(labels: np.ndarray, a: np.ndarray, b: np.ndarray, *, rounds: int = 1000) -> tuple[float, float, float]:
    """AUC(a) - AUC(b) on the same posts, and its 95% interval from a paired bootstrap (seeded): with a
    thousand posts, differences of a hundredth are within the noise."""
    rng = np.random.default_rng(SEED + 2)
    differences = []
    for _ in range(rounds):
        pick = rng.integers(0, len(labels), len(labels))
        if labels[pick].min() == labels[pick].max():
            continue
        differences.append(roc_auc_score(labels[pick], a[pick]) - roc_auc_score(labels[pick], b[pick]))
    low, high = np.percentile(differences, [2.5, 97.5])
    return roc_auc_score(labels, a) - roc_auc_score(labels, b), float(low), float(high)


def features(readings: pd.DataFrame) -> np.ndarray:
    """The growth signals on the scales monitor/virality.py weighs them on."""
    signals = pd.DataFrame([json.loads(s) for s in readings["signals"]])
    decades = np.log10
    return np.column_stack([
        decades(1 + signals["score_velocity"].clip(lower=0)),
        decades(1 + signals["recent_velocity"].clip(lower=0)),
        decades(1 + signals["comment_velocity"].clip(lower=0)),
        decades(1 + readings["reach"].fillna(0).to_numpy() / 1000),
        np.sign(signals["acceleration"]) * decades(1 + signals["acceleration"].abs()),
    ])


def fit(first: pd.DataFrame, second: pd.DataFrame, labels: np.ndarray, tuning: np.ndarray) -> None:
    """Logistic regression on the tuning half (first sightings and second readings together, so one set of
    weights serves both); the coefficients, scaled to points, are what monitor/virality.py ships."""
    x = np.vstack([features(first)[tuning], features(second)[tuning]])
    y = np.concatenate([labels[tuning], labels[tuning]])
    model = LogisticRegression(C=1.0, max_iter=1000).fit(x, y)
    names = ["score_velocity", "recent_velocity", "comment_velocity", "reach", "acceleration"]
    print("fitted on the tuning half only (coefficients per decade; ranking depends only on their ratios):")
    for name, coefficient in zip(names, model.coef_[0]):
        print(f"  {name:<17} {coefficient:+.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit", action="store_true", help="fit the growth weights on the tuning half and print them")
    args = parser.parse_args()
    subs, posts = simulate()
    peak = true_score(posts, 24.0)
    labels = (peak >= np.quantile(peak, 0.75)).astype(int)
    started = time.perf_counter()
    first, second = run_pipeline(subs, posts)
    print(f"{POSTS} simulated posts read by the real Reddit source and pipeline twice in"
          f" {time.perf_counter() - started:.0f} s (seed {SEED})")
    tuning = posts["tuning"].to_numpy()
    if args.fit:
        fit(first, second, labels, tuning)
    age = np.maximum(posts["seen_age"].to_numpy(), 0.25)
    first_label, second_label = "virality at first sighting", f"virality after the second reading (+{REREAD_MINUTES} min)"
    old_first, old_second = "old step rules at first sighting", "old step rules after the second reading"
    baseline = "score per hour at first sighting (baseline)"
    rankings = {
        first_label: first["virality"].to_numpy(),
        second_label: second["virality"].to_numpy(),
        old_first: step_rules(first),
        old_second: step_rules(second),
        "score alone at first sighting": first["score"].to_numpy(),
        baseline: first["score"].to_numpy() / age,
        "score per hour since the last reading, second reading": np.array(
            [json.loads(s)["recent_velocity"] for s in second["signals"]]),
    }
    held_out = ~tuning
    for name, part in (("held-out half (not fitted on)", held_out), ("tuning half", tuning)):
        print(f"\n{name}: {part.sum()} posts, {labels[part].sum()} in the top quartile of score at 24 h")
        print(f"  {'ranking':<58} {'ROC AUC':>8} {'top-20 precision':>17}")
        for label, values in rankings.items():
            print(f"  {label:<58} {roc_auc_score(labels[part], values[part]):>8.3f}"
                  f" {precision_at(labels[part], values[part]):>17.2f}")

    print("\nheld-out half, differences of ROC AUC (95% paired bootstrap interval):")
    for a, b in ((first_label, baseline), (second_label, baseline), (first_label, old_first),
                 (second_label, old_second)):
        difference, low, high = auc_difference(labels[held_out], rankings[a][held_out], rankings[b][held_out])
        print(f"  {a} - {b}: {difference:+.3f} ({low:+.3f} to {high:+.3f})")


if __name__ == "__main__":
    main()

"""Train the complaint model (``complaint-monitor train``) from human-labelled text, reproducibly.

The shipped model is exactly what ``complaint-monitor train`` writes from
``../shared/data`` with the default seed. Each source of labelled text counts
the same in training (a source's examples share weight 1/number of sources),
so 43,000 Reddit comments do not drown 3,000 review sentences. Label 1 means
"someone unhappy who should get an answer":

- GoEmotions (Reddit comments; train and dev, test is held out for the bench):
  any negative emotion of its sentiment grouping.
- XED (movie subtitles): anger, disgust, fear or sadness; its neutral lines are 0.
- VADER's ground truth: a mean human rating below 0 (tweets: even-numbered
  lines only, the odd ones are held out for the bench; Amazon, movie and NYT
  snippets: all).
- UCI labelled sentences (Amazon, Yelp, IMDb): the negative ones.
- Local labels (``complaint-monitor label``), with ``--local``.

- Customer care (IBM's customer-to-brand Twitter conversations; dev.json only,
  test.json is held out for the bench): every customer message is 1. The
  emotion and review data hold little support-desk language ("my order never
  arrived", "still no refund"), which this source teaches; but it holds only
  complaints, so it counts a quarter of a source (``SOURCE_WEIGHT``): at full
  weight it also made questions and plain tweets read as complaints (measured:
  twice the false alarms on tweets people rated positive).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from . import complaint
from .sentiment import SentimentScorer

SEED = 20261128
WORD_FEATURES = 100_000
CHAR_FEATURES = 150_000
C = 2.0
DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"

# A source's share of the training weight, relative to the others' 1 (see the module docstring).
SOURCE_WEIGHT = {"customer_care": 0.25}
# GoEmotions' negative group and XED's Plutchik ids for anger, disgust, fear and sadness.
XED_NEGATIVE = {1, 3, 4, 6}


class TrainingError(ValueError):
    """Training cannot run: the message says what is missing."""


def _lines(path: Path) -> list[str]:
    # Split on \n only: the IMDb file holds NEL characters that str.splitlines would cut at.
    return path.read_text(encoding="utf-8", errors="replace").replace("\r\n", "\n").split("\n")


def goemotions(data: Path, splits=("train", "dev")) -> pd.DataFrame:
    folder = data / "goemotions"
    names = (folder / "labels.txt").read_text(encoding="utf-8").split()
    negative = {names.index(n) for n in json.loads((folder / "sentiment_dict.json").read_text())["negative"]}
    rows = []
    for split in splits:
        for line in _lines(folder / f"{split}.tsv"):
            parts = line.split("\t")
            if len(parts) >= 2 and parts[1]:
                ids = {int(x) for x in parts[1].split(",")}
                rows.append((parts[0], int(bool(ids & negative))))
    return _frame(rows, "goemotions")


def xed(data: Path) -> pd.DataFrame:
    rows = []
    for line in _lines(data / "xed_en" / "en-annotated.tsv"):
        text, _, labels = line.rpartition("\t")
        ids = {int(x) for x in labels.split(",") if x.strip().isdigit()}
        if text and ids:
            rows.append((text, int(bool(ids & XED_NEGATIVE))))
    for line in _lines(data / "xed_en" / "neu_en.txt"):
        _, _, text = line.partition("\t")
        if text:
            rows.append((text, 0))
    return _frame(rows, "xed")


def vader_groundtruth(data: Path, name: str, *, keep: Callable[[int], bool] = lambda i: True) -> pd.DataFrame:
    rows = []
    for i, line in enumerate(line for line in _lines(data / "vader_groundtruth" / f"{name}_GroundTruth.txt")
                             if line.count("\t") >= 2):
        parts = line.split("\t")
        if keep(i):
            rows.append(("\t".join(parts[2:]), int(float(parts[1]) < 0)))
    return _frame(rows, f"vader_{name}")


def uci(data: Path) -> pd.DataFrame:
    rows = []
    for path in sorted((data / "uci_sentiment_labelled_sentences").glob("*_labelled.txt")):
        for line in _lines(path):
            text, _, label = line.rpartition("\t")
            if text and label.strip() in ("0", "1"):
                rows.append((text, 1 - int(label)))
    return _frame(rows, "uci")


def customer_care(data: Path) -> pd.DataFrame:
    """Every customer message of the dev conversations (each one a support request or complaint)."""
    conversations = json.loads((data / "ibm_twitter_customer_care" / "dev.json").read_text(encoding="utf-8"))
    return _frame([(m["message"], 1) for c in conversations for m in c["dialogContent"] if "agent" not in m],
                  "customer_care")


def _frame(rows: list[tuple[str, int]], source: str) -> pd.DataFrame:
    return pd.DataFrame({"text": [t for t, _ in rows], "label": [y for _, y in rows], "source": source})


def shared_examples(data: Path = DEFAULT_DATA) -> pd.DataFrame:
    """Every training example from the shared data, in a fixed order."""
    if not data.is_dir():
        raise TrainingError(f"no training data at {data} (give --data DIR: the shared data folder)")
    parts = [goemotions(data), xed(data),
             vader_groundtruth(data, "tweets", keep=lambda i: i % 2 == 0),
             *(vader_groundtruth(data, name) for name in
               ("amazonReviewSnippets", "movieReviewSnippets", "nytEditorialSnippets")),
             uci(data), customer_care(data)]
    frame = pd.concat(parts, ignore_index=True)
    return frame[frame["text"].str.strip() != ""].reset_index(drop=True)


def source_weights(sources: pd.Series) -> np.ndarray:
    """Each source's examples share the same total weight (times its ``SOURCE_WEIGHT``)."""
    counts = sources.map(sources.value_counts())
    share = sources.map(lambda s: SOURCE_WEIGHT.get(s, 1.0))
    return (share * len(sources) / (sources.nunique() * counts)).to_numpy(dtype=np.float64)


@dataclass
class Fitted:
    words: object  # TfidfVectorizer
    chars: object  # TfidfVectorizer
    classifier: object  # LogisticRegression

    def predict(self, texts: list[str], dense: np.ndarray) -> np.ndarray:
        """scikit-learn's own probabilities: the oracle the run-time model is tested against."""
        return self.classifier.predict_proba(_matrix(self, texts, dense))[:, 1]


def _matrix(fitted: Fitted, texts: list[str], dense: np.ndarray):
    from scipy.sparse import csr_matrix, hstack

    normalised = [complaint.normalise(t) for t in texts]
    return hstack([fitted.words.transform(normalised), fitted.chars.transform(normalised),
                   csr_matrix(dense)]).tocsr()


def dense_features(texts: list[str], scorer: SentimentScorer | None = None) -> np.ndarray:
    """The VADER values the pipeline computes anyway, read the same way at training and at run time."""
    scorer = scorer or SentimentScorer()
    return np.array([complaint.sentiment_features(scorer.score(t)) for t in texts], dtype=np.float64)


def fit(frame: pd.DataFrame, *, seed: int = SEED, dense: np.ndarray | None = None,
        word_features: int = WORD_FEATURES, char_features: int = CHAR_FEATURES) -> Fitted:
    from scipy.sparse import csr_matrix, hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    texts = frame["text"].tolist()
    dense = dense_features(texts) if dense is None else dense
    normalised = [complaint.normalise(t) for t in texts]
    # lowercase=False: normalise already lower-cases, exactly as the run-time model does.
    words = TfidfVectorizer(lowercase=False, ngram_range=(1, 2), min_df=2, sublinear_tf=True,
                            max_features=word_features, dtype=np.float64)
    chars = TfidfVectorizer(lowercase=False, analyzer="char_wb", ngram_range=(2, 5), min_df=3, sublinear_tf=True,
                            max_features=char_features, dtype=np.float64)
    matrix = hstack([words.fit_transform(normalised), chars.fit_transform(normalised), csr_matrix(dense)]).tocsr()
    classifier = LogisticRegression(C=C, solver="liblinear", max_iter=5000, random_state=seed)
    classifier.fit(matrix, frame["label"].to_numpy(), sample_weight=source_weights(frame["source"]))
    return Fitted(words, chars, classifier)


def export(fitted: Fitted, path: str | Path, *, meta: dict) -> None:
    coef = fitted.classifier.coef_[0]
    n_words = len(fitted.words.vocabulary_)
    n_chars = len(fitted.chars.vocabulary_)

    def block(vectorizer, weights):
        terms = vectorizer.get_feature_names_out().tolist()
        return terms, vectorizer.idf_, weights

    complaint.save(path, words=block(fitted.words, coef[:n_words]),
                   chars=block(fitted.chars, coef[n_words:n_words + n_chars]),
                   dense_coef=coef[n_words + n_chars:], intercept=float(fitted.classifier.intercept_[0]), meta=meta)


def cross_validate(frame: pd.DataFrame, *, folds: int, seed: int = SEED, dense: np.ndarray | None = None,
                   log: Callable[[str], None] = print) -> dict[str, float]:
    """ROC AUC per source on held-out folds (stratified by source and label)."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    dense = dense_features(frame["text"].tolist()) if dense is None else dense
    predicted = np.zeros(len(frame))
    strata = frame["source"] + ":" + frame["label"].astype(str)
    for k, (train_idx, test_idx) in enumerate(StratifiedKFold(folds, shuffle=True, random_state=seed)
                                                 .split(frame, strata), start=1):
        fitted = fit(frame.iloc[train_idx], seed=seed, dense=dense[train_idx])
        predicted[test_idx] = fitted.predict(frame["text"].iloc[test_idx].tolist(), dense[test_idx])
        log(f"fold {k}/{folds} done")
    aucs = {}
    for source, group in frame.groupby("source", sort=True):
        labels = group["label"].to_numpy()
        if 0 < labels.sum() < len(labels):
            aucs[source] = float(roc_auc_score(labels, predicted[group.index.to_numpy()]))
    return aucs


def train(*, out: str | Path, data: Path = DEFAULT_DATA, local: pd.DataFrame | None = None, folds: int = 3,
          seed: int = SEED, log: Callable[[str], None] = print) -> Fitted:
    """Fit on the shared data (and local labels), print cross-validated AUC per source, write the model."""
    started = time.monotonic()
    frame = shared_examples(data)
    if local is not None and len(local):
        frame = pd.concat([frame, local.assign(source="local")[["text", "label", "source"]]], ignore_index=True)
    counts = frame.groupby("source")["label"].agg(["count", "mean"])
    for source, row in counts.iterrows():
        log(f"{source:34s} {int(row['count']):6d} texts, {row['mean']:.0%} labelled 1")
    dense = dense_features(frame["text"].tolist())
    if folds >= 2:
        for source, auc in cross_validate(frame, folds=folds, seed=seed, dense=dense, log=log).items():
            log(f"cross-validated ROC AUC ({folds} folds) {source:24s} {auc:.3f}")
    fitted = fit(frame, seed=seed, dense=dense)
    export(fitted, out, meta={
        "version": f"{complaint.FORMAT_VERSION}.{seed}.{len(frame)}", "seed": seed, "examples": int(len(frame)),
        "sources": {s: int(n) for s, n in counts["count"].items()},
        "trained_with": "scikit-learn LogisticRegression(liblinear) over TfidfVectorizer word 1-2 + char_wb 2-5",
    })
    log(f"wrote {out} ({Path(out).stat().st_size / 1e6:.1f} MB) in {time.monotonic() - started:.0f} s")
    return fitted


def local_labels(store) -> pd.DataFrame:
    """The labels people gave (``complaint-monitor label``), as the model reads them: title and text."""
    rows = store.labelled()
    return pd.DataFrame({"text": [f"{r.title}\n{r.text}" if r.title else r.text for r in rows],
                         "label": [int(r.label) for r in rows], "mention_id": [r.id for r in rows]})


def _auc(labels, scores) -> float | None:
    from sklearn.metrics import roc_auc_score
    labels = np.asarray(labels)
    return float(roc_auc_score(labels, scores)) if 0 < labels.sum() < len(labels) else None


def _fmt_auc(value: float | None) -> str:
    return "n/a (one kind only)" if value is None else f"{value:.3f}"


def train_local(config, *, out: str | Path, data: Path = DEFAULT_DATA, folds: int = 0, seed: int = SEED,
                held_out: float = 0.3, log: Callable[[str], None] = print) -> dict:
    """Refit with the team's labels added: AUC of the model in use and of the refit on held-out labels (a
    refit on the other labels), then the model refit on all of them is written where the daemon reads it."""
    from sklearn.model_selection import train_test_split

    from .complaint import ModelFile
    from .store import Store

    store = Store(config.store_path)
    try:
        labels = local_labels(store)
    finally:
        store.close()
    if len(labels) < 10 or labels["label"].nunique() < 2:
        raise TrainingError(f"{len(labels)} labels in {config.store_path}; --local needs at least 10, of both kinds"
                            " (complaint-monitor label MENTION_ID complaint|not)")
    fit_part, test_part = train_test_split(labels, test_size=held_out, random_state=seed,
                                           stratify=labels["label"] if labels["label"].value_counts().min() >= 2
                                           else None)
    in_use = ModelFile(config.complaint_model_path).model
    scorer = SentimentScorer(lexicon=config.sentiment.lexicon)
    test_texts = test_part["text"].tolist()
    before = _auc(test_part["label"], [in_use.probability(t, scorer.score(t)) for t in test_texts])
    shared = shared_examples(data)

    def with_local(part: pd.DataFrame) -> pd.DataFrame:
        return pd.concat([shared, part.assign(source="local")[["text", "label", "source"]]], ignore_index=True)

    refit = fit(with_local(fit_part), seed=seed)
    after = _auc(test_part["label"], refit.predict(test_texts, dense_features(test_texts, scorer)))
    log(f"held-out local labels: {len(test_part)} ({int(test_part['label'].sum())} complaints);"
        f" ROC AUC before {_fmt_auc(before)}, after {_fmt_auc(after)}")
    train(out=out, data=data, local=labels, folds=folds, seed=seed, log=log)
    return {"before": before, "after": after, "held_out": len(test_part), "labels": len(labels)}

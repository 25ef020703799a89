"""Is this someone unhappy with the brand who should get an answer? The complaint model, at run time.

A logistic regression over word (1-2) and character (2-5, inside word
boundaries) n-gram TF-IDF features plus the pipeline's own VADER results,
trained by ``complaint-monitor train`` (``monitor/train.py``, scikit-learn)
from the human-labelled data in ``../shared/data``. The model file holds only
arrays and the vocabulary (``numpy.load`` with ``allow_pickle=False``, so
loading it cannot run code), and is read once.

Scoring does not call scikit-learn: its vectorizers cost more than VADER per
tweet, mostly in per-call overhead. ``ComplaintModel.features`` computes the
same n-grams, TF-IDF weights and L2 norms in plain Python from the stored
vocabulary; ``tests/test_complaint.py`` holds it equal to scikit-learn's
``TfidfVectorizer`` + ``LogisticRegression.predict_proba`` on real and
generated texts.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .sentiment import Sentiment

FORMAT = "complaint-monitor/complaint-model"
FORMAT_VERSION = 1
# The pipeline's VADER results the model reads beside the n-grams (the same values rules read).
SENTIMENT_FEATURES = ("compound", "negative", "positive", "min_sentence", "negative_share")
# The model reads this much of a text: complaints are stated early, it was trained on texts far shorter, and a
# megabyte post must cost no more than a long tweet (the VADER features still cover the whole text).
MAX_CHARS = 4000

_URL = re.compile(r"https?://\S+|www\.\S+")
_HANDLE = re.compile(r"@\w+")
_WORD = re.compile(r"(?u)\b\w\w+\b")


def normalise(text: str) -> str:
    """Links and @handles carry no complaint, but differ between the training data (reviews, Reddit,
    subtitles, support tweets that all open with a brand's @handle) and what the monitor reads: links become
    one placeholder, and handles are dropped, or every reply to anyone would read as a support request."""
    return _HANDLE.sub(" ", _URL.sub("http", text)).lower()


def word_ngrams(text: str) -> list[str]:
    """scikit-learn's word analyzer for ngram_range (1, 2) on an already lower-cased text."""
    tokens = _WORD.findall(text)
    return tokens + [f"{a} {b}" for a, b in zip(tokens, tokens[1:])]


def char_ngrams(text: str, low: int = 2, high: int = 5) -> list[str]:
    """scikit-learn's ``char_wb`` analyzer: n-grams inside each whitespace-separated word padded with spaces."""
    grams: list[str] = []
    append = grams.append
    extend = grams.extend
    for word in text.split():
        word = f" {word} "
        size = len(word)
        for n in range(low, high + 1):
            if size <= n:  # a word no longer than n counts once, as itself, and ends its n-grams
                append(word)
                break
            extend([word[i : i + n] for i in range(size - n + 1)])
    return grams


def sentiment_features(sentiment: Sentiment) -> list[float]:
    return [float(getattr(sentiment, name)) for name in SENTIMENT_FEATURES]


class _Block:
    """One TF-IDF vectorizer's part of the model. Each known term maps to (idf x its classifier weight, idf
    squared): with sublinear tf, a term seen c times adds (1 + ln c) times the first to the dot product and
    (1 + ln c)^2 times the second to the squared norm, so one dict look-up per distinct term does it all."""

    __slots__ = ("terms",)

    def __init__(self, terms: list[str], idf: np.ndarray, coef: np.ndarray):
        weighted = (idf * coef).tolist()
        squared = (idf * idf).tolist()
        self.terms = dict(zip(terms, zip(weighted, squared)))

    def decision(self, grams: list[str]) -> float:
        """The block's contribution to the decision function: coef . l2_normalise(sublinear_tf * idf)."""
        dot = norm = 0.0
        get = self.terms.get
        for term, count in Counter(grams).items():
            known = get(term)
            if known is None:
                continue
            if count == 1:
                dot += known[0]
                norm += known[1]
            else:
                tf = 1.0 + math.log(count)
                dot += tf * known[0]
                norm += tf * tf * known[1]
        return dot / math.sqrt(norm) if norm else 0.0


class ComplaintModel:
    """A trained complaint model; ``probability`` gives 0..1 for one text and its VADER reading."""

    def __init__(self, *, words: _Block, chars: _Block, dense: np.ndarray, intercept: float, meta: dict):
        self._words = words
        self._chars = chars
        self._dense = [float(c) for c in dense]
        self._intercept = intercept
        self.meta = meta

    @property
    def version(self) -> str:
        return str(self.meta.get("version", "?"))

    @classmethod
    def load(cls, path: str | Path) -> "ComplaintModel":
        with np.load(path, allow_pickle=False) as arrays:
            meta = json.loads(arrays["meta"].tobytes().decode("utf-8"))
            if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
                raise ValueError(f"{path}: not a complaint model of format {FORMAT} v{FORMAT_VERSION}")
            blocks = {}
            for name in ("words", "chars"):
                terms = arrays[f"{name}_terms"].tobytes().decode("utf-8").split("\n")
                idf = arrays[f"{name}_idf"].astype(np.float64)
                coef = arrays[f"{name}_coef"].astype(np.float64)
                if not (len(terms) == len(idf) == len(coef)):
                    raise ValueError(f"{path}: {name} vocabulary and weights differ in length")
                blocks[name] = _Block(terms, idf, coef)
            dense = arrays["dense_coef"].astype(np.float64)
            intercept = float(arrays["intercept"][0])
        return cls(words=blocks["words"], chars=blocks["chars"], dense=dense, intercept=intercept, meta=meta)

    def decision(self, text: str, sentiment: Sentiment) -> float:
        text = normalise(text[:MAX_CHARS])
        value = self._intercept + self._words.decision(word_ngrams(text)) + self._chars.decision(char_ngrams(text))
        for coef, feature in zip(self._dense, sentiment_features(sentiment)):
            value += coef * feature
        return value

    def probability(self, text: str, sentiment: Sentiment) -> float:
        value = self.decision(text, sentiment)
        # The logistic function, written to stay finite for any decision value.
        if value >= 0:
            return 1.0 / (1.0 + math.exp(-value))
        e = math.exp(value)
        return e / (1.0 + e)

    def probabilities(self, texts: Sequence[str], sentiments: Sequence[Sentiment]) -> list[float]:
        return [self.probability(t, s) for t, s in zip(texts, sentiments)]


def save(path: str | Path, *, words: tuple[list[str], np.ndarray, np.ndarray],
         chars: tuple[list[str], np.ndarray, np.ndarray], dense_coef: np.ndarray, intercept: float,
         meta: dict) -> None:
    """Write a model as arrays only: terms as one newline-joined UTF-8 byte array (no term holds a newline:
    both analyzers split on white space), weights as float32, metadata as JSON bytes."""
    arrays = {}
    for name, (terms, idf, coef) in (("words", words), ("chars", chars)):
        if any("\n" in t for t in terms):
            raise ValueError(f"a {name} term holds a newline")
        arrays[f"{name}_terms"] = np.frombuffer("\n".join(terms).encode("utf-8"), dtype=np.uint8)
        arrays[f"{name}_idf"] = np.asarray(idf, dtype=np.float32)
        arrays[f"{name}_coef"] = np.asarray(coef, dtype=np.float32)
    arrays["dense_coef"] = np.asarray(dense_coef, dtype=np.float32)
    arrays["intercept"] = np.asarray([intercept], dtype=np.float64)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "sentiment_features": list(SENTIMENT_FEATURES),
            **meta}
    arrays["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), dtype=np.uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written beside and renamed, so a daemon reloading it never reads half a file.
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as out:
        np.savez_compressed(out, **arrays)
    os.replace(partial, path)


def shipped_model_path() -> Path:
    return Path(str(resources.files("monitor") / "models" / "complaint.npz"))


class ModelFile:
    """The model in use: the configured file when it exists (``train --local`` writes one), else the shipped model.
    Read once, and read again when that changes (a new file, or the file replaced), so the daemon picks a
    retrained model up at its next poll without a restart."""

    def __init__(self, path: str | Path | None = None):
        self.configured = Path(path) if path else None
        self._lock = threading.Lock()
        self._stamp: tuple[str, int, int] | None = None
        self.path = self._current()
        self.model = self._load(self.path)

    def _current(self) -> Path:
        if self.configured is not None and self.configured.exists():
            return self.configured
        return shipped_model_path()

    def _load(self, path: Path) -> ComplaintModel:
        info = path.stat()
        stamp = (str(path), info.st_mtime_ns, info.st_size)
        model = ComplaintModel.load(path)
        self._stamp = stamp
        return model

    def refresh(self) -> bool:
        """True when a different model is in use now. A file that cannot be read leaves the model in use, and
        the error is raised for the caller to log."""
        with self._lock:
            path = self._current()
            info = path.stat()
            if (str(path), info.st_mtime_ns, info.st_size) == self._stamp:
                return False
            self.model = self._load(path)
            self.path = path
            return True

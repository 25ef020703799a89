"""Sentiment with VADER, sentence by sentence.

VADER's cost grows faster than linearly with the length of one text (a 49,000
character post takes over a second), so a document is split into sentences,
each scored on its own, and the results aggregated. A text that is a single
sentence gets exactly VADER's own scores.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

NEGATIVE = -0.05  # VADER's own threshold for a negative compound
# A "sentence" without punctuation (a wall of text) is cut into pieces of
# this many words so that VADER never sees a long input.
MAX_SENTENCE_WORDS = 80
_SENTENCE = re.compile(r"[^.!?\n]*(?:[.!?]+|\n+|$)")
# A sentence end with more text after it: without one, a short text is one sentence.
_INNER_END = re.compile(r"[.!?\n]+\s*\S")


@dataclass(frozen=True, slots=True)
class Sentiment:
    compound: float  # aggregate, -1..1
    negative: float
    neutral: float
    positive: float
    min_sentence: float  # compound of the most negative sentence
    negative_share: float  # share of sentences that are negative
    brand_compound: float  # mean compound of the sentences that name the brand
    sentences: int
    worst_sentence: str = ""

    def as_dict(self) -> dict:
        return {
            "compound": self.compound,
            "negative": self.negative,
            "neutral": self.neutral,
            "positive": self.positive,
            "min_sentence": self.min_sentence,
            "negative_share": self.negative_share,
            "brand_compound": self.brand_compound,
            "sentences": self.sentences,
        }


NEUTRAL = Sentiment(0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0)


def split_sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) offsets of the sentences of ``text``; long runs are cut by words."""
    spans: list[tuple[int, int]] = []
    for m in _SENTENCE.finditer(text):
        start, end = m.start(), m.end()
        if start == end:
            continue
        chunk = text[start:end]
        if not chunk.strip():
            continue
        if chunk.count(" ") < MAX_SENTENCE_WORDS:
            spans.append((start, end))
            continue
        words = list(re.finditer(r"\S+", chunk))
        for i in range(0, len(words), MAX_SENTENCE_WORDS):
            piece = words[i : i + MAX_SENTENCE_WORDS]
            spans.append((start + piece[0].start(), start + piece[-1].end()))
    return spans


class SentimentScorer:
    def __init__(self, *, lexicon: dict[str, float] | None = None):
        self._vader = SentimentIntensityAnalyzer()
        if lexicon:
            self._vader.lexicon.update({word.lower(): float(v) for word, v in lexicon.items()})

    def vader(self, text: str) -> dict[str, float]:
        return self._vader.polarity_scores(text)

    def score(self, text: str, *, brand_span: tuple[int, int] | None = None) -> Sentiment:
        if not text or not text.strip():
            return NEUTRAL
        # Most tweets are one sentence: no need to split them.
        one = text.count(" ") < MAX_SENTENCE_WORDS and _INNER_END.search(text) is None
        spans = [] if one else split_sentences(text)
        if len(spans) <= 1:
            s = self._vader.polarity_scores(text)
            return Sentiment(s["compound"], s["neg"], s["neu"], s["pos"], s["compound"],
                             1.0 if s["compound"] <= NEGATIVE else 0.0, s["compound"], 1, text.strip())
        total_weight = 0.0
        compound = neg = neu = pos = 0.0
        worst, worst_text = 1.0, ""
        negatives = 0
        brand_scores: list[float] = []
        for start, end in spans:
            chunk = text[start:end]
            sentence = chunk.strip()
            s = self._vader.polarity_scores(sentence)
            # Longer sentences carry more of the document's tone (spaces in the
            # chunk as it was cut, the leading one included: stored scores stay comparable).
            weight = chunk.count(" ") + 1
            total_weight += weight
            compound += s["compound"] * weight
            neg += s["neg"] * weight
            neu += s["neu"] * weight
            pos += s["pos"] * weight
            if s["compound"] < worst:
                worst, worst_text = s["compound"], sentence
            if s["compound"] <= NEGATIVE:
                negatives += 1
            if brand_span and start <= brand_span[0] < end:
                brand_scores.append(s["compound"])
        n = len(spans)
        compound /= total_weight
        return Sentiment(
            compound=round(compound, 4),
            negative=round(neg / total_weight, 3),
            neutral=round(neu / total_weight, 3),
            positive=round(pos / total_weight, 3),
            min_sentence=worst,
            negative_share=round(negatives / n, 4),
            brand_compound=round(sum(brand_scores) / len(brand_scores), 4) if brand_scores else round(compound, 4),
            sentences=n,
            worst_sentence=worst_text,
        )

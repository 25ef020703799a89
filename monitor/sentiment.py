"""Sentiment with VADER, sentence by sentence.

VADER's cost grows faster than linearly with the length of one text (a 49,000
character post takes over a second), so a document is split into sentences,
each scored on its own, and the results aggregated. A text that is a single
sentence gets exactly VADER's own scores.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from vaderSentiment.vaderSentiment import BOOSTER_DICT, SentimentIntensityAnalyzer, SentiText

NEGATIVE = -0.05  # VADER's own threshold for a negative compound
# A "sentence" without punctuation (a wall of text) is cut into pieces of
# this many words so that VADER never sees a long input.
MAX_SENTENCE_WORDS = 80
# A sentence ends at a run of . ! ? followed by a space, a closing quote or bracket, or the end, or
# at a line break: "acme.com", "32.58" and "R.I.P." stay whole. The runs are possessive (++, *+),
# so a long run of "!!!" is never backtracked into: the split stays linear in the text's length.
_CLOSERS = "\"'”’)\\]"
_SENTENCE = re.compile(rf"[^.!?\n]*+(?:[.!?]++(?![\s{_CLOSERS}]|$)[^.!?\n]*+)*+(?:[.!?]+[{_CLOSERS}]*|\n+|$)")


class Sentiment(NamedTuple):
    # A NamedTuple, not a frozen dataclass: as immutable, and made once per text, where a frozen
    # dataclass's __init__ (object.__setattr__ per field) costs about 1.5 us, 2% of a VADER call.
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


def rounded(value: float, digits: int) -> float:
    """``round(value, digits)``, without its cost for zero, the most common value (round() with digits
    rounds correctly in decimal, which is slow; zero, and -0.0, round to themselves)."""
    return value if value == 0 else round(value, digits)


NEUTRAL = Sentiment(0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0)


def _pieces(text: str) -> list[tuple[int, int, str, int]]:
    """(start, end, chunk, spaces in it) of each sentence of ``text``, the chunk as it was cut; long runs
    are cut by words."""
    pieces = []
    start = 0
    # The matches tile the text (each ends where the next starts), so offsets are running lengths.
    for chunk in _SENTENCE.findall(text):
        end = start + len(chunk)
        if chunk and not chunk.isspace():
            spaces = chunk.count(" ")
            if spaces < MAX_SENTENCE_WORDS:
                pieces.append((start, end, chunk, spaces))
            else:
                words = list(re.finditer(r"\S+", chunk))
                for i in range(0, len(words), MAX_SENTENCE_WORDS):
                    piece = words[i : i + MAX_SENTENCE_WORDS]
                    a, b = start + piece[0].start(), start + piece[-1].end()
                    pieces.append((a, b, text[a:b], text.count(" ", a, b)))
        start = end
    return pieces


def split_sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) offsets of the sentences of ``text``; long runs are cut by words."""
    return [(start, end) for start, end, _, _ in _pieces(text)]


class _Window:
    """What ``sentiment_valence`` reads of a SentiText: some of its words and the sentence's all-caps flag."""

    __slots__ = ("words_and_emoticons", "is_cap_diff")

    def __init__(self, is_cap_diff: bool):
        self.words_and_emoticons: list[str] = []
        self.is_cap_diff = is_cap_diff


class SentimentScorer:
    def __init__(self, *, lexicon: dict[str, float] | None = None):
        self._vader = SentimentIntensityAnalyzer()
        if lexicon:
            self._vader.lexicon.update({word.lower(): float(v) for word, v in lexicon.items()})
        self._lexicon = self._vader.lexicon
        self._emojis = self._vader.emojis.keys()
        # Without a lexicon word every valence is 0, and score_valence then gives the same scores
        # whatever the text and its length (punctuation only amplifies a non-zero sum): VADER's own
        # result for that case, computed once.
        self._no_valence = self._vader.score_valence([0], "")
        self._no_words = self._vader.score_valence([], "")

    def vader(self, text: str) -> dict[str, float]:
        """Exactly ``SentimentIntensityAnalyzer.polarity_scores(text)`` (a test holds the two equal on
        every real text we have), at less cost: VADER's own steps, minus work that cannot change them."""
        return self._polarity(text, True)

    def _polarity(self, text: str, may_hold_emoji: bool) -> dict[str, float]:
        if may_hold_emoji and not self._emojis.isdisjoint(text):
            # VADER swaps emoji for their descriptions character by character; only then is that needed.
            return self._vader.polarity_scores(text)
        text = text.strip()
        sentitext = SentiText(text)
        words = sentitext.words_and_emoticons
        lexicon = self._lexicon
        valence = self._vader.sentiment_valence
        last = len(words) - 1
        sentiments: list[float] = []
        has_but = False
        rated = False
        window = _Window(sentitext.is_cap_diff)
        for i, item in enumerate(words):
            lowered = item.lower()
            if lowered not in lexicon:
                # sentiment_valence leaves a word outside the lexicon at 0 whatever surrounds it.
                sentiments.append(0)
                has_but = has_but or lowered == "but"
                continue
            # polarity_scores' own checks, in its order.
            if lowered in BOOSTER_DICT or (i < last and lowered == "kind" and words[i + 1].lower() == "of"):
                sentiments.append(0)
                continue
            # VADER's rules for a word read the three words before it and the two after it, but it
            # lower-cases the whole sentence several times per lexicon word; hand it just those words.
            start = i - 3 if i > 3 else 0
            window.words_and_emoticons = words[start : i + 3]
            valence(0, window, item, i - start, sentiments)
            rated = True
        if not rated:
            return dict(self._no_valence if words else self._no_words)
        if has_but:  # _but_check changes nothing without a "but"
            sentiments = self._vader._but_check(words, sentiments)
        return self._vader.score_valence(sentiments, text)

    def score(self, text: str, *, brand_span: tuple[int, int] | None = None) -> Sentiment:
        stripped = text.strip() if text else ""
        if not stripped:
            return NEUTRAL
        may_hold_emoji = not self._emojis.isdisjoint(text)
        pieces = _pieces(text)
        if len(pieces) <= 1:
            s = self._polarity(text, may_hold_emoji)
            c = s["compound"]
            return Sentiment(c, s["neg"], s["neu"], s["pos"], c, 1.0 if c <= NEGATIVE else 0.0, c, 1, stripped)
        total_weight = 0.0
        compound = neg = neu = pos = 0.0
        worst, worst_text = 1.0, ""
        negatives = 0
        brand_scores: list[float] = []
        polarity = self._polarity
        for start, end, chunk, spaces in pieces:
            sentence = chunk.strip()
            s = polarity(sentence, may_hold_emoji)
            c = s["compound"]
            # Longer sentences carry more of the document's tone (spaces in the
            # chunk as it was cut, the leading one included: stored scores stay comparable).
            weight = spaces + 1
            total_weight += weight
            compound += c * weight
            neg += s["neg"] * weight
            neu += s["neu"] * weight
            pos += s["pos"] * weight
            if c < worst:
                worst, worst_text = c, sentence
            if c <= NEGATIVE:
                negatives += 1
            if brand_span and start <= brand_span[0] < end:
                brand_scores.append(c)
        n = len(pieces)
        compound /= total_weight
        compound = rounded(compound, 4)
        return Sentiment(compound, rounded(neg / total_weight, 3), rounded(neu / total_weight, 3),
                         rounded(pos / total_weight, 3), worst, rounded(negatives / n, 4),
                         rounded(sum(brand_scores) / len(brand_scores), 4) if brand_scores else compound,
                         n, worst_text)

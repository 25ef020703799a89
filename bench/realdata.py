"""Readers for the human-written data in ../shared/data (see its README.md); never copied into the repo.

Each reader returns an empty list when the data is absent, so a bench can say so and exit cleanly.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"


def available() -> bool:
    return DATA.is_dir()


def vader_groundtruth(name: str = "tweets") -> list[tuple[str, float]]:
    """(text, mean human rating -4..4) from VADER's ground truth: tweets, amazonReviewSnippets, ..."""
    path = DATA / "vader_groundtruth" / f"{name}_GroundTruth.txt"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.rstrip("\r").split("\t")
        if len(parts) >= 3:
            rows.append(("\t".join(parts[2:]), float(parts[1])))
    return rows


def uci_sentences() -> list[tuple[str, int]]:
    """(sentence, 0 negative / 1 positive) from UCI's Amazon, Yelp and IMDb review sentences."""
    rows = []
    for path in sorted((DATA / "uci_sentiment_labelled_sentences").glob("*_labelled.txt")):
        # Split on \n only: the IMDb file holds NEL characters that str.splitlines would cut at.
        for line in path.read_text(encoding="utf-8", errors="replace").split("\n"):
            text, _, label = line.rstrip("\r").rpartition("\t")
            if text and label.strip() in ("0", "1"):
                rows.append((text, int(label)))
    return rows


def customer_care_requests() -> list[dict]:
    """The customer's opening message of every IBM customer-care conversation (a support request or complaint)."""
    rows = []
    for name in ("dev.json", "test.json"):
        path = DATA / "ibm_twitter_customer_care" / name
        if not path.exists():
            continue
        for conversation in json.loads(path.read_text(encoding="utf-8")):
            first = next((m for m in conversation["dialogContent"] if "agent" not in m), None)
            if first is not None:
                rows.append({"text": first["message"], "company": conversation["dialogHeader"]["company"],
                             "created_at": first["datetime"], "id": first["tweet_ID"], "file": name})
    return rows


def tweet_texts() -> list[str]:
    """Tweet-length texts written by people: VADER's ground-truth tweets and the customer-care requests."""
    return [t for t, _ in vader_groundtruth("tweets")] + [r["text"] for r in customer_care_requests()]


def long_text(chars: int) -> str:
    """Real sentences concatenated into one document of about ``chars`` characters (review snippets, editorials)."""
    sentences = [t for name in ("nytEditorialSnippets", "movieReviewSnippets", "amazonReviewSnippets")
                 for t, _ in vader_groundtruth(name)]
    if not sentences:
        return ""
    parts, size, i = [], 0, 0
    while size < chars:
        sentence = sentences[i % len(sentences)]
        parts.append(sentence)
        size += len(sentence) + 1
        i += 1
    return " ".join(parts)[:chars]


def goemotions_test() -> list[tuple[str, int]]:
    """(Reddit comment, 1 if people labelled a negative emotion) from GoEmotions' test split (held out from training)."""
    folder = DATA / "goemotions"
    if not folder.is_dir():
        return []
    names = (folder / "labels.txt").read_text(encoding="utf-8").split()
    negative = {names.index(n) for n in json.loads((folder / "sentiment_dict.json").read_text())["negative"]}
    rows = []
    for line in (folder / "test.tsv").read_text(encoding="utf-8").split("\n"):
        parts = line.split("\t")
        if len(parts) >= 2 and parts[1]:
            rows.append((parts[0], int(bool({int(x) for x in parts[1].split(",")} & negative))))
    return rows

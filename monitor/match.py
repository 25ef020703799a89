"""Find which configured brand a text talks about, in one pass over the text.

All brands' keywords go into one Aho-Corasick automaton, so the cost of a
match does not grow with the number of brands. A hit counts only on word
boundaries, so "Acme" matches "#acme" and "@Acme" but not "Acmeville".
"""

from __future__ import annotations

import re
from typing import NamedTuple

import ahocorasick

from .config import Brand

QUOTE_LIMIT = 320
_SENTENCE_END = re.compile(r"[.!?\n]+")


class BrandMatch(NamedTuple):  # immutable, and cheaper to make than a frozen dataclass
    brand: str
    keyword: str
    start: int  # offsets into the text that was matched
    end: int
    hits: int  # how many times this brand was named


def _fold(text: str) -> str:
    """Lower-case without changing offsets (a few letters grow when lowered)."""
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in text)


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


class BrandMatcher:
    def __init__(self, brands: list[Brand]):
        self._automaton = ahocorasick.Automaton()
        self._exclusions = ahocorasick.Automaton()
        self._own_accounts = {b.name: {a.lower().lstrip("@") for a in b.own_accounts} for b in brands}
        for brand in brands:
            for term in brand.terms:
                key = term.strip().lower()
                if key:
                    entries = self._automaton.get(key, [])
                    if (brand.name, term) not in entries:
                        entries.append((brand.name, term))
                    self._automaton.add_word(key, entries)
            for phrase in brand.exclude:
                key = phrase.strip().lower()
                if key:
                    owners = self._exclusions.get(key, [])
                    owners.append((brand.name, key))
                    self._exclusions.add_word(key, owners)
        self._has_terms = len(self._automaton) > 0
        self._has_exclusions = len(self._exclusions) > 0
        if self._has_terms:
            self._automaton.make_automaton()
        if self._has_exclusions:
            self._exclusions.make_automaton()

    @staticmethod
    def _on_boundary(folded: str, start: int, end: int) -> bool:
        before = folded[start - 1] if start > 0 else " "
        after = folded[end] if end < len(folded) else " "
        first, last = folded[start], folded[end - 1]
        # A keyword that itself starts or ends in punctuation (like "@acme")
        # needs no boundary on that side.
        return (not _is_word_char(first) or not _is_word_char(before)) and (
            not _is_word_char(last) or not _is_word_char(after)
        )

    def _found(self, text: str) -> dict[str, list]:
        """brand -> [keyword, start, end, hits] of its first hit, in order of first hits."""
        folded = _fold(text)
        on_boundary = self._on_boundary
        excluded: set[str] = set()
        if self._has_exclusions:
            for last, owners in self._exclusions.iter(folded):
                end = last + 1
                for brand, phrase in owners:
                    if on_boundary(folded, end - len(phrase), end):
                        excluded.add(brand)
        found: dict[str, list] = {}
        for last, entries in self._automaton.iter(folded):
            end = last + 1
            for brand, term in entries:
                if brand in excluded:
                    continue
                start = end - len(term.strip())
                if not on_boundary(folded, start, end):
                    continue
                first = found.get(brand)
                if first is None:
                    found[brand] = [term, start, end, 1]
                else:
                    first[3] += 1
        return found

    def _matches(self, text: str) -> list[BrandMatch]:
        if not self._has_terms or not text:
            return []
        return [BrandMatch(brand, *first) for brand, first in self._found(text).items()]

    def match_all(self, text: str) -> list[BrandMatch]:
        """Every brand named in the text, most-named first."""
        return sorted(self._matches(text), key=_most_named_first)

    def match(self, text: str) -> BrandMatch | None:
        """What ``match_all`` puts first (min, like a stable sort, keeps the earlier of equals), without sorting."""
        matches = self._matches(text)
        return min(matches, key=_most_named_first) if matches else None

    def is_own_account(self, brand: str, author: str | None) -> bool:
        return bool(author) and author.lower().lstrip("@") in self._own_accounts.get(brand, set())


def _most_named_first(match: BrandMatch) -> tuple[int, int]:
    return -match.hits, match.start


def quote_around(text: str, start: int, end: int, limit: int = QUOTE_LIMIT) -> str:
    """The sentence that holds text[start:end], cut to ``limit`` characters around the hit."""
    left = 0
    for m in _SENTENCE_END.finditer(text, max(0, start - limit), start):
        left = m.end()
    right_match = _SENTENCE_END.search(text, end, min(len(text), end + limit))
    right = right_match.end() if right_match else min(len(text), end + limit)
    left = max(left, start - limit // 2)
    quote = " ".join(text[left:right].split())
    if len(quote) > limit:
        quote = quote[: limit - 1].rstrip() + "…"
    return quote

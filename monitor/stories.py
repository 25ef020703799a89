"""The same story seen in several places: cluster mentions into stories.

Two mentions are one story when they point at the same link once tracking
noise is removed (``?utm_source=...``, fragments, ``www.``), or when their
titles are near-duplicates of a recent story of the same brand (token-set
Jaccard over normalised title words). A story's ``sightings`` is the number of
distinct places (source + subreddit/feed) it was seen in; virality rules read
it as the ``sightings`` signal.

Every link and title fingerprint a story was seen under is kept in
``story_keys`` (migration 5), so a third mention that shares only the second
one's link still joins the story.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from .config import StorySettings
from .links import link_key
from .mention import Mention
from .store import Store, to_epoch

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
# Words that carry no story: two titles sharing only these are not the same story.
STOPWORDS = frozenset(
    "a an and are as at be been but by for from has have i i'm in is it its me my of on or our so that the "
    "their them they this to was we were what when who why will with you your just about after again all "
    "any can do does did how if into it's not no new now out over than then there up very via".split())

MIN_TITLE_TOKENS = 3  # shorter titles ("Acme sucks") are too generic to cluster on
CANDIDATES = 300  # at most this many recent stories of the brand are compared
TITLES_KEPT = 20_000  # candidate titles whose tokens are kept (a few MB)


def normalise_url(url: str | None) -> str | None:
    """A link as a story key: ``links.link_key`` without scheme, ``www.`` or tracking noise; None for no web link."""
    return link_key(url, same_story=True)


def story_links(mention: Mention) -> list[str]:
    """The normalised links a mention points at: the source's canonical link, a link post's target, its URL."""
    extra = mention.extra or {}
    candidates = [extra.get("canonical_url"), extra.get("link_url"), mention.url]
    links: list[str] = []
    for url in candidates:
        key = normalise_url(url if isinstance(url, str) else None)
        if key and key not in links:
            links.append(key)
    return links


# A Reddit post's id in its links: reddit.com/r/sub/comments/ID/..., reddit.com/comments/ID, redd.it/ID.
_REDDIT_POST = re.compile(r"(?:\breddit\.com/(?:r/[^/\s)\]]+/)?comments/|\bredd\.it/)([a-z0-9]{2,12})\b",
                          re.IGNORECASE)


def reddit_posts(mention: Mention) -> list[str]:
    """The Reddit posts a mention belongs to: a post itself, a comment's post, a post an entry links to.

    Keyed by the post's id, so a news item linking ``redd.it/abc`` and the post ``reddit.com/r/x/comments/abc/``
    are one story whatever form the link takes."""
    extra = mention.extra or {}
    ids: list[str] = []
    if mention.kind == "post" and mention.source_id.startswith("t3_"):
        ids.append(mention.source_id[3:])
    elif mention.kind == "comment" and str(extra.get("link_id") or "").startswith("t3_"):
        ids.append(str(extra["link_id"])[3:])
    else:
        for text in (extra.get("canonical_url"), extra.get("link_url"), mention.url, mention.text):
            ids.extend(m.group(1) for m in _REDDIT_POST.finditer(text if isinstance(text, str) else ""))
    return list(dict.fromkeys(i.lower() for i in ids))[:5]


def title_tokens(title: str) -> frozenset[str]:
    """Normalised words of a title, without stopwords: the title's fingerprint."""
    return frozenset(w for w in _WORD.findall(title.casefold()) if w not in STOPWORDS and len(w) > 1)


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    shared = len(a & b)
    return shared / (len(a) + len(b) - shared)  # the union's size, without building it


def _title_key(brand: str | None, tokens: frozenset[str]) -> str:
    return f"title:{(brand or '').casefold()}:{' '.join(sorted(tokens))}"


@dataclass(frozen=True, slots=True)
class Sighting:
    """Where a new mention belongs: an existing story (or none yet) and the sightings counting it."""

    story_id: int | None
    sightings: int
    keys: tuple[str, ...]
    previous_sightings: int = 0

    @property
    def grew(self) -> bool:
        return self.story_id is not None and self.sightings > self.previous_sightings


class Stories:
    """Finds and records stories in the store; never scores anything itself."""

    def __init__(self, store: Store, *, settings: StorySettings = StorySettings(), candidates: int = CANDIDATES):
        self.store = store
        # Titles from this token-set Jaccard on are one story; only stories this recent are compared by title.
        self.similarity = settings.title_similarity
        self.window_hours = settings.window_hours
        self.candidates = candidates
        # The tokens of candidate stories' titles: each new mention compares itself with up to ``candidates``
        # recent stories, mostly the same ones, and tokenising them again was 30,120 ``title_tokens`` calls
        # for 500 new mentions (bench/bench_pipeline.py).
        self._title_tokens: dict[str, frozenset[str]] = {}

    def keys(self, mention: Mention) -> tuple[str, ...]:
        keys = [f"url:{link}" for link in story_links(mention)]
        keys += [f"reddit:{post}" for post in reddit_posts(mention)]
        tokens = title_tokens(mention.title)
        if len(tokens) >= MIN_TITLE_TOKENS:
            keys.append(_title_key(mention.brand, tokens))
        return tuple(keys)

    def clusterable(self, mention: Mention) -> bool:
        """A comment belongs to its post's story; one without a post, title or link of its own has none."""
        extra = mention.extra or {}
        return bool(mention.title.strip()) or bool(extra.get("canonical_url")) or bool(reddit_posts(mention))

    def find(self, mention: Mention, *, now: datetime) -> Sighting:
        """The story this mention belongs to, and its sightings once this mention counts."""
        if not self.clusterable(mention):
            return Sighting(None, 1, ())
        keys = self.keys(mention)
        story_id = self._by_key(keys) or self._by_title(mention, now)
        if story_id is None:
            return Sighting(None, 1, keys)
        if mention.kind == "comment":  # in its post's thread: where the post already is, not a new place
            before, new_place = self.sightings(story_id), False
        else:
            sightings, seen = self.store.story_sightings_at(story_id, mention.source, mention.place)
            before, new_place = sightings or 1, not seen
        return Sighting(story_id, before + new_place, keys, previous_sightings=before)

    def record(self, mention_id: int, mention: Mention, sighting: Sighting, *, now: datetime) -> int | None:
        """Attach a stored mention to its story (creating it), inside the caller's transaction. The count of
        places is kept by the store in the same transaction: ``sighting.sightings`` is what the score saw."""
        if not sighting.keys:
            return None
        story_id, _sightings = self.store.attach_story(
            mention_id, story_id=sighting.story_id, keys=sighting.keys, brand=mention.brand,
            title=mention.title or _post(mention, "post_title", ""), url=_post(mention, "post_url", mention.url),
            seen=to_epoch(now), new_place=mention.kind != "comment", where=(mention.source, mention.place))
        return story_id

    def sightings(self, story_id: int | None) -> int:
        """Distinct places (source + place) the story was seen in, as ``record`` keeps it.

        Kept as a count on the story, so a story told a thousand times in one
        place costs one indexed look-up per new mention, not a scan of all of them."""
        if story_id is None:
            return 1
        return self.store.story_sightings(story_id) or 1

    def others(self, story_id: int, mention_id: int, *, limit: int = 20) -> list[int]:
        """The story's other mentions, newest first, at most ``limit`` (re-scoring is bounded)."""
        return self.store.story_mentions(story_id, besides=mention_id, limit=limit)

    def _by_key(self, keys: tuple[str, ...]) -> int | None:
        return self.store.story_by_keys(keys)

    def _by_title(self, mention: Mention, now: datetime) -> int | None:
        tokens = title_tokens(mention.title)
        if len(tokens) < MIN_TITLE_TOKENS:
            return None
        since = to_epoch(now) - self.window_hours * 3600
        best, best_score = None, self.similarity
        for story_id, title in self.store.recent_stories(mention.brand, since=since, limit=self.candidates):
            score = jaccard(tokens, self._tokens_of(title))
            if score >= best_score:
                best, best_score = story_id, score
        return best

    def _tokens_of(self, title: str) -> frozenset[str]:
        tokens = self._title_tokens.get(title)
        if tokens is None:
            if len(self._title_tokens) >= TITLES_KEPT:
                self._title_tokens.clear()  # a new generation: the recent stories' titles come back at once
            tokens = self._title_tokens[title] = title_tokens(title)
        return tokens


def _post(mention: Mention, key: str, default: str) -> str:
    """A comment's post title or link (``extra``), for a story a comment starts before its post is seen."""
    value = (mention.extra or {}).get(key)
    return value if isinstance(value, str) and value else default

"""Stories: the same story seen in several places, under every link and title fingerprint it had."""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import bindparam, case, exists, func, select

from .records import StoryPlace
from .schema import mentions, stories, story_keys

m, s = mentions.c, stories.c
_SIGHTINGS = select(s.sightings).where(s.id == bindparam("id"))


@lru_cache(maxsize=None)
def _by_keys(count: int):
    """The oldest story under one of ``count`` keys (``k0``, ``k1``, ...). One statement per count (a mention
    has a few keys): an expanding IN is rewritten at every execution, a third of this look-up's time."""
    keys = [bindparam(f"k{i}", type_=story_keys.c.key.type) for i in range(count)]
    return select(story_keys.c.story_id).where(story_keys.c.key.in_(keys)).order_by(story_keys.c.story_id).limit(1)


_RECENT = (select(s.id, s.title)
           .where(s.brand.is_not_distinct_from(bindparam("brand")), s.last_seen >= bindparam("since"))
           .order_by(s.last_seen.desc()).limit(bindparam("limit")))
_BY_KEY = select(s.id).where(s.key == bindparam("key"))
_PLACE = select(m.source, m.place).where(m.id == bindparam("mention_id"))
# On PostgreSQL the story's row stays locked until the transaction ends: a second writer with a mention from
# the same place waits, then sees the first one's mention (SQLite's writers are one at a time anyway).
_LOCK_STORY = select(s.id).where(s.id == bindparam("story_id")).with_for_update()
_SEEN = stories.update().where(s.id == bindparam("story_id")).values(
    last_seen=case((s.last_seen < bindparam("seen"), bindparam("seen")), else_=s.last_seen),
    sightings=s.sightings + bindparam("new_places")).returning(s.sightings)
_SET_STORY = mentions.update().where(m.id == bindparam("mention_id")).values(story_id=bindparam("story_id"))
_OTHERS = (select(m.id).where(m.story_id == bindparam("story_id"), m.id != bindparam("besides"))
           .order_by(m.created_at.desc()).limit(bindparam("limit")))
_PLACES = (select(m.place, m.source, m.url).where(m.story_id == bindparam("story_id"), m.id != bindparam("besides"))
           .order_by(m.created_at).limit(bindparam("limit")))
_PLACES_SINCE = (select(m.place, m.source).where(m.story_id == bindparam("story_id"), m.fetched_at > bindparam("since"),
                                                 m.id != bindparam("besides"))
                 .group_by(m.place, m.source).order_by(func.min(m.fetched_at)).limit(bindparam("limit")))
_STORY_COLUMNS = ("brand", "key", "title", "url", "first_seen", "last_seen", "sightings")


def _create(insert):
    return insert(stories).values({c: bindparam(c) for c in _STORY_COLUMNS}).on_conflict_do_nothing().returning(s.id)


def _add_keys(insert):
    return insert(story_keys).values(key=bindparam("key"), story_id=bindparam("story_id")).on_conflict_do_nothing()


_SEEN_AT = select(m.id).where(m.story_id == bindparam("story_id"), m.source == bindparam("source"),
                              m.place == bindparam("place")).limit(1)
_SIGHTINGS_SEEN_AT = select(s.sightings, exists().where(m.story_id == s.id, m.source == bindparam("source"),
                                                        m.place == bindparam("place"))).where(s.id == bindparam("id"))


class StoryStore:
    def story_by_keys(self, keys: tuple[str, ...]) -> int | None:
        """The oldest story known under one of these keys."""
        if not keys:
            return None
        return self._value(_by_keys(len(keys)), {f"k{i}": key for i, key in enumerate(keys)})

    def recent_stories(self, brand: str | None, *, since: float, limit: int) -> list[tuple[int, str]]:
        """The brand's stories seen since then, latest first: (id, title)."""
        return [(r.id, r.title) for r in self._rows(_RECENT, {"brand": brand, "since": since, "limit": limit})]

    def story_sightings(self, story_id: int) -> int | None:
        return self._value(_SIGHTINGS, {"id": story_id})

    def story_sightings_at(self, story_id: int, source: str, place: str) -> tuple[int | None, bool]:
        """``story_sightings`` and ``story_seen_at`` in one statement: (sightings, seen in this place)."""
        rows = self._rows(_SIGHTINGS_SEEN_AT, {"id": story_id, "source": source, "place": place})
        return (rows[0][0], bool(rows[0][1])) if rows else (None, False)

    def story_seen_at(self, story_id: int, source: str, place: str) -> bool:
        """Whether one of the story's mentions was in this place already."""
        return self._value(_SEEN_AT, {"story_id": story_id, "source": source, "place": place}) is not None

    def attach_story(self, mention_id: int, *, story_id: int | None, keys: tuple[str, ...], brand: str | None,
                     title: str, url: str, seen: float, new_place: bool,
                     where: tuple[str, str] | None = None) -> tuple[int, int]:
        """Attach a stored mention to its story, creating it under ``keys[0]`` when ``story_id`` is None;
        returns (story id, sightings). ``new_place``: the mention may count as a new place (not a comment in
        its post's thread); whether its place is new is decided here, inside the transaction, and the count
        grows in SQL, so two threads (or daemons) adding to one story never lose a sighting. ``where``: the
        mention's (source, place) when the caller just stored it, saving their look-up."""
        with self.transaction() as db:
            if story_id is None:
                created = db.execute(self._prepared(_create), dict(
                    brand=brand, key=keys[0], title=title, url=url, first_seen=seen, last_seen=seen, sightings=1,
                )).scalar()
                if created is not None:
                    story_id, new_place = created, False
                else:  # created by another writer since the caller looked
                    story_id = db.execute(_BY_KEY, {"key": keys[0]}).scalar_one()
            if new_place:
                if self.dialect != "sqlite":  # SQLite's write transaction holds the whole file already
                    db.execute(_LOCK_STORY, {"story_id": story_id})
                source, place = where or db.execute(_PLACE, {"mention_id": mention_id}).one()
                new_place = db.execute(_SEEN_AT, {"story_id": story_id, "source": source,
                                                  "place": place}).first() is None
            sightings = db.execute(_SEEN, {"story_id": story_id, "seen": seen,
                                           "new_places": int(new_place)}).scalar_one()
            db.execute(self._prepared(_add_keys), [{"key": k, "story_id": story_id} for k in keys])
            db.execute(_SET_STORY, {"mention_id": mention_id, "story_id": story_id})
            return story_id, sightings

    def story_mentions(self, story_id: int, *, besides: int, limit: int) -> list[int]:
        """The story's other mentions, newest first."""
        return [r[0] for r in self._rows(_OTHERS, {"story_id": story_id, "besides": besides, "limit": limit})]

    def story_places(self, story_id: int, *, besides: int, limit: int = 10) -> list[StoryPlace]:
        """Where the story's other mentions are, oldest first."""
        return [StoryPlace(r.place, r.source, r.url) for r in self._rows(
            _PLACES, {"story_id": story_id, "besides": besides, "limit": limit})]

    def story_places_since(self, story_id: int, *, since: float, besides: int, limit: int = 10) -> list[StoryPlace]:
        """The distinct places the story's mentions fetched after ``since`` were in (but ``besides``'s), in the
        order the story reached them."""
        return [StoryPlace(r.place, r.source) for r in self._rows(
            _PLACES_SINCE, {"story_id": story_id, "since": since, "besides": besides, "limit": limit})]

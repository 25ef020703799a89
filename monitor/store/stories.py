"""Stories: the same story seen in several places, under every link and title fingerprint it had."""

from __future__ import annotations

from .records import StoryPlace, record


class StoryStore:
    def story_by_keys(self, keys: tuple[str, ...]) -> int | None:
        """The oldest story known under one of these keys."""
        if not keys:
            return None
        marks = ",".join("?" * len(keys))
        return self._value(f"SELECT story_id FROM story_keys WHERE key IN ({marks}) ORDER BY story_id LIMIT 1", keys)

    def recent_stories(self, brand: str | None, *, since: float, limit: int) -> list[tuple[int, str]]:
        """The brand's stories seen since then, latest first: (id, title)."""
        return [(r["id"], r["title"]) for r in self._rows(
            "SELECT id, title FROM stories WHERE brand IS ? AND last_seen >= ? ORDER BY last_seen DESC LIMIT ?",
            (brand, since, limit))]

    def story_sightings(self, story_id: int) -> int | None:
        return self._value("SELECT sightings FROM stories WHERE id = ?", (story_id,))

    def story_seen_at(self, story_id: int, source: str, place: str) -> bool:
        """Whether one of the story's mentions was in this place already."""
        return self._value("SELECT 1 FROM mentions WHERE story_id = ? AND source = ? AND place = ? LIMIT 1",
                           (story_id, source, place)) is not None

    def attach_story(self, mention_id: int, *, story_id: int | None, keys: tuple[str, ...], brand: str | None,
                     title: str, url: str, seen: float, new_place: bool) -> tuple[int, int]:
        """Attach a stored mention to its story, creating it under ``keys[0]`` when ``story_id`` is None;
        returns (story id, sightings). ``new_place``: the mention may count as a new place (not a comment in
        its post's thread); whether its place is new is decided here, inside the transaction, and the count
        grows in SQL, so two threads adding to one story never lose a sighting."""
        with self.transaction() as db:
            if story_id is None:
                cur = db.execute(
                    "INSERT OR IGNORE INTO stories (brand, key, title, url, first_seen, last_seen, sightings)"
                    " VALUES (?, ?, ?, ?, ?, ?, 1)", (brand, keys[0], title, url, seen, seen))
                if cur.rowcount:
                    story_id, new_place = cur.lastrowid, False
                else:  # created by another writer since the caller looked
                    story_id = db.execute("SELECT id FROM stories WHERE key = ?", (keys[0],)).fetchone()[0]
            if new_place:
                source, place = db.execute("SELECT source, place FROM mentions WHERE id = ?", (mention_id,)).fetchone()
                new_place = db.execute("SELECT 1 FROM mentions WHERE story_id = ? AND source = ? AND place = ?"
                                       " LIMIT 1", (story_id, source, place)).fetchone() is None
            db.execute("UPDATE stories SET last_seen = max(last_seen, ?), sightings = sightings + ? WHERE id = ?",
                       (seen, int(new_place), story_id))
            db.executemany("INSERT OR IGNORE INTO story_keys (key, story_id) VALUES (?, ?)",
                           [(k, story_id) for k in keys])
            db.execute("UPDATE mentions SET story_id = ? WHERE id = ?", (story_id, mention_id))
            return story_id, db.execute("SELECT sightings FROM stories WHERE id = ?", (story_id,)).fetchone()[0]

    def story_mentions(self, story_id: int, *, besides: int, limit: int) -> list[int]:
        """The story's other mentions, newest first."""
        return [r[0] for r in self._rows(
            "SELECT id FROM mentions WHERE story_id = ? AND id != ? ORDER BY created_at DESC LIMIT ?",
            (story_id, besides, limit))]

    def story_places(self, story_id: int, *, besides: int, limit: int = 10) -> list[StoryPlace]:
        """Where the story's other mentions are, oldest first."""
        return [record(StoryPlace, r) for r in self._rows(
            "SELECT place, source, url FROM mentions WHERE story_id = ? AND id != ? ORDER BY created_at LIMIT ?",
            (story_id, besides, limit))]

    def story_places_since(self, story_id: int, *, since: float, besides: int, limit: int = 10) -> list[StoryPlace]:
        """The distinct places the story's mentions fetched after ``since`` were in (but ``besides``'s)."""
        return [StoryPlace(r["place"], r["source"]) for r in self._rows(
            "SELECT DISTINCT place, source FROM mentions WHERE story_id = ? AND fetched_at > ? AND id != ?"
            " ORDER BY fetched_at LIMIT ?", (story_id, since, besides, limit))]

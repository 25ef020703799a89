"""A local server speaking the part of Hacker News's Algolia search API the source uses.

``/api/v1/search_by_date``: ``tags=(story,comment)`` and ``numericFilters`` on
``created_at_i`` (``>``, ``>=``, ``<``, ``<=``, comma-separated), newest first,
at most ``hitsPerPage`` (and at most ``page_size_limit``) hits.
``/api/v1/search``: ``tags=story,(story_1,story_2,...)``, the stories named.
"""

from __future__ import annotations

import operator
import re
from typing import Any

from tests.servers.json_api import JsonApiServer

_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "=": operator.eq}
_FILTER = re.compile(r"^(\w+)(>=|<=|>|<|=)(-?\d+)$")


class HackerNewsServer(JsonApiServer):
    def __init__(self, *, page_size_limit: int = 1000):
        super().__init__()
        self.items: dict[str, dict[str, Any]] = {}
        self.page_size_limit = page_size_limit

    def add_story(self, id: int, *, title: str, created: float, text: str = "", url: str = "", author: str = "pg",
                  points: int = 1, num_comments: int = 0) -> None:
        self.items[str(id)] = {"objectID": str(id), "created_at_i": int(created), "title": title, "url": url or None,
                               "story_text": text or None, "author": author, "points": points,
                               "num_comments": num_comments, "_tags": ["story", f"author_{author}", f"story_{id}"]}

    def add_comment(self, id: int, *, story_id: int, text: str, created: float, author: str = "dang") -> None:
        story = self.items.get(str(story_id), {})
        self.items[str(id)] = {"objectID": str(id), "created_at_i": int(created), "comment_text": text,
                               "author": author, "points": None, "story_id": story_id, "parent_id": story_id,
                               "story_title": story.get("title"), "story_url": story.get("url"),
                               "_tags": ["comment", f"author_{author}", f"story_{story_id}"]}

    def route(self, path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        per_page = min(int(query.get("hitsPerPage", ["20"])[0]), self.page_size_limit)
        tags = query.get("tags", [""])[0]
        if path == "/api/v1/search_by_date" and tags == "(story,comment)":
            hits = list(self.items.values())
            for spec in filter(None, query.get("numericFilters", [""])[0].split(",")):
                field, op, value = _FILTER.match(spec).groups()
                hits = [h for h in hits if _OPS[op](h[field], int(value))]
            hits.sort(key=lambda h: (-h["created_at_i"], -int(h["objectID"])))
        elif path == "/api/v1/search" and tags.startswith("story,("):
            wanted = set(tags[len("story,(") : -1].split(","))
            hits = [h for h in self.items.values() if "story" in h["_tags"] and f"story_{h['objectID']}" in wanted]
        else:
            return 400, {"message": f"unsupported query {path} {query}"}
        return 200, {"hits": hits[:per_page], "nbHits": len(hits), "page": 0, "hitsPerPage": per_page}

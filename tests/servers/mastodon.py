"""A local server speaking the part of Mastodon's REST API that Mastodon.py's timelines use.

``/api/v2/instance`` (Mastodon.py reads which timelines are public there),
``/api/v1/instance``, ``/api/v1/timelines/public`` (``local=true``: this
instance's own posts) and ``/api/v1/timelines/tag/:tag``, with ``min_id``
(the page right after it), ``since_id`` (the newest page above it),
``max_id`` and ``limit`` as Mastodon pages them: newest first.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from tests.servers.json_api import JsonApiServer


class MastodonServer(JsonApiServer):
    def __init__(self, *, domain: str = "social.test"):
        super().__init__()
        self.domain = domain
        self.statuses: list[dict[str, Any]] = []
        self._next_id = 110000000000000000

    def add_status(self, content: str, *, acct: str = "alice", tags: list[str] | None = None, local: bool = True,
                   favourites: int = 0, reblogs: int = 0, replies: int = 0, followers: int = 10,
                   created: float | None = None, reply_to: str | None = None, uri: str | None = None,
                   reblog_of: dict | None = None) -> dict[str, Any]:
        self._next_id += 1
        sid = str(self._next_id)
        host = self.domain if local else "remote.test"
        status = {
            "id": sid, "uri": uri or f"https://{host}/users/{acct}/statuses/{sid}",
            "url": f"https://{host}/@{acct}/{sid}",
            "created_at": datetime.fromtimestamp(created or datetime.now(timezone.utc).timestamp(), timezone.utc)
            .isoformat().replace("+00:00", "Z"),
            "content": content, "spoiler_text": "", "visibility": "public", "sensitive": False,
            "in_reply_to_id": reply_to, "reblog": reblog_of, "favourites_count": favourites,
            "reblogs_count": reblogs, "replies_count": replies, "language": "en",
            "tags": [{"name": t, "url": f"https://{self.domain}/tags/{t}"} for t in (tags or [])],
            "account": {"id": "1", "username": acct, "acct": acct if local else f"{acct}@remote.test",
                        "display_name": acct, "followers_count": followers, "url": f"https://{host}/@{acct}"},
            "_local": local,
        }
        self.statuses.append(status)
        return status

    def route(self, path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        path = path.rstrip("/")
        if path == "/api/v2/instance":
            public = {"local": "public", "remote": "public"}
            return 200, {"domain": self.domain, "version": "4.3.0", "title": "test",
                         "configuration": {"timelines_access": {"live_feeds": public, "hashtag_feeds": public,
                                                                "trending_link_feeds": public}}}
        if path == "/api/v1/instance":
            return 200, {"uri": self.domain, "version": "4.3.0", "title": "test"}
        if path == "/api/v1/timelines/public":
            local = query.get("local", ["false"])[0].lower() in ("true", "1")
            found = [s for s in self.statuses if s["_local"] or not local]
        elif path.startswith("/api/v1/timelines/tag/"):
            tag = path.rsplit("/", 1)[1].lower()
            found = [s for s in self.statuses if tag in (t["name"].lower() for t in s["tags"])]
        else:
            return 404, {"error": "Record not found"}
        return 200, [_public(s) for s in _page(found, query)]


def _public(status: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in status.items() if not k.startswith("_")}


def _page(statuses: list[dict[str, Any]], query: dict[str, list[str]]) -> list[dict[str, Any]]:
    limit = int(query.get("limit", ["20"])[0])
    key = lambda s: int(s["id"])  # noqa: E731
    if "max_id" in query:
        statuses = [s for s in statuses if key(s) < int(query["max_id"][0])]
    if "min_id" in query:
        after = sorted((s for s in statuses if key(s) > int(query["min_id"][0])), key=key)[:limit]
        return sorted(after, key=key, reverse=True)
    if "since_id" in query:
        statuses = [s for s in statuses if key(s) > int(query["since_id"][0])]
    return sorted(statuses, key=key, reverse=True)[:limit]

"""A local server speaking the part of Mastodon's REST API that Mastodon.py's timelines use.

``/api/v2/instance`` (Mastodon.py reads which timelines are public there),
``/api/v1/instance``, ``/api/v1/timelines/public`` (``local=true``: this
instance's own posts) and ``/api/v1/timelines/tag/:tag``, with ``min_id``
(the page right after it), ``since_id`` (the newest page above it),
``max_id`` and ``limit`` as Mastodon pages them: newest first; ``/api/v1/statuses?id[]=``
(growth re-reads). And the streaming API as server-sent events, as Mastodon's streaming server speaks it:
``/api/v1/streaming/health``, ``/api/v1/streaming/public[/local]`` and ``/api/v1/streaming/hashtag[/local]?tag=``
send an ``update`` event for each status added while connected (a ``:thump`` heartbeat in between);
``streaming = 401`` refuses them as an instance that keeps its timelines to logged-in users does, and
``drop_streams()`` cuts every open stream (Mastodon.py reconnects).
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from typing import Any

from tests.servers.json_api import JsonApiServer


class MastodonServer(JsonApiServer):
    def __init__(self, *, domain: str = "social.test"):
        super().__init__()
        self.domain = domain
        self.statuses: list[dict[str, Any]] = []
        self._next_id = 110000000000000000
        self.streaming: int = 200  # what the streaming endpoints answer: 200 streams, 401/404/503 refuse
        self.stream_requests: list[str] = []
        self._changed = threading.Condition()
        self._generation = 0  # drop_streams() moves it on: open streams end

    def drop_streams(self) -> None:
        with self._changed:
            self._generation += 1
            self._changed.notify_all()

    def streams_open(self) -> int:
        return self._open

    _open = 0

    def stream(self, handler, path: str, query: dict[str, list[str]]) -> bool:
        if not path.startswith("/api/v1/streaming"):
            return False
        if path == "/api/v1/streaming/health":
            return _plain(handler, 200, b"OK")
        with self._changed:
            self.stream_requests.append(path + ("?tag=" + query["tag"][0] if "tag" in query else ""))
        if self.streaming != 200:
            return _plain(handler, self.streaming, b'{"error":"This stream requires an access token"}')
        local = path.endswith("/local")
        if path.startswith("/api/v1/streaming/public"):
            wanted = lambda s: s["_local"] or not local  # noqa: E731
        elif path.startswith("/api/v1/streaming/hashtag"):
            tag = query.get("tag", [""])[0].lower()
            wanted = lambda s: tag in (t["name"].lower() for t in s["tags"]) and (s["_local"] or not local)  # noqa
        else:
            return _plain(handler, 404, b'{"error":"Unknown stream"}')
        handler.close_connection = True
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Cache-Control", "no-store")
        handler.send_header("Connection", "close")
        handler.end_headers()
        with self._changed:
            sent, generation = len(self.statuses), self._generation
            self._open += 1
        try:
            while not self.stopping.is_set():
                with self._changed:
                    self._changed.wait_for(lambda: len(self.statuses) > sent or self._generation != generation,
                                           timeout=0.5)
                    if self._generation != generation:
                        return True
                    fresh, sent = self.statuses[sent:], len(self.statuses)
                chunks = [f"event: update\ndata: {json.dumps(_public(s))}\n\n" for s in fresh if wanted(s)]
                handler.wfile.write(("".join(chunks) or ":thump\n").encode())
                handler.wfile.flush()
        except OSError:
            pass  # the client went away
        finally:
            with self._changed:
                self._open -= 1
        return True

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
        with self._changed:
            self.statuses.append(status)
            self._changed.notify_all()
        return status

    def count(self, status: dict[str, Any], **counts: int) -> None:
        """New numbers for a status (favourites=, reblogs=, replies=): what a growth re-read finds."""
        with self._changed:
            for name, value in counts.items():
                if name == "followers":
                    status["account"]["followers_count"] = value
                else:
                    status[f"{name}_count"] = value

    def route(self, path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        path = path.rstrip("/")
        if path == "/api/v2/instance":
            public = {"local": "public", "remote": "public"}
            return 200, {"domain": self.domain, "version": "4.3.0", "title": "test",
                         "configuration": {"timelines_access": {"live_feeds": public, "hashtag_feeds": public,
                                                                "trending_link_feeds": public}}}
        if path == "/api/v1/instance":
            return 200, {"uri": self.domain, "version": "4.3.0", "title": "test"}
        if path == "/api/v1/statuses":
            wanted = query.get("id[]", [])
            return 200, [_public(s) for s in self.statuses if s["id"] in wanted]
        if path.startswith("/api/v1/statuses/"):
            found = [s for s in self.statuses if s["id"] == path.rsplit("/", 1)[1]]
            return (200, _public(found[0])) if found else (404, {"error": "Record not found"})
        if path == "/api/v1/timelines/public":
            local = query.get("local", ["false"])[0].lower() in ("true", "1")
            found = [s for s in self.statuses if s["_local"] or not local]
        elif path.startswith("/api/v1/timelines/tag/"):
            tag = path.rsplit("/", 1)[1].lower()
            found = [s for s in self.statuses if tag in (t["name"].lower() for t in s["tags"])]
        else:
            return 404, {"error": "Record not found"}
        return 200, [_public(s) for s in _page(found, query)]


def _plain(handler, status: int, body: bytes) -> bool:
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json" if body.startswith(b"{") else "text/plain")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)
    return True


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

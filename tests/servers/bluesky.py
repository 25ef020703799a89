"""Local servers speaking Bluesky's protocols: Jetstream (WebSocket) and the AppView's XRPC lookups.

``JetstreamServer`` serves ``/subscribe?wantedCollections=...&cursor=TIME_US``
over a real WebSocket on 127.0.0.1: every stored event from the cursor on,
oldest first, then nothing (a quiet stream) until the client hangs up. It can
refuse the next handshakes with an HTTP status (a 429 with Retry-After).
``AppViewServer`` answers ``app.bsky.feed.getPosts`` and
``app.bsky.actor.getProfiles`` from what the test put in.
"""

from __future__ import annotations

import json
import threading
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Response
from websockets.sync.server import serve

from tests.servers.json_api import JsonApiServer

POST = "app.bsky.feed.post"


class JetstreamServer:
    def __init__(self):
        self.events: list[dict[str, Any]] = []
        self.cursors: list[int | None] = []  # the cursor of every connection, in order
        self.close_after: int | None = None  # hang up after this many events (Jetstream drops slow readers)
        self._refusals: list[tuple[int, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._server = serve(self._handle, "127.0.0.1", 0, process_request=self._process_request)
        self.url = f"ws://127.0.0.1:{self._server.socket.getsockname()[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def add_post(self, *, did: str, rkey: str, text: str, time_us: int, reply: bool = False,
                 link: str | None = None) -> str:
        record: dict[str, Any] = {"$type": POST, "text": text, "langs": ["en"],
                                  "createdAt": _iso(time_us)}
        if reply:
            record["reply"] = {"parent": {"uri": f"at://{did}/{POST}/parent"}, "root": {"uri": f"at://{did}/{POST}/root"}}
        if link:
            record["embed"] = {"$type": "app.bsky.embed.external", "external": {"uri": link, "title": "", "description": ""}}
        self.events.append({"did": did, "time_us": time_us, "kind": "commit",
                            "commit": {"rev": rkey, "operation": "create", "collection": POST, "rkey": rkey,
                                       "record": record, "cid": f"cid-{rkey}"}})
        return f"at://{did}/{POST}/{rkey}"

    def add_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def refuse_next(self, status: int, *, retry_after: float | None = None) -> None:
        headers = {"Retry-After": f"{retry_after:.0f}"} if retry_after is not None else {}
        with self._lock:
            self._refusals.append((status, headers))

    def _process_request(self, connection, request):
        with self._lock:
            refusal = self._refusals.pop(0) if self._refusals else None
        if refusal is None:
            return None
        status, headers = refusal
        return Response(status, "Refused", Headers({**headers, "Content-Length": "0"}), b"")

    def _handle(self, ws) -> None:
        query = parse_qs(urlsplit(ws.request.path).query)
        cursor = int(query["cursor"][0]) if "cursor" in query else None
        with self._lock:
            self.cursors.append(cursor)
            events = sorted((e for e in self.events if cursor is None or e["time_us"] >= cursor),
                            key=lambda e: e["time_us"])
        for sent, event in enumerate(events):
            if sent == self.close_after:
                ws.close()
                return
            ws.send(json.dumps(event))
        try:
            for _ in ws:  # quiet until the client hangs up
                pass
        except Exception:  # noqa: BLE001 - a client going away is how every connection ends
            pass

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()


def _iso(time_us: int) -> str:
    from datetime import datetime, timezone
    return datetime.fromtimestamp(time_us / 1e6, timezone.utc).isoformat().replace("+00:00", "Z")


class AppViewServer(JsonApiServer):
    def __init__(self):
        super().__init__()
        self.posts: dict[str, dict[str, Any]] = {}  # uri -> post view
        self.profiles: dict[str, dict[str, Any]] = {}  # did -> profile view

    def add_view(self, uri: str, *, text: str, likes: int = 0, reposts: int = 0, quotes: int = 0,
                 replies: int = 0) -> None:
        self.posts[uri] = {"uri": uri, "record": {"$type": POST, "text": text, "createdAt": "2026-01-01T00:00:00Z"},
                           "likeCount": likes, "repostCount": reposts, "quoteCount": quotes, "replyCount": replies}

    def add_profile(self, did: str, *, handle: str, followers: int) -> None:
        self.profiles[did] = {"did": did, "handle": handle, "followersCount": followers}

    def route(self, path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        if path == "/xrpc/app.bsky.feed.getPosts":
            return 200, {"posts": [self.posts[u] for u in query.get("uris", []) if u in self.posts]}
        if path == "/xrpc/app.bsky.actor.getProfiles":
            return 200, {"profiles": [self.profiles[d] for d in query.get("actors", []) if d in self.profiles]}
        return 404, {"error": "MethodNotImplemented"}

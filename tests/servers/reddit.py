"""A Reddit-compatible HTTP server on 127.0.0.1 that praw talks to for real.

praw is pointed at it with ``oauth_url``/``reddit_url``. It speaks the parts
of Reddit's API the adapter uses, in Reddit's JSON shapes: the client
credentials token endpoint, subreddit and multireddit listings (new posts,
new comments) with ``after`` paging, search, ``/api/info`` and subreddit
``about``. Tests can make it fail (429 with Retry-After, 5xx, slow answers),
expire tokens, and change posts' numbers between polls.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from urllib.parse import parse_qs, urlsplit

from tests.servers.http import LocalHttpServer, QuietHandler
from tests.servers.site_stream import SyntheticStream


class ManualClock:
    """A clock for ``RedditSource(clock=...)`` that moves only when told, so waits and re-read
    schedules are driven without sleeping."""

    def __init__(self):
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RawJson:
    """JSON text a thing's field is sent as, exactly: e.g. nested deeper than Python's json encodes."""

    def __init__(self, text: str):
        self.text = text


def _dumps(payload: dict) -> str:
    raws: list[str] = []

    def placeholder(value):
        if not isinstance(value, RawJson):
            raise TypeError(f"not JSON serialisable: {value!r}")
        raws.append(value.text)
        return f"\0raw{len(raws) - 1}\0"
    body = json.dumps(payload, default=placeholder)
    for i, text in enumerate(raws):
        body = body.replace(json.dumps(f"\0raw{i}\0"), text)
    return body


class RedditServer(LocalHttpServer):
    def __init__(self, *, token_lifetime: int = 3600, client_id: str = "test-id",
                 client_secret: str = "test-secret", page_size_limit: int = 100):
        self.token_lifetime = token_lifetime
        self.client_id = client_id
        self.client_secret = client_secret
        self.page_size_limit = page_size_limit
        self.requests: list[tuple[str, str]] = []
        self.subreddits: dict[str, dict] = {}
        self.things: dict[str, dict] = {}  # fullname -> {"kind": ..., "data": ...}
        self._order: list[str] = []  # insertion order, tie-breaker for equal times
        self._tokens: set[str] = set()
        self._failures: list[dict] = []
        self.streams: dict[str, SyntheticStream] = {}  # "t1"/"t3" -> the site-wide stream r/all serves
        # What every answer says in its X-Ratelimit-* headers.
        self.ratelimit = {"remaining": "995.0", "used": "5", "reset": "300"}
        self._lock = threading.RLock()
        self._serve(self._handler())

    # -- content --------------------------------------------------------

    def add_subreddit(self, name: str, *, subscribers: int = 1000) -> None:
        with self._lock:
            self.subreddits[name.lower()] = {"display_name": name, "subscribers": subscribers,
                                             "name": f"t5_{name.lower()}", "id": name.lower()}

    def _sub(self, name: str) -> dict:
        if name.lower() not in self.subreddits:
            self.add_subreddit(name)
        return self.subreddits[name.lower()]

    def add_post(self, *, subreddit: str, id: str, title: str, selftext: str = "", author: str = "someone",
                 created_utc: float | None = None, score: int = 1, num_comments: int = 0,
                 upvote_ratio: float = 1.0, url: str | None = None, over_18: bool = False,
                 removed: bool = False, deleted: bool = False, crosspost_parent: str | None = None,
                 total_awards_received: int = 0, quarantine: bool = False, edited: float | bool = False) -> dict:
        sub = self._sub(subreddit)
        permalink = f"/r/{sub['display_name']}/comments/{id}/post/"
        data = {
            "id": id, "name": f"t3_{id}", "title": title,
            "selftext": "[removed]" if removed else ("[deleted]" if deleted else selftext),
            "author": "[deleted]" if deleted else author, "subreddit": sub["display_name"],
            "subreddit_name_prefixed": f"r/{sub['display_name']}", "subreddit_id": sub["name"],
            "created_utc": float(created_utc if created_utc is not None else time.time()),
            "score": score, "ups": score, "upvote_ratio": upvote_ratio, "num_comments": num_comments,
            "permalink": permalink, "url": url or f"https://www.reddit.com{permalink}", "is_self": url is None,
            "over_18": over_18, "quarantine": quarantine, "total_awards_received": total_awards_received,
            "edited": edited, "subreddit_subscribers": sub["subscribers"], "stickied": False, "locked": False,
        }
        if removed:
            data["removed_by_category"] = "moderator"
        if crosspost_parent:
            data["crosspost_parent"] = crosspost_parent
            parent = self.things.get(crosspost_parent)
            data["crosspost_parent_list"] = [parent["data"]] if parent else []
        self._add("t3", data)
        return data

    def add_comment(self, *, subreddit: str, id: str, link_id: str, body: str, author: str = "someone",
                    created_utc: float | None = None, score: int = 1, removed: bool = False) -> dict:
        sub = self._sub(subreddit)
        link = link_id if link_id.startswith("t3_") else f"t3_{link_id}"
        parent = self.things.get(link, {}).get("data", {})
        data = {
            "id": id, "name": f"t1_{id}", "body": "[removed]" if removed else body,
            "author": "[deleted]" if removed else author, "subreddit": sub["display_name"],
            "subreddit_id": sub["name"], "link_id": link, "parent_id": link,
            "created_utc": float(created_utc if created_utc is not None else time.time()), "score": score,
            "permalink": f"/r/{sub['display_name']}/comments/{link[3:]}/post/{id}/",
            "link_title": parent.get("title", ""), "link_permalink": parent.get("url", ""),
            "edited": False, "replies": "",
        }
        self._add("t1", data)
        return data

    def add_stream(self, stream: SyntheticStream) -> None:
        """Serve ``stream`` as r/all/new (posts) or r/all/comments (comments), and through /api/info."""
        with self._lock:
            self.streams[stream.kind] = stream

    def add_raw(self, kind: str, data: dict) -> None:
        """A thing exactly as given, e.g. one missing fields real Reddit always sends."""
        self._add(kind, data)

    def _add(self, kind: str, data: dict) -> None:
        with self._lock:
            if data["name"] not in self.things:
                self._order.append(data["name"])
            self.things[data["name"]] = {"kind": kind, "data": data}

    def update_post(self, id: str, **fields) -> None:
        with self._lock:
            data = self.things[id if id.startswith("t3_") else f"t3_{id}"]["data"]
            data.update(fields)
            if "score" in fields:
                data["ups"] = fields["score"]

    def remove(self, fullname: str) -> None:
        with self._lock:
            self.things.pop(fullname, None)
            self._order.remove(fullname)

    # -- faults ---------------------------------------------------------

    def fail_next(self, path_prefix: str, *, status: int, count: int = 1, headers: dict | None = None,
                  delay: float = 0) -> None:
        with self._lock:
            self._failures.append({"prefix": path_prefix, "status": status, "count": count,
                                   "headers": headers or {}, "delay": delay})

    def slow_next(self, path_prefix: str, *, delay: float, count: int = 1) -> None:
        """Answer the next ``count`` matching requests normally, but only after ``delay`` seconds."""
        with self._lock:
            self._failures.append({"prefix": path_prefix, "status": None, "count": count, "headers": {},
                                   "delay": delay})

    def expire_tokens(self) -> None:
        with self._lock:
            self._tokens.clear()

    def count(self, path_prefix: str = "") -> int:
        with self._lock:
            return sum(1 for _, path in self.requests if path.startswith(path_prefix))

    # -- API ------------------------------------------------------------

    def _listing(self, items: list[dict], query: dict) -> dict:
        limit = min(int(query.get("limit", ["25"])[0]), self.page_size_limit)
        after = query.get("after", [None])[0]
        before = query.get("before", [None])[0]
        names = [t["data"]["name"] for t in items]
        start = 0
        if after:
            start = names.index(after) + 1 if after in names else len(names)
        if before:
            end = names.index(before) if before in names else 0
            page = items[max(0, end - limit):end]
        else:
            page = items[start:start + limit]
        more = bool(page) and items.index(page[-1]) + 1 < len(items)
        return {"kind": "Listing", "data": {
            "after": page[-1]["data"]["name"] if more else None, "before": None, "dist": len(page),
            "modhash": None, "geo_filter": "",
            "children": [{"kind": t["kind"], "data": dict(t["data"])} for t in page]}}

    def _newest(self, kind: str, subs: set[str] | None, match=None) -> list[dict]:
        with self._lock:
            order = {name: i for i, name in enumerate(self._order)}
            items = [t for t in self.things.values() if t["kind"] == kind
                     and (subs is None or t["data"]["subreddit"].lower() in subs)
                     and (match is None or match(t))]
        return sorted(items, key=lambda t: (t["data"]["created_utc"], order[t["data"]["name"]]), reverse=True)

    def _route(self, method: str, path: str, query: dict, form: dict) -> tuple[int, dict]:
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["r"] and len(parts) >= 3:
            subs = {s.lower() for s in parts[1].split("+")}
            what = parts[2]
            stream = self.streams.get({"new": "t3", "comments": "t1"}.get(what, "")) if subs == {"all"} else None
            if stream is not None:
                limit = min(int(query.get("limit", ["25"])[0]), self.page_size_limit)
                return 200, {"kind": "Listing", "data": {"after": None, "before": None,
                                                        "children": stream.listing(limit)}}
            if what == "new":
                return 200, self._listing(self._newest("t3", subs), query)
            if what == "comments":
                return 200, self._listing(self._newest("t1", subs), query)
            if what == "about" and len(subs) == 1:
                sub = self.subreddits.get(next(iter(subs)))
                if sub is None:
                    return 404, {"message": "Not Found", "error": 404}
                return 200, {"kind": "t5", "data": dict(sub)}
            if what == "search":
                scope = None if parts[1].lower() == "all" or query.get("restrict_sr", ["0"])[0] in ("0", "false", "") else subs
                return 200, self._search(scope, query)
        if parts == ["search"]:
            return 200, self._search(None, query)
        if parts == ["api", "info"]:
            ids = [i for i in query.get("id", [""])[0].split(",") if i][:100]
            names = [n.lower() for n in query.get("sr_name", [""])[0].split(",") if n][:100]
            with self._lock:
                found = [self.things[i] for i in ids if i in self.things]
                for stream in self.streams.values():
                    found += stream.info(ids)
                found += [{"kind": "t5", "data": self.subreddits[n]} for n in names if n in self.subreddits]
            return 200, {"kind": "Listing", "data": {"after": None, "before": None, "dist": len(found),
                                                    "children": [{"kind": t["kind"], "data": dict(t["data"])}
                                                                 for t in found]}}
        return 404, {"message": "Not Found", "error": 404}

    def _search(self, subs: set[str] | None, query: dict) -> dict:
        q = query.get("q", [""])[0]
        alternatives = [a.strip().strip('"').lower() for a in q.split(" OR ") if a.strip()]
        kind = "t1" if query.get("type", ["link"])[0] == "comment" else "t3"

        def matches(thing):
            d = thing["data"]
            haystack = (d.get("title", "") + " " + d.get("selftext", "") + " " + d.get("body", "")).lower()
            return any(a in haystack for a in alternatives)
        return self._listing(self._newest(kind, subs, matches), query)

    def _handler(self):
        server = self

        class Handler(QuietHandler):
            def _reply(self, status: int, payload: dict, headers: dict | None = None):
                body = _dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json; charset=UTF-8")
                    self.send_header("Content-Length", str(len(body)))
                    for name, value in server.ratelimit.items():
                        self.send_header(f"x-ratelimit-{name}", value)
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    if self.close_connection:
                        # The client asked to close (prawcore's token request does): say so, or it
                        # reuses the dead connection and its next request fails.
                        self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _handle(self, method: str):
                split = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode() if length else ""
                with server._lock:
                    server.requests.append((method, self.path))
                    failure = next((f for f in server._failures if split.path.startswith(f["prefix"])
                                    and f["count"] > 0), None)
                    if failure:
                        failure["count"] -= 1
                if failure:
                    if failure["delay"]:
                        time.sleep(failure["delay"])
                    if failure["status"] is None:
                        failure = None  # slow, then the normal answer
                if failure:
                    return self._reply(failure["status"], {"message": "failure", "error": failure["status"]},
                                       failure["headers"])
                if split.path == "/api/v1/access_token":
                    return self._token(parse_qs(raw))
                auth = self.headers.get("Authorization", "")
                token = auth.split(" ", 1)[1] if " " in auth else ""
                with server._lock:
                    valid = token in server._tokens
                if not valid:
                    return self._reply(401, {"message": "Unauthorized", "error": 401},
                                       {"www-authenticate": 'Bearer realm="reddit", error="invalid_token"'})
                status, payload = server._route(method, split.path.rstrip("/").removesuffix(".json"),
                                                parse_qs(split.query), parse_qs(raw))
                self._reply(status, payload)

            def _token(self, form: dict):
                expected = base64.b64encode(f"{server.client_id}:{server.client_secret}".encode()).decode()
                if self.headers.get("Authorization", "") != f"Basic {expected}":
                    return self._reply(401, {"message": "Unauthorized", "error": 401})
                if form.get("grant_type", [""])[0] != "client_credentials":
                    return self._reply(200, {"error": "unsupported_grant_type"})
                token = secrets.token_hex(8)
                with server._lock:
                    server._tokens.add(token)
                self._reply(200, {"access_token": token, "token_type": "bearer",
                                  "expires_in": server.token_lifetime, "scope": "*"})

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

        return Handler

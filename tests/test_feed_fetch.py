"""Fetching one feed (``sources.feed_fetch.fetch``) against the local feed server, with httpx as the oracle.

``fetch`` keeps each feed's request and sends it again while the feed's validators stay the same (a quiet
cycle asks every feed again with the same ETag). What the server receives must stay what httpx's own
``client.stream("GET", ...)`` sends with the same history: the conditional headers, the credentials of the
URL, and any cookie a host set (the feeds' ``FeedClient`` hands httpx's cookie jar only the answers that set
one).
"""

from __future__ import annotations

import httpx

from sources.feed_fetch import FeedClient, conditional_headers, fetch
from tests.servers.feeds import rss


def plain_fetch(client: httpx.Client, url: str, *, headers: dict[str, str]) -> tuple[int, httpx.Headers]:
    with client.stream("GET", url, headers=headers, follow_redirects=True) as response:
        response.read()
        return response.status_code, response.headers


def make_client(kind: type[httpx.Client] = FeedClient) -> httpx.Client:
    return kind(timeout=httpx.Timeout(10), follow_redirects=True, headers={"User-Agent": "cm-test/1"})


def asked(feeds, path: str, ask) -> tuple[int, dict[str, str]]:
    """What ``ask()`` answered, and the headers of the one request the server saw for it."""
    before = len(feeds.requests)
    status = ask()
    seen = [headers for p, headers in feeds.requests[before:] if p == path]
    assert len(seen) == 1, seen
    return status, seen[0]


def test_a_feed_asked_again_is_asked_as_httpx_itself_asks_it(feeds):
    path = "/quiet.xml"
    url = feeds.serve(path, rss([{"title": "Acme kettle broke", "link": "https://x.example/1", "guid": "1"}]))
    ours, theirs = make_client(FeedClient), make_client(httpx.Client)
    validators = {"ours": (None, None), "theirs": (None, None)}

    def ours_ask():
        fetched = fetch(ours, url, headers=conditional_headers(*validators["ours"]), max_bytes=10**6, deadline=10)
        validators["ours"] = (fetched.headers.get("etag"), fetched.headers.get("last-modified"))
        return fetched.status

    def theirs_ask():
        status, headers = plain_fetch(theirs, url, headers=conditional_headers(*validators["theirs"]))
        validators["theirs"] = (headers.get("etag"), headers.get("last-modified"))
        return status

    def both():
        return asked(feeds, path, ours_ask), asked(feeds, path, theirs_ask)

    try:
        steps = [both()]  # the first ask: no validators yet
        steps += [both(), both()]  # asked again with the same validators: the kept request
        # The host starts setting a cookie: from the next ask on, both send it back.
        feeds.resources[path].headers["Set-Cookie"] = "visit=1; Path=/"
        steps += [both(), both()]
        # The feed changes: new validators, a new request.
        feeds.serve(path, rss([{"title": "Acme kettle broke again", "link": "https://x.example/2", "guid": "2"}]),
                    headers={"Set-Cookie": "visit=2; Path=/"})
        steps += [both(), both()]
    finally:
        ours.close()
        theirs.close()

    for (our_status, our_headers), (their_status, their_headers) in steps:
        assert our_status == their_status and our_headers == their_headers
    statuses = [ours_ for (ours_, _), _ in steps]
    assert statuses == [200, 304, 304, 304, 304, 200, 304]
    sent = [headers for (_, headers), _ in steps]
    assert "If-None-Match" not in sent[0] and sent[1]["If-None-Match"] == sent[2]["If-None-Match"]
    assert "Cookie" not in sent[3] and sent[4]["Cookie"] == "visit=1"  # set by the answer to the fourth ask
    assert sent[6]["If-None-Match"] != sent[2]["If-None-Match"] and sent[6]["Cookie"] == "visit=2"


def test_a_private_feed_asked_again_still_sends_the_credentials_of_its_url(feeds):
    url = feeds.serve("/private.xml", rss([{"title": "Acme", "link": "https://x.example/1", "guid": "1"}]),
                      basic_auth=("ann", "s3cret"))
    private = url.replace("http://", "http://ann:s3cret@")
    client = make_client()
    try:
        first = fetch(client, private, headers={}, max_bytes=10**6, deadline=10)
        again = [fetch(client, private, headers=conditional_headers(first.headers.get("etag"), None),
                       max_bytes=10**6, deadline=10) for _ in range(2)]
    finally:
        client.close()
    assert first.status == 200 and [f.status for f in again] == [304, 304]
    assert feeds.statuses("/private.xml") == [200, 304, 304], "never asked without its credentials"

"""Credentials in a feed's URL stay in the config: never in the store, an export, an email or a log line."""

from __future__ import annotations

import email
import sqlite3
import subprocess
import sys

from monitor.links import canonical_url, public_url, with_credentials_of
from monitor.logs import Redactor
from monitor.mention import Mention
from monitor.stories import normalise_url
from tests.conftest import ROOT
from tests.servers.feeds import recent, rss
from tests.test_rss import monitor_feeds  # noqa: F401 - the RSS source and pipeline fixture, shared

PASSWORD, TOKEN = "Pw-s3cret-91", "Tk-feedtoken-77"


def cli(config, *args):
    return subprocess.run([sys.executable, "-m", "monitor.cli", "--config", str(config), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def private_feed(feeds, path: str, **kwargs) -> str:
    """A private feed (Basic auth and a ?token=) whose entry and text link relatively; its configured URL."""
    body = rss([{"title": "Acme lost my parcel", "link": "/posts/1", "guid": "p1", "pubDate": recent(),
                 "description": '<p>Acme never answers, see <a href="/proof">proof</a>. I want a refund.</p>'}])
    served = feeds.serve(f"{path}?q=acme&token={TOKEN}", body, basic_auth=("reader", PASSWORD), **kwargs)
    return served.replace("http://", f"http://reader:{PASSWORD}@")


def test_feed_credentials_reach_no_stored_url_no_export_and_no_email(feeds, write_config, tmp_path):
    url = private_feed(feeds, "/private.xml")
    config = write_config({"sources": {"rss": {"feeds": [{"url": url, "name": "Private"}]}}})

    ran = cli(config, "once")
    assert ran.returncode == 0, ran.stderr
    assert "0 source errors" in ran.stdout, ran.stdout + ran.stderr
    exported = tmp_path / "mentions.jsonl"
    assert cli(config, "export", "--format", "jsonl", "--out", str(exported)).returncode == 0

    db = sqlite3.connect(tmp_path / "store.db")
    dump = "\n".join(db.iterdump())
    db.close()
    emails = [email.message_from_bytes(p.read_bytes()) for p in (tmp_path / "outbox").glob("*.eml")]
    assert emails
    texts = [part.get_payload(decode=True).decode() for m in emails for part in m.walk()
             if not part.is_multipart()]
    for where, text in [("store", dump), ("export", exported.read_text()), ("log", ran.stderr), *(
            ("email", t) for t in texts)]:
        assert PASSWORD not in text and TOKEN not in text, where
    # The links still lead there, without the credentials.
    assert f"{feeds.url}/posts/1" in texts[0] and f"{feeds.url}/proof" in texts[0]
    assert f"feed:{feeds.url}/private.xml?q=acme" in dump


def test_a_private_feed_that_moved_is_asked_with_its_credentials_though_the_store_has_none(feeds, monitor_feeds):
    moved = private_feed(feeds, "/moved.xml")
    url = private_feed(feeds, "/private.xml", status=301,
                       headers={"Location": f"/moved.xml?q=acme&token={TOKEN}"})
    harness = monitor_feeds([{"url": url, "interval": 0.001}])

    first, _ = harness.cycle()
    second, _ = harness.cycle()

    assert first.failed == {} and second.failed == {}
    state = harness.store.source_state("rss")[f"feed:{public_url(url)}"]
    assert state["current_url"] == public_url(moved) == f"{feeds.url}/moved.xml?q=acme"
    assert feeds.statuses(f"/moved.xml?q=acme&token={TOKEN}")[-1] in (200, 304)


def test_public_url_and_credentials_put_back_on_the_same_host_only():
    assert public_url("https://u:p@h.example/feed?token=t&q=1&api_key=k#x") == "https://h.example/feed?q=1#x"
    assert public_url("https://h.example/feed?q=1&b=%20") == "https://h.example/feed?q=1&b=%20"  # untouched
    assert canonical_url("https://u:p@h.example/a/?sig=s&utm_source=x") == "https://h.example/a"
    # Stories key links with the same normaliser, looser: no scheme, no www., and no credentials either.
    assert normalise_url("http://u:p@www.h.example/a/?token=t&id=2") == "h.example/a?id=2"
    # Whatever adapter makes a mention, its link carries no credentials.
    assert Mention(source="any", source_id="1", url="https://u:p@h.example/x?token=t&id=1", title="",
                   text="").url == "https://h.example/x?id=1"
    configured = "https://u:p@h.example/feed?token=t"
    assert with_credentials_of("https://h.example/new?q=1", configured) == "https://u:p@h.example/new?q=1&token=t"
    assert with_credentials_of("https://elsewhere.example/new", configured) == "https://elsewhere.example/new"


def test_a_short_secret_is_redacted_as_a_whole_token_only():
    redact = Redactor(["test"])
    assert redact("the latest testing run: password test, token=test") == \
        "the latest testing run: password ***, token=***"

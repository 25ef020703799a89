"""The Mastodon source through Mastodon.py against local servers speaking Mastodon's REST API."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from monitor.store import Store
from sources.mastodon import PAGE_SIZE, MastodonSettings, MastodonSource, mastodon_client
from tests.servers.mastodon import MastodonServer
from tests.servers.reddit import ManualClock
from tests.source_harness import runner  # noqa: F401 - the fixture

COMPLAINT = "<p>@acmesupport charged me twice and still no refund. <a href=\"https://acme.test/x\">#acme</a></p>"


@pytest.fixture
def setup(runner):
    """setup(clock, instances, **settings) -> run(); each call builds a new source and store: a restart."""

    def make(clock: ManualClock, instances: list[dict], **overrides):
        settings = MastodonSettings(instances=instances, timeout=5, **overrides)
        return runner("mastodon", lambda terms: MastodonSource(
            settings=settings, clock=clock, clients={i.url: mastodon_client(i, settings) for i in settings.instances}))

    return make


def stored(store: Store) -> list[tuple]:
    return sorted((r["source_id"], r["kind"], r["author"], r["place"], r["score"], r["comments"], r["reach"])
                  for r in store.query("SELECT * FROM mentions"))


def test_timelines_of_several_instances_are_read_forward_and_resume_after_a_restart(setup):
    clock = ManualClock()
    with MastodonServer(domain="one.test") as one, MastodonServer(domain="two.test") as two:
        a = one.add_status(COMPLAINT, acct="bob", favourites=3, reblogs=2, replies=1, followers=250)
        one.add_status("<p>Lovely weather today</p>")
        remote = one.add_status("<p>Acme lost my parcel again</p>", acct="carol", local=False, followers=40)
        # The same post as the second instance knows it: one mention, by its ActivityPub uri.
        two.add_status("<p>Acme lost my parcel again #acme</p>", acct="carol", uri=remote["uri"], tags=["acme"],
                       followers=40)
        t = two.add_status("<p>Is Acme down for everyone?</p>", acct="dan", tags=["acme"], followers=5)
        instances = [{"url": one.url, "timelines": ["public"]}, {"url": two.url, "timelines": [], "hashtags": ["#acme"]}]
        poll = setup(clock, instances)()
        assert not poll.failed and poll.succeeded == [f"instance:{one.url[7:]}", f"instance:{two.url[7:]}"]
        assert poll.state[f"timeline:{one.url[7:]}/public"] == {"since_id": remote["id"]}
        assert poll.state[f"timeline:{two.url[7:]}/tag/acme"] == {"since_id": t["id"]}

        # More than a page arrives while the monitor is down; a restart reads it all, from the cursor on.
        for i in range(PAGE_SIZE + 5):
            one.add_status(f"<p>Acme problem {i}</p>", acct="eve")
        later = one.add_status("<p>Acme replied, thanks</p>", acct="bob", reply_to=a["id"], favourites=1)
        one.requests.clear()
        run = setup(clock, instances)
        poll = run()
        assert len(poll.mentions) == PAGE_SIZE + 6
        timeline_requests = [q for p, q in one.requests if p == "/api/v1/timelines/public"]
        assert [q["min_id"] for q in timeline_requests][0] == [remote["id"]]
        assert len(timeline_requests) == 2
        rows = stored(run.store)
        host_one, host_two = one.url[7:], two.url[7:]
        assert len(rows) == 3 + PAGE_SIZE + 6  # the parcel post once, though both instances showed it
        assert (a["uri"], "post", "bob@one.test", f"{host_one} public", 5, 1, 250.0) in rows
        assert (remote["uri"], "post", "carol@remote.test", f"{host_one} public", 0, 0, 40.0) in rows
        assert (t["uri"], "post", "dan@two.test", f"{host_two} #acme", 0, 0, 5.0) in rows
        assert (later["uri"], "comment", "bob@one.test", f"{host_one} public", 1, 0, 10.0) in rows
        assert not [r for r in rows if "weather" in r[0]]
        text = run.store.find_mention("mastodon", a["uri"]).text
        assert text == "@acmesupport charged me twice and still no refund. [#acme](https://acme.test/x)"


def test_429_waits_until_the_rate_limit_resets_and_other_instances_go_on(setup):
    clock = ManualClock()
    with MastodonServer(domain="one.test") as one, MastodonServer(domain="two.test") as two:
        one.add_status("<p>Acme broke my espresso machine</p>")
        two.add_status("<p>Acme support is great</p>")
        run = setup(clock, [{"url": one.url}, {"url": two.url}])
        reset = datetime.now(timezone.utc) + timedelta(seconds=300)
        one.fail_next(429, times=3, headers={"X-RateLimit-Reset": reset.isoformat(),
                                             "X-RateLimit-Remaining": "0", "Date": format_datetime(
                                                 datetime.now(timezone.utc), usegmt=True)})
        poll = run()
        assert "429" in poll.failed[f"instance:{one.url[7:]}"]
        assert [m.extra["instance"] for m in poll.mentions] == [two.url[7:]]
        clock.advance(120)
        asked = len(one.requests)
        assert "waiting until" in run().failed[f"instance:{one.url[7:]}"] and len(one.requests) == asked
        clock.advance(200)
        one.requests.clear()
        one._faults.clear()
        poll = run()
        assert not poll.failed
        assert len(run.store.query("SELECT id FROM mentions")) == 2


def test_server_errors_and_timeouts_back_off(setup):
    clock = ManualClock()
    with MastodonServer() as one:
        one.add_status("<p>Acme broke my espresso machine</p>")
        run = setup(clock, [{"url": one.url}], interval=60)
        one.fail_next(503, times=2)
        failed = run().failed[f"instance:{one.url[7:]}"]
        assert "503" in failed
        clock.advance(60)
        poll = run()
        assert not poll.failed and len(poll.mentions) == 1


def test_a_boost_is_the_post_it_boosts(setup):
    clock = ManualClock()
    with MastodonServer() as one:
        original = one.add_status("<p>Acme refunded nobody</p>", acct="carol", local=False, favourites=7, reblogs=3,
                                  followers=900)
        one.statuses.remove(original)  # known here only through the boost
        boost = one.add_status("", acct="bob", reblog_of={k: v for k, v in original.items() if k != "_local"})
        poll = setup(clock, [{"url": one.url}])()
        assert [(m.source_id, m.author, m.engagement.score, m.reach, m.extra["reblogs"]) for m in poll.mentions] == [
            (original["uri"], "carol@remote.test", 10, 900.0, 3)]
        assert poll.state[f"timeline:{one.url[7:]}/public"] == {"since_id": boost["id"]}

"""The Mastodon source through Mastodon.py against local servers speaking Mastodon's REST API."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from monitor.source import StatusView
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
        # Polling unless a test streams (stream=True); growth re-reads only where a test tracks them.
        settings = MastodonSettings(**{"instances": instances, "timeout": 5, "stream": False, "track_hours": 0,
                                       **overrides})
        return runner("mastodon", lambda terms: MastodonSource(
            settings=settings, clock=clock, search_terms=terms,
            clients={i.url: mastodon_client(i, settings) for i in settings.instances}))

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


def _until(condition, seconds: float = 10.0):
    """Statuses reach a stream's listener in Mastodon.py's own thread: wait (briefly) for what the test expects."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_a_streaming_instance_is_read_from_its_streams_and_a_broken_stream_is_made_up_for(setup, monkeypatch):
    monkeypatch.setattr("sources.mastodon_stream.RECONNECT_WAIT", 0.5)
    clock = ManualClock()
    with MastodonServer() as one:
        host = one.url[7:]
        before = one.add_status("<p>Acme lost my bag</p>", acct="bob")
        run = setup(clock, [{"url": one.url, "hashtags": ["acme"]}], stream=True)
        first = run()  # starts the streams, then reads what came before them from the timelines
        assert not first.failed and [m.source_id for m in first.mentions] == [before["uri"]]
        assert sorted(one.stream_requests) == ["/api/v1/streaming/hashtag?tag=acme", "/api/v1/streaming/public"]
        assert run.store.source_state("mastodon")[f"instance:{host}"]["mode"] == "streaming"

        one.requests.clear()
        streamed = one.add_status("<p>Acme refund still missing</p>", acct="carol", tags=["acme"], reblogs=2)
        quiet = one.add_status("<p>Nice weather</p>", acct="dan")
        # Both streams carry the complaint (public and #acme), the public one the weather too.
        _until(lambda: run.source._streams[host].received >= 3)
        poll = run()
        # From the streams alone: no timeline was asked, and the status two streams carried is one mention.
        assert [p for p, _ in one.requests if p.startswith("/api/v1/timelines")] == []
        assert sorted(m.source_id for m in poll.mentions) == sorted([streamed["uri"], quiet["uri"]])
        assert stored(run.store) == sorted([
            (before["uri"], "post", f"bob@{one.domain}", f"{host} public", 0, 0, 10.0),
            (streamed["uri"], "post", f"carol@{one.domain}", f"{host} public", 2, 0, 10.0)])
        state = run.store.source_state("mastodon")
        assert state[f"timeline:{host}/public"] == {"since_id": quiet["id"]}
        assert state[f"timeline:{host}/tag/acme"] == {"since_id": streamed["id"]}

        # The streams break, and the server refuses them for a while: what is posted then reaches no stream, and
        # the next poll reads it from the timelines' cursors.
        stream = run.source._streams[host]
        one.streaming = 503
        one.drop_streams()
        _until(lambda: not stream.receiving())  # Mastodon.py saw the end, and fails to connect again
        missed = one.add_status("<p>Acme charged me twice</p>", acct="erin")
        one.requests.clear()
        poll = run()
        assert [m.source_id for m in poll.mentions] == [missed["uri"]]
        assert [q["min_id"] for p, q in one.requests if p == "/api/v1/timelines/public"] == [[quiet["id"]]]
        one.streaming = 200
        _until(stream.receiving)
        run()  # reads the timelines once more (the break may have cost more), then trusts the streams again
        one.requests.clear()
        after = one.add_status("<p>Acme answered at last</p>", acct="erin")
        _until(lambda: run() and after["uri"] in {r[0] for r in stored(run.store)})
        assert [p for p, _ in one.requests if p.startswith("/api/v1/timelines")] == []
        assert sorted(r["source_id"] for r in run.store.query("SELECT source_id FROM mentions")) == sorted(
            s["uri"] for s in (before, streamed, missed, after))
        report = MastodonSource.status_section(StatusView("mastodon", run.store.source_state("mastodon"), clock.now))
        assert report.data["instances"][host]["mode"] == "streaming"
        assert report.data["instances"][host]["stream_breaks"] >= 2  # one per timeline stream
        run.source.close()


def test_an_instance_that_refuses_the_stream_is_polled_and_asked_again_later_even_after_a_restart(setup):
    clock = ManualClock()
    with MastodonServer() as one:
        host = one.url[7:]
        one.streaming = 401  # public streams kept for logged-in users
        a = one.add_status("<p>Acme lost my bag</p>", acct="bob")
        poll = setup(clock, [{"url": one.url}], stream=True, timeout=1, stream_retry=600)()
        assert not poll.failed and [m.source_id for m in poll.mentions] == [a["uri"]]
        run = setup(clock, [{"url": one.url}], stream=True, timeout=1, stream_retry=600)  # a restart
        info = run.store.source_state("mastodon")[f"instance:{host}"]
        assert (info["mode"], info["retry_at"]) == ("polling", clock.now + 600) and "not accepted" in info["refused"]
        asked = len(one.stream_requests)
        b = one.add_status("<p>Acme lost it again</p>", acct="bob")
        clock.advance(300)
        assert [m.source_id for m in run().mentions] == [b["uri"]]
        assert len(one.stream_requests) == asked  # not asked again before retry_at, though the process is new
        one.streaming = 200
        clock.advance(301)
        run()
        assert run.store.source_state("mastodon")[f"instance:{host}"]["mode"] == "streaming"
        lines = MastodonSource.status_section(StatusView("mastodon", run.store.source_state("mastodon"),
                                                         clock.now)).lines
        assert lines[0].startswith(f"  instance {host}: ok; streaming (0 breaks") and "cursors public since" in lines[0]
        run.source.close()


def test_growth_re_reads_store_snapshots_and_the_schedule_survives_a_restart(setup):
    clock = ManualClock()
    with MastodonServer() as one:
        host = one.url[7:]
        toot = one.add_status("<p>Acme double charged me, no refund</p>", acct="bob", favourites=1, followers=50,
                              created=clock.now - 60)
        one.add_status("<p>Nice weather</p>", acct="dan")
        run = setup(clock, [{"url": one.url}], track_hours=24, track_first_minutes=5)
        run()
        assert list(run.store.source_state("mastodon")[f"tracked:{host}"]) == [toot["id"]]  # only the brand's
        one.count(toot, favourites=10, reblogs=5, replies=3, followers=80)
        clock.advance(301)
        run = setup(clock, [{"url": one.url}], track_hours=24, track_first_minutes=5)  # a restart in between
        one.requests.clear()
        poll = run()
        assert [(m.source_id, m.engagement.score, m.engagement.comments, m.reach) for m in poll.updates] == [
            (toot["uri"], 15, 3, 80.0)]
        assert [(p, q.get("id[]")) for p, q in one.requests if p == "/api/v1/statuses"] == [
            ("/api/v1/statuses", [toot["id"]])]
        # The author's followers grew between the reads: the stored reach follows (50 when first read).
        [row] = run.store.query("SELECT reach FROM mentions WHERE source_id = ?", (toot["uri"],))
        assert row["reach"] == 80
        one.count(toot, favourites=30, reblogs=10, replies=9, followers=120)
        clock.advance(601)  # the second re-read is due 10 minutes after the first
        run()
        [row] = run.store.query("SELECT id, score, comments, reach FROM mentions WHERE source_id = ?",
                                (toot["uri"],))
        assert (row["score"], row["comments"], row["reach"]) == (40, 9, 120)
        snapshots = run.store.query("SELECT score, comments FROM snapshots WHERE mention_id = ? ORDER BY taken_at",
                                    (row["id"],))
        assert [(s["score"], s["comments"]) for s in snapshots] == [(1, 0), (15, 3), (40, 9)]
        # Deleted since: dropped from the schedule, nothing more asked.
        one.statuses.remove(toot)
        clock.advance(1201)
        assert run().updates == [] and run.store.source_state("mastodon")[f"tracked:{host}"] == {}


def test_statuses_a_stream_let_go_are_read_from_the_timelines(setup, monkeypatch):
    monkeypatch.setattr("sources.mastodon_stream.MAX_PENDING", 2)  # a busy timeline while polls could not run
    clock = ManualClock()
    with MastodonServer() as one:
        seed = one.add_status("<p>Acme is slow today</p>", acct="eve")
        run = setup(clock, [{"url": one.url}], stream=True)
        run()
        run()  # the streams are trusted from here: no timeline asked
        burst = [one.add_status(f"<p>Acme outage report {i}</p>", acct="eve") for i in range(4)]
        _until(lambda: run.source._streams[one.url[7:]].received >= 4)
        one.requests.clear()
        poll = run()  # two of the four were let go: the timeline is read from its cursor
        assert [q["min_id"] for p, q in one.requests if p == "/api/v1/timelines/public"] == [[seed["id"]]]
        assert sorted(m.source_id for m in poll.mentions) == sorted(s["uri"] for s in burst)
        assert run.store.source_state("mastodon")[f"instance:{one.url[7:]}"]["dropped"] == 2
        run.source.close()


def test_once_polls_the_timelines_without_streaming_and_run_streams(write_config, tmp_path):
    import signal
    import subprocess
    import sys

    from tests.conftest import ROOT
    from tests.daemon_process import Daemon, wait_for

    with MastodonServer() as one:
        toot = one.add_status(COMPLAINT, acct="bob", created=time.time() - 60)
        # Streaming is on by default: `once` still asks no streaming endpoint (not even its health check).
        config = write_config({"sources": {"mastodon": {"instances": [{"url": one.url}], "timeout": 5}}})
        once = subprocess.run([sys.executable, "-m", "monitor.cli", "--config", str(config), "once"],
                              capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert once.returncode == 0, once.stderr
        assert once.stdout.startswith("1 new mentions") and "0 source errors" in once.stdout, once.stdout
        paths = [path for path, _ in one.requests]
        assert "/api/v1/timelines/public" in paths
        assert [p for p in paths if p.startswith("/api/v1/streaming")] == [] and one.stream_requests == []
        [row] = Store(str(tmp_path / "store.db")).query("SELECT source_id FROM mentions")
        assert row["source_id"] == toot["uri"]

        # The daemon streams the same instance.
        daemon = Daemon(config, tmp_path / "daemon.log")
        try:
            daemon.wait_running()
            wait_for(lambda: one.stream_requests == ["/api/v1/streaming/public"], timeout=60,
                     what="the daemon's stream")
            streamed = one.add_status("<p>Acme refund still missing</p>", acct="carol")
            db = Store(str(tmp_path / "store.db"))
            wait_for(lambda: db.query("SELECT 1 FROM mentions WHERE source_id = ?", (streamed["uri"],)),
                     timeout=90, what="the streamed status stored")
        finally:
            daemon.send(signal.SIGTERM)
            assert daemon.wait(timeout=60) == 0, daemon.log()

"""Reddit adapter: requests per poll cycle and post-to-stored latency, against the local server.

100 subreddits and 10 brands with search on, as the issue sizes it. Requests
are counted by the local Reddit-compatible server (what Reddit would count
against the 100 requests/minute an OAuth client may make). The reference in
the same run is the plain way: one listing per subreddit (r/x/new and
r/x/comments each) instead of multireddit batches.

Run: .venv/bin/python bench/bench_reddit.py
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from monitor.config import parse_config  # noqa: E402
from monitor.pipeline import Pipeline  # noqa: E402
from monitor.store import Store  # noqa: E402
from sources.reddit import RedditSettings, RedditSource, reddit_client  # noqa: E402
from tests.servers.reddit import ManualClock, RedditServer  # noqa: E402

SUBREDDITS = [f"sub{i:03d}" for i in range(100)]
BRANDS = {f"Brand{i}": [f"brand{i}", f"@brand{i}help"] for i in range(10)}
REDDIT_BUDGET_PER_MINUTE = 100  # OAuth clients: 100 queries per minute (averaged over 10 minutes)
DEFAULT_INTERVAL = RedditSettings().interval
COMPLAINT = "{brand} charged me twice and support hung up. Still no refund. Furious."


def settings(server: RedditServer, **extra) -> RedditSettings:
    return RedditSettings(**{"client_id": "test-id", "client_secret": "test-secret", "user_agent": "bench",
                             "subreddits": SUBREDDITS, "search": True, "oauth_url": server.url,
                             "reddit_url": server.url, **extra})


def seed(server: RedditServer, now: float) -> None:
    rng = random.Random(7)
    for i, sub in enumerate(SUBREDDITS):
        server.add_subreddit(sub, subscribers=rng.randint(1_000, 2_000_000))
        for j in range(3):
            brand = f"Brand{rng.randrange(10)}"
            text = COMPLAINT.format(brand=brand) if j == 0 else "Nothing to see here."
            server.add_post(subreddit=sub, id=f"p{i}x{j}", title=f"Post {j} in {sub}", selftext=text,
                            created_utc=now - rng.uniform(60, 3000))
            server.add_comment(subreddit=sub, id=f"c{i}x{j}", link_id=f"p{i}x{j}", body="Me too.",
                               created_utc=now - rng.uniform(60, 3000))


def pipeline_in(folder: str) -> tuple[Pipeline, Store]:
    config = parse_config({"brands": [{"name": b, "keywords": k} for b, k in BRANDS.items()],
                           "store": "bench.db", "rules": [str(p) for p in sorted((ROOT / "rules").glob("*.yaml"))]},
                          base_dir=Path(folder))
    store = Store(config.store_path)
    return Pipeline(config=config, store=store), store


def requests_made(server: RedditServer) -> int:
    return server.count() - server.count("/api/v1/access_token")


def cycle(source: RedditSource, pipeline: Pipeline, store: Store) -> None:
    poll = source.poll(store.source_state("reddit"))
    pipeline.process("reddit", poll)
    assert not poll.failed, poll.failed


def measure_requests() -> dict[str, int]:
    with RedditServer() as server, tempfile.TemporaryDirectory() as folder:
        clock = ManualClock()
        seed(server, clock.now)
        pipeline, store = pipeline_in(folder)
        s = settings(server)
        client = reddit_client(s)
        source = RedditSource(settings=s, reddit=client, search_terms=BRANDS, clock=clock)
        found = {}
        before = requests_made(server)
        cycle(source, pipeline, store)
        found["first start (backfill)"] = requests_made(server) - before
        tracked = len(store.source_state("reddit")["tracked"])
        before = requests_made(server)
        clock.advance(60)
        cycle(source, pipeline, store)
        found["steady cycle (nothing new)"] = requests_made(server) - before
        before = requests_made(server)
        clock.advance(10 * 60)  # every tracked post is due for a re-read
        cycle(source, pipeline, store)
        found[f"cycle with {tracked} tracked posts due"] = requests_made(server) - before
        store.close()

        # Reference: the same subreddits read one listing each, same praw client, same server.
        reference_before = requests_made(server)
        for sub in SUBREDDITS:
            single = settings(server, subreddits=[sub], search=False)
            RedditSource(settings=single, reddit=client, clock=clock).poll({})
        found["reference: one listing per subreddit (+10 searches)"] = (
            requests_made(server) - reference_before + len(BRANDS))
        return found


def measure_latency(posts: int = 12, interval: float = 1.0) -> tuple[list[float], list[float]]:
    """Posts appear at random moments while a poll loop runs every ``interval`` s; time until each is stored."""
    with RedditServer() as server, tempfile.TemporaryDirectory() as folder:
        seed(server, time.time())
        pipeline, store = pipeline_in(folder)
        s = settings(server)
        source = RedditSource(settings=s, reddit=reddit_client(s), search_terms=BRANDS)
        cycle(source, pipeline, store)  # first start done; from here on only new posts
        appeared: dict[str, float] = {}
        stored: dict[str, float] = {}
        cycle_times: list[float] = []
        done = threading.Event()

        def publish():
            rng = random.Random(11)
            for n in range(posts):
                time.sleep(rng.uniform(0.2, 1.2))
                sub = rng.choice(SUBREDDITS)
                appeared[f"t3_new{n}"] = time.time()
                server.add_post(subreddit=sub, id=f"new{n}", title=f"Brand{n % 10} lost my order",
                                selftext=COMPLAINT.format(brand=f"Brand{n % 10}"))
            done.set()

        writer = threading.Thread(target=publish)
        writer.start()
        deadline = time.time() + 60
        while time.time() < deadline and (not done.is_set() or len(stored) < posts):
            started = time.time()
            cycle(source, pipeline, store)
            finished = time.time()
            cycle_times.append(finished - started)
            for row in store.query("SELECT source_id FROM mentions WHERE source_id LIKE 't3_new%'"):
                stored.setdefault(row["source_id"], finished)
            time.sleep(max(0.0, interval - (finished - started)))
        writer.join()
        store.close()
        return [stored[k] - appeared[k] for k in appeared if k in stored], cycle_times


def main() -> None:
    print(f"Reddit adapter: {len(SUBREDDITS)} subreddits, {len(BRANDS)} brands, search on, comments on")
    found = measure_requests()
    steady = found["steady cycle (nothing new)"]
    reference = found["reference: one listing per subreddit (+10 searches)"]
    for what, n in found.items():
        print(f"  requests, {what:<52} {n:>5}")
    print(f"  reference / batched steady cycle: {reference / steady:.1f}x fewer requests")
    for interval in (DEFAULT_INTERVAL, 60.0, 30.0):
        per_minute = steady * 60 / interval
        print(f"  at interval {interval:>5.0f}s: {per_minute:5.1f} requests/min = "
              f"{per_minute / REDDIT_BUDGET_PER_MINUTE:5.1%} of Reddit's {REDDIT_BUDGET_PER_MINUTE}/min budget")
    growth = max(v for k, v in found.items() if "tracked" in k)
    print(f"  worst cycle (growth re-reads due) at the default {DEFAULT_INTERVAL:.0f}s: "
          f"{growth * 60 / DEFAULT_INTERVAL:.1f} requests/min")

    latencies, cycles = measure_latency()
    print(f"latency post appears -> Mention stored, polling every 1 s ({len(latencies)} posts):"
          f" median {statistics.median(latencies):.2f} s, max {max(latencies):.2f} s;"
          f" one poll cycle takes median {statistics.median(cycles) * 1000:.0f} ms")
    print(f"  so with the default interval of {DEFAULT_INTERVAL:.0f}s a post waits on average"
          f" ~{DEFAULT_INTERVAL / 2 + statistics.median(cycles):.0f} s, at most"
          f" ~{DEFAULT_INTERVAL + max(cycles):.0f} s")


if __name__ == "__main__":
    main()

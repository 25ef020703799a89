"""The site-wide Reddit stream (``sources.reddit.all: true``): throughput, latency, bursts, requests.

Everything runs against the local Reddit-compatible server serving a
synthetic site-wide stream (sequential base-36 ids, one in nine invisible)
and a local aiosmtpd server; 300 brands, 3 keywords each.

1. Throughput on one core: the poll loop's own CPU time (``thread_time``: the
   server runs in other threads) per item read, with no request budget, on a
   fast simulated clock. Reference in the same run: the subreddit mode pointed
   at r/all (praw objects and a Mention for every item, matched by the
   pipeline), on the same stream.
2. The daemon for real (APScheduler, default budget of 90 requests a minute)
   on a stream at Reddit-like rates with a 5x burst, begun 30 s before the
   daemon's first start: time from an item's creation to its mention stored
   and to its alert accepted by the SMTP server (p50, p95), matching items
   missed (in the burst, and before the first start), requests a minute.

Run: .venv/bin/python bench/bench_reddit_stream.py
"""

from __future__ import annotations

import re
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import realdata  # noqa: E402
from monitor.app import Monitor  # noqa: E402
from monitor.config import load_config, parse_config  # noqa: E402
from monitor.daemon import build_scheduler  # noqa: E402
from monitor.pipeline import Pipeline  # noqa: E402
from monitor.store import Store  # noqa: E402
from sources.reddit import RedditSettings, RedditSource, reddit_client  # noqa: E402
from tests.servers.reddit import ManualClock, RedditServer  # noqa: E402
from tests.servers.site_stream import SyntheticStream  # noqa: E402
from tests.servers.smtp import SmtpServer  # noqa: E402

BRANDS = {f"Brand{i:03d}": [f"brand{i:03d}", f"@brand{i:03d}help", f"brand{i:03d} support"] for i in range(300)}
RULES = [str(p) for p in sorted((ROOT / "rules").glob("*.yaml"))]
COMPLAINT = "{brand} charged me twice and support hung up on me. Still no refund. Furious, never again."
REDDIT_BUDGET = 100
# Reddit-like rates, scaled to what the bench machine can hold for a couple of minutes.
COMMENTS_PER_S, POSTS_PER_S = 40, 8
BURST = (60, 80, 5)  # seconds after the daemon's start: 5x for 20 s
HISTORY = 30  # seconds of stream before the daemon's first start, read back by its backfill
BACKFILL_HOURS = 60 / 3600
MATCH_EVERY = 50


def texts():
    found = realdata.tweet_texts()
    return found or [f"Just chatting about espresso grinders and whatever else, item {i}." for i in range(1000)]


def text_of(every: int, words: list[str]):
    """Item n's text: a real human text, a complaint naming one of the 300 brands for every ``every``-th."""
    return lambda n: COMPLAINT.format(brand=f"Brand{n % 300:03d}") if n % every == 0 else words[n % len(words)]


def streams(clock, start: float, seconds: float, *, rate_scale: float, match_every: int,
            bursts=()) -> tuple[SyntheticStream, SyntheticStream]:
    words = texts()
    return (SyntheticStream(kind="t1", clock=clock, start=start, seconds=seconds, rate=COMMENTS_PER_S * rate_scale,
                            bursts=bursts, match_every=match_every, text=text_of(match_every, words)),
            SyntheticStream(kind="t3", clock=clock, start=start, seconds=seconds, rate=POSTS_PER_S * rate_scale,
                            bursts=bursts, match_every=match_every, first_id="zz0000",
                            text=text_of(match_every, words)))


def brands_config(folder: str, **extra) -> dict:
    return {"brands": [{"name": b, "keywords": k} for b, k in BRANDS.items()], "store": str(Path(folder) / "b.db"),
            "rules": RULES, "responders": [{"email": "oncall@bench.local", "brands": "all", "min_priority": "P4"}],
            "email": {"from": "monitor@bench.local"}, **extra}


def throughput(*, stream_mode: bool, seconds: int = 30) -> tuple[float, int]:
    """Items read per second of the poll loop's CPU time, and how many items it read."""
    clock = ManualClock()
    with RedditServer() as server, tempfile.TemporaryDirectory() as folder:
        # Begun 20 s before the first poll, read back 10 s: the first start's fill reads items, not empty ids.
        for stream in streams(clock, clock.now - 20, seconds + 20, rate_scale=10, match_every=100):
            server.add_stream(stream)
        server.ratelimit = {"remaining": "1000000", "used": "0", "reset": "600"}  # no budget: CPU is the limit
        config = parse_config(brands_config(folder), base_dir=Path(folder))
        store = Store(config.store_path)
        pipeline = Pipeline(config=config, store=store)
        mode = {"all": True, "requests_per_minute": 100_000} if stream_mode else {"subreddits": ["all"]}
        s = RedditSettings(client_id="test-id", client_secret="test-secret", oauth_url=server.url,
                           reddit_url=server.url, track_hours=0, backfill_hours=10 / 3600, **mode)
        source = RedditSource(settings=s, reddit=reddit_client(s), clock=clock, search_terms=BRANDS)
        items = 0
        cpu = time.thread_time()
        for _ in range(seconds * 4):  # polls every simulated 0.25 s: pages stay full, nothing to fill
            clock.advance(0.25)
            poll = source.poll(store.source_state("reddit"))
            if not poll.idle:
                outcome = pipeline.process("reddit", poll)
                items += outcome.seen if not stream_mode else 0
        cpu = time.thread_time() - cpu
        if stream_mode:
            state = store.source_state("reddit")
            items = sum(state[f"stream:{k}"]["counts"]["read"] + state[f"stream:{k}"]["counts"]["filled"]
                        for k in ("comments", "new"))
        store.close()
        return items / cpu, items


def live(seconds: float = 120, tail: float = 45) -> dict:
    """The daemon on a real-time stream; returns latencies, misses and request counts."""
    with RedditServer() as server, SmtpServer() as smtp, tempfile.TemporaryDirectory() as folder:
        start = time.time()
        comments, posts = streams(time.time, start - HISTORY, seconds + HISTORY, rate_scale=1,
                                  match_every=MATCH_EVERY, bursts=((BURST[0] + HISTORY, BURST[1] + HISTORY, 5),))
        server.add_stream(comments)
        server.add_stream(posts)
        path = Path(folder) / "config.yaml"
        path.write_text(yaml.safe_dump(brands_config(folder, sources={"reddit": {
            "client_id": "test-id", "client_secret": "test-secret", "all": True, "oauth_url": server.url,
            "reddit_url": server.url, "backfill_hours": BACKFILL_HOURS}}, email={"from": "monitor@bench.local", "send_interval": 30,
                                               "smtp": {"host": "127.0.0.1", "port": smtp.port}})))
        config = load_config(path)
        monitor = Monitor.from_config(config)
        scheduler = build_scheduler(monitor)
        stored_at: dict[str, float] = {}
        emailed_at: dict[str, float] = {}
        permalink_id = re.compile(r"/comments/(?:abc/post/)?(\w+)/")
        requests: list[tuple[float, int]] = []
        scheduler.start()
        db = sqlite3.connect(config.store_path)
        seen_messages = 0
        try:
            end = start + seconds + tail
            while time.time() < end:
                now = time.time()
                for (source_id,) in db.execute("SELECT source_id FROM mentions"):
                    stored_at.setdefault(source_id, now)
                with smtp._lock:
                    fresh = smtp.messages[seen_messages:]
                    seen_messages = len(smtp.messages)
                for _, message in fresh:
                    body = message.get_body(("plain",)).get_content()
                    # One alert, or a storm summary of many (email.storm_threshold): each link is one item.
                    for found in permalink_id.finditer(body):
                        kind = "t1" if "/abc/post/" in found.group(0) else "t3"
                        emailed_at.setdefault(f"{kind}_{found.group(1)}", now)
                requests.append((now, server.count() - server.count("/api/v1/access_token")))
                time.sleep(0.1)
        finally:
            scheduler.shutdown(wait=True)
            monitor.close()
            db.close()

        def created(fullname: str) -> float:
            stream = comments if fullname.startswith("t1_") else posts
            return stream.created[int(fullname[3:], 36) - stream.first]

        expected = comments.expected(start - HISTORY, start + seconds) | posts.expected(start - HISTORY, start + seconds)
        history = comments.expected(start - HISTORY, start) | posts.expected(start - HISTORY, start)
        in_burst = comments.expected(start + BURST[0], start + BURST[1]) | posts.expected(
            start + BURST[0], start + BURST[1])
        span = requests[-1][0] - requests[0][0]
        most = max(c - next(c0 for t0, c0 in requests if t0 >= t - 60) for t, c in requests if t - 60 >= requests[0][0])
        # Steady: created before the burst, and before the page read last before it (the gap a burst opens
        # starts at that page, and gaps are read back newest first).
        steady = [f for f in comments.expected(start + 5, start + BURST[0] - 5) | posts.expected(
            start + 5, start + BURST[0] - 5) if f in stored_at]
        burst = [f for f in comments.expected(start + BURST[0] - 5, start + BURST[1]) | posts.expected(
            start + BURST[0] - 5, start + BURST[1]) if f in stored_at]
        return {
            "expected": len(expected), "stored": len(expected & set(stored_at)), "missed": len(expected - set(stored_at)),
            "missed at": sorted(round(created(f) - start, 1) for f in expected - set(stored_at)),
            "history": len(history), "history missed": len(history - set(stored_at)),
            "burst expected": len(in_burst), "burst missed": len(in_burst - set(stored_at)),
            "stored latency": [stored_at[f] - created(f) for f in steady],
            "email latency": [emailed_at[f] - created(f) for f in steady if f in emailed_at],
            "burst stored latency": [stored_at[f] - created(f) for f in burst],
            "burst email latency": [emailed_at[f] - created(f) for f in burst if f in emailed_at],
            "requests per minute": (requests[-1][1] - requests[0][1]) * 60 / span, "most in a minute": most,
            "items": comments.visible_between(start - HISTORY, start + seconds) + posts.visible_between(
                start - HISTORY, start + seconds),
        }


def pct(values: list[float], q: float) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def main() -> None:
    print(f"Site-wide Reddit stream: {len(BRANDS)} brands, {sum(len(k) + 1 for k in BRANDS.values())} keywords;"
          f" texts: {'human-written (../shared/data)' if realdata.available() else 'synthetic'}")
    rate, items = throughput(stream_mode=True)
    reference, ref_items = throughput(stream_mode=False)
    print(f"throughput on one core (poll loop CPU time): {rate:,.0f} items/s over {items:,} items"
          f" (target >= 200); reference, subreddit mode on r/all (a Mention for every item): {reference:,.0f} items/s"
          f" over {ref_items:,} items; {rate / reference:.1f}x")
    result = live()
    print(f"daemon, real time: {COMMENTS_PER_S} comments/s + {POSTS_PER_S} posts/s, 5x for {BURST[1] - BURST[0]} s,"
          f" {result['items']:,} visible items, 1 in {MATCH_EVERY} names a brand")
    for what, target in (("stored latency", 10), ("email latency", 15)):
        values = result[what]
        burst = result[f"burst {what}"]
        print(f"  item created -> {what.split()[0]:<6}: p50 {pct(values, 50):5.1f} s, p95 {pct(values, 95):5.1f} s"
              f" (target p95 < {target} s; {len(values)} items before the burst); items of the burst, read back"
              f" newest first: p50 {pct(burst, 50):5.1f} s, p95 {pct(burst, 95):5.1f} s, max {max(burst or [0]):.1f} s"
              f" ({len(burst)})")
    missed_at = result["missed at"]
    when = f" (created at {', '.join(f'{t:+.1f} s' for t in missed_at)} from the daemon's start)" if missed_at else ""
    print(f"  matching items missed: {result['missed']} of {result['expected']}{when};"
          f" during the 5x burst: {result['burst missed']} of {result['burst expected']};"
          f" of the {HISTORY} s before the first start (backfill_hours {BACKFILL_HOURS * 3600:.0f} s):"
          f" {result['history missed']} of {result['history']}")
    print(f"  requests: {result['requests per minute']:.0f}/min on average, at most {result['most in a minute']} in"
          f" any minute (budget 90 of Reddit's {REDDIT_BUDGET})")


if __name__ == "__main__":
    main()

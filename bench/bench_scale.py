"""Several daemons on one PostgreSQL store: items per second with one, two and three daemons over 3,000 local
feeds and a site-wide Reddit stream, the scaling ratio against one daemon measured in the same run, and the
time the others take to take over a killed daemon's work.

- A throwaway PostgreSQL server (tests/postgres.py), a fresh database for each number of daemons.
- A feed server and a Reddit-compatible server with a synthetic site-wide stream run in a child process of
  their own. Every feed answers each request with new entries (a new ETag, never a 304), so the daemons
  never run out of work: what is measured is how much of it they get through. One entry in ten names
  the brand, in a complaint.
- The daemons are real ``complaint-monitor run`` processes with the same config (feeds every second,
  ``lease_seconds`` 10, the stream with ``all: true``).
- Items per second: the feed entries read and stored (ten per stored mention: one in ten names the brand)
  and the items the stream read (its cursors), in a window after a warm-up.
- Takeover: one daemon is SIGKILLed while it holds feeds; the time until every feed it held was claimed
  by another daemon (its leases expire after ``lease_seconds``, then the others take them at the start of
  their next poll, which may wait for the poll they are in).

The machine may be shared and has two cores: three daemons, their feed reader processes, PostgreSQL and the
servers all compete for them; the ratios say how far one store and one machine scale, not a cluster.

Run: .venv/bin/python bench/bench_scale.py [--feeds 3000] [--warmup 30] [--window 40] [--daemons 1,2,3] [--logs DIR]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from email.utils import formatdate
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
import yaml  # noqa: E402

from tests.postgres import PostgresServer, find_bindir  # noqa: E402

LEASE_SECONDS = 10
ENTRIES = 5
RULES = [str(p) for p in sorted((ROOT / "rules").glob("*.yaml"))]


def serve(conn, feeds: int) -> None:
    """The child process: a feed server whose feeds always have new entries, and the Reddit stream."""
    from http.server import ThreadingHTTPServer

    from tests.servers.http import QuietHandler
    from tests.servers.reddit import RedditServer
    from tests.servers.site_stream import SyntheticStream

    counters = [0] * feeds
    lock = threading.Lock()

    class Handler(QuietHandler):
        def do_GET(self):
            try:
                feed = int(self.path.strip("/").split("/")[1].split(".")[0])
            except (IndexError, ValueError):
                self.send_error(404)
                return
            with lock:
                counters[feed] += 1
                round_ = counters[feed]
            items = []
            for e in range(ENTRIES):
                n = (round_ * ENTRIES + e)
                brand = n % 10 == 0
                title = f"Acme order {feed}-{n} never arrived, charged twice" if brand else f"Reading list {feed}-{n}"
                text = ("Acme took my money and support hung up on me. No refund." if brand
                        else "Ten links about gardening, coffee and bikes.")
                items.append(f"<item><title>{title}</title><link>https://site{feed}.example/{n}</link>"
                             f"<guid>{feed}-{n}</guid><pubDate>{formatdate(time.time(), usegmt=True)}</pubDate>"
                             f"<description>{text}</description></item>")
            body = ('<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>f</title>'
                    "<link>http://127.0.0.1/</link><description>d</description>"
                    + "".join(items) + "</channel></rss>").encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("ETag", f'"{feed}-{round_}"')
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    class Server(ThreadingHTTPServer):
        def handle_error(self, request, client_address):
            if not isinstance(sys.exc_info()[1], ConnectionError):  # a daemon killed mid-request: expected
                super().handle_error(request, client_address)

    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.request_queue_size = 512
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    reddit = RedditServer()
    start = time.time()
    for kind, rate, first in (("t1", 20, "100000"), ("t3", 4, "zz0000")):
        reddit.add_stream(SyntheticStream(kind=kind, clock=time.time, start=start - 10, seconds=3600, rate=rate,
                                          first_id=first, match_every=50))
    reddit.start()
    conn.send((f"http://127.0.0.1:{httpd.server_address[1]}", reddit.url))
    conn.recv()  # until the parent says stop


def write_config(folder: Path, store: str, feed_url: str, reddit_url: str, feeds: int) -> Path:
    config = {
        "brands": [{"name": "Acme", "keywords": ["acme"]}],
        "store": store,
        "lease_seconds": LEASE_SECONDS,
        "rules": RULES,
        "responders": [],
        "email": {"from": "monitor@bench.local", "outbox_dir": str(folder / "outbox")},
        "sources": {
            "rss": {"interval": 1, "workers": 32, "per_host": 16, "backfill_hours": 0,
                    "feeds": [{"url": f"{feed_url}/feed/{i}.xml"} for i in range(feeds)]},
            "reddit": {"client_id": "test-id", "client_secret": "test-secret", "user_agent": "bench",
                       "all": True, "oauth_url": reddit_url, "reddit_url": reddit_url, "backfill_hours": 0.001},
        },
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def start_daemon(config: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "monitor.cli", "--config", str(config), "run"], cwd=ROOT,
                            env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT)


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def feed_items(url: str) -> int:
    """Feed entries the daemons have read and stored so far: exactly one entry in ten names the brand and is
    stored, so ten per stored mention. Counted from the store, not from poll records (a poll of thousands of
    feeds is recorded when it ends, long after the window it worked in) nor at the server (a poll fetches
    everything first and reads it afterwards)."""
    with psycopg.connect(url) as db:
        return 10 * db.execute("SELECT count(*) FROM mentions WHERE source = 'rss'").fetchone()[0]


def stream_items(url: str) -> int:
    """Items the stream has read so far (its listings and the gaps it read back), from its cursors: its polls
    record only the items that name a brand."""
    import json
    with psycopg.connect(url) as db:
        states = [json.loads(r[0]) for r in db.execute(
            "SELECT value FROM source_state WHERE source = 'reddit' AND key LIKE 'stream:%%'")]
    return sum((st.get("counts") or {}).get("read", 0) + (st.get("counts") or {}).get("filled", 0) for st in states)


def held_by(url: str, pid: int) -> tuple[str | None, set[str]]:
    """The identity of the daemon with this pid, and the feeds it holds now."""
    with psycopg.connect(url) as db:
        holders = [r[0] for r in db.execute("SELECT holder FROM leases WHERE name LIKE 'daemon:%%'"
                                            " AND holder LIKE %s", (f"%:{pid}:%",))]
        if not holders:
            return None, set()
        names = {r[0] for r in db.execute("SELECT name FROM leases WHERE holder = %s AND name LIKE 'rss:%%'",
                                          (holders[0],))}
        return holders[0], names


def run(count: int, *, server: PostgresServer, feed_url: str, reddit_url: str, feeds: int,
        warmup: float, window: float, folder: Path) -> dict:
    url = server.create_database()
    config = write_config(folder, url, feed_url, reddit_url, feeds)
    logs = [folder / f"daemon-{count}-{i}.log" for i in range(count)]
    procs = [start_daemon(config, log) for log in logs]
    try:
        for log, proc in zip(logs, procs):
            wait_until(lambda: "complaint-monitor running" in log.read_text(errors="replace") or proc.poll() is not None,
                       120, "a daemon to start")
            if proc.poll() is not None:
                raise RuntimeError(log.read_text())
        time.sleep(warmup)
        fed, streamed = feed_items(url), stream_items(url)
        time.sleep(window)
        result = {"daemons": count, "rss": (feed_items(url) - fed) / window,
                  "reddit": (stream_items(url) - streamed) / window}
        if count > 1:
            victim = procs[-1]
            identity, held = wait_until(lambda: (lambda h: h if h[1] else None)(held_by(url, victim.pid)), 60,
                                        "the victim to hold feeds")
            victim.send_signal(signal.SIGKILL)
            killed = time.time()
            victim.wait()

            def taken() -> bool:
                with psycopg.connect(url) as db:
                    still = db.execute("SELECT count(*) FROM leases WHERE holder = %s AND name = ANY(%s)",
                                       (identity, sorted(held))).fetchone()[0]
                return still == 0
            wait_until(taken, LEASE_SECONDS * 6, "the others to take over the victim's feeds")
            result["takeover"] = time.time() - killed
            result["held"] = len(held)
        return result
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=3000)
    parser.add_argument("--warmup", type=float, default=30)
    parser.add_argument("--window", type=float, default=40)
    parser.add_argument("--daemons", default="1,2,3")
    parser.add_argument("--logs", help="keep the daemons' logs in this folder")
    args = parser.parse_args()
    counts = [int(c) for c in args.daemons.split(",")]
    parent, child = multiprocessing.Pipe()
    servers = multiprocessing.Process(target=serve, args=(child, args.feeds), daemon=True)
    servers.start()
    feed_url, reddit_url = parent.recv()
    results = []
    try:
        with PostgresServer(bindir=find_bindir()) as pg, tempfile.TemporaryDirectory() as folder:
            for count in counts:
                logs = Path(args.logs) if args.logs else Path(folder)
                logs.mkdir(parents=True, exist_ok=True)
                results.append(run(count, server=pg, feed_url=feed_url, reddit_url=reddit_url, feeds=args.feeds,
                                   warmup=args.warmup, window=args.window, folder=logs))
                r = results[-1]
                print(f"{count} daemon(s): {r['rss'] + r['reddit']:.0f} items/s ({r['rss']:.0f} from feeds,"
                      f" {r['reddit']:.0f} from the stream)"
                      + (f"; takeover of {r['held']} feeds after a kill: {r['takeover']:.1f} s"
                         f" (lease_seconds {LEASE_SECONDS})" if "takeover" in r else ""), flush=True)
    finally:
        parent.send("stop")
        servers.join(timeout=10)
    base = results[0]["rss"] + results[0]["reddit"]
    for r in results[1:]:
        total = r["rss"] + r["reddit"]
        feeds = f" (feeds x{r['rss'] / results[0]['rss']:.2f})" if results[0]["rss"] else ""
        print(f"scaling {r['daemons']} daemons / {results[0]['daemons']}: x{total / base:.2f} items/s{feeds}")
    print(f"load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()

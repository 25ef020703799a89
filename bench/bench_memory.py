"""Memory stays flat over a long run: 100,000 mentions through Monitor.poll, peak RSS at 10k and 100k.

The local feed server (tests/servers/feeds.py) serves a new page of complaint
entries for every poll, so each poll is the real path: HTTP, feedparser,
brand matching, VADER, rule packs, one SQLite transaction per mention with
its alert. Target: peak RSS under 200 MB at 100k and close to the 10k figure.

    .venv/bin/python bench/bench_memory.py            # 100,000 mentions
    .venv/bin/python bench/bench_memory.py 20000      # a shorter run
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from monitor.app import Monitor  # noqa: E402
from monitor.config import parse_config  # noqa: E402
from tests.servers.feeds import FeedServer, recent, rss  # noqa: E402

PAGE = 2000  # entries per poll
WORDS = ["charged me twice", "lost my parcel", "hung up on me", "no refund", "broken on arrival",
         "waited three weeks", "rude agent", "app keeps crashing"]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def children_peak_rss_mb() -> list[float]:
    """Each live child process's peak RSS (the feed workers): RUSAGE_SELF counts only the daemon's own."""
    me = os.getpid()
    try:
        children = open(f"/proc/{me}/task/{me}/children").read().split()
    except OSError:
        return []
    peaks = []
    for pid in children:
        try:
            status = open(f"/proc/{pid}/status").read()
        except OSError:
            continue  # it ended meanwhile
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return peaks


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def page(start: int) -> str:
    items = []
    for n in range(start, start + PAGE):
        complaint = WORDS[n % len(WORDS)]
        items.append({"title": f"Acme {complaint} (#{n})", "link": f"https://blog.example/{n}", "guid": f"g{n}",
                      "description": f"Order {n}: Acme {complaint}. Support never answered my {n % 7 + 2} emails. "
                                     "I want my money back and I will tell everyone.",
                      "pubDate": recent()})
    return rss(items)


def main() -> None:
    total = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    checkpoints = sorted({min(10_000, total), total})
    with tempfile.TemporaryDirectory() as tmp, FeedServer() as feeds:
        url = feeds.serve("/bench.xml", page(0))
        config = parse_config({
            "brands": [{"name": "Acme", "keywords": ["acme"]}],
            "store": str(Path(tmp) / "bench.db"),
            "email": {"outbox_dir": str(Path(tmp) / "outbox")},
            "responders": [{"email": "oncall@bench.local", "min_priority": "P4"}],
            "rules": sorted(str(p) for p in (ROOT / "rules").glob("*.yaml")),
            # A tiny interval keeps the feed due at every poll (the source skips feeds not yet due).
            "sources": {"rss": {"feeds": [{"url": url, "interval": 0.001}], "max_bytes": 50_000_000,
                                "max_entries": PAGE}},
        }, base_dir=Path(tmp))
        monitor = Monitor.from_config(config)
        try:
            # Reference: memory once everything is loaded and one page went through.
            monitor.poll("rss")
            stored = PAGE
            baseline = peak_rss_mb()
            print(f"after the first {PAGE:,} mentions (libraries, rules, VADER loaded): peak RSS {baseline:.1f} MB")
            started = time.perf_counter()
            results = {}
            while stored < total:
                feeds.serve("/bench.xml", page(stored))
                report = monitor.poll("rss")
                assert not report.errors and len(report.outcome.stored) == PAGE, report
                stored += PAGE
                if stored in checkpoints or stored >= total:
                    results[stored] = (peak_rss_mb(), current_rss_mb(), time.perf_counter() - started)
                    print(f"{stored:>7,} mentions: peak RSS {results[stored][0]:.1f} MB,"
                          f" current {results[stored][1]:.1f} MB,"
                          f" {(stored - PAGE) / results[stored][2]:,.0f} mentions/s")
            workers = children_peak_rss_mb()
            count = monitor.store.query("SELECT count(*) FROM mentions")[0][0]
            assert count == stored, (count, stored)
        finally:
            monitor.close()
    first, last = results[checkpoints[0]][0], results[checkpoints[-1]][0]
    print(f"the worker processes' peak RSS: {', '.join(f'{mb:.1f} MB' for mb in workers) or 'no worker running'}")
    print(f"peak RSS {last:.1f} MB at {checkpoints[-1]:,} (target < 200 MB: {'OK' if last < 200 else 'OVER'});"
          f" growth {checkpoints[0]:,} -> {checkpoints[-1]:,}: x{last / first:.2f}"
          f" (vs first page: x{last / baseline:.2f})")


if __name__ == "__main__":
    main()

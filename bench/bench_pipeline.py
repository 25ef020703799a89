"""The pipeline alone on a first RSS cycle's mentions: this checkout against another, in the same run.

bench/bench_rss.py times fetch, parse, score and store together; this one
times only ``Pipeline.process`` (match, read, rank, stories, store, alerts) on
the poll that cycle produces: its 1,000 local feeds (5,000 entries, 500 naming
"Acme") are fetched and parsed once, and the very same poll is then processed
into a fresh SQLite store by each contender in turn, each in a process of its
own, best of ``--rounds`` (wall clock and CPU time apart: on a shared machine the CPU time moves less). ``--against PATH`` names a checkout of the code to
compare with (e.g. ``git worktree add /tmp/base main``); each side also prints
a digest of what it stored (mentions, scores, reasons, stories, alerts and their
Message-IDs) so a change that speeds the pipeline up shows it changed nothing.

    .venv/bin/python bench/bench_pipeline.py [--against /tmp/base] [--rounds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# A poll's "now": fixed, so both sides score the same ages and the digests can be compared.
NOW = datetime.now(timezone.utc).replace(microsecond=0)


def config_yaml(store: Path, smtp_port: int, urls: list[str]) -> dict:
    """bench_rss.py's configuration."""
    return {
        "brands": [{"name": "Acme", "keywords": ["acme"]}],
        "store": str(store),
        "email": {"from": "monitor@bench.local", "smtp": {"host": "127.0.0.1", "port": smtp_port},
                  "storm_threshold": 1_000_000},
        "responders": [{"email": "oncall@bench.local", "min_priority": "P4"}],
        "rules": [str(p) for p in sorted((ROOT / "rules").glob("*.yaml"))],
        "sources": {"rss": {"interval": 1, "feeds": [{"url": u} for u in urls]}},
    }


def fetch_poll(work: Path, feeds: int, entries: int) -> Path:
    """bench_rss.py's first cycle, fetched and parsed once; the poll pickled for the contenders."""
    sys.path.insert(0, str(ROOT / "bench"))
    sys.path.insert(0, str(ROOT))
    import yaml
    from bench_rss import Servers

    from monitor.app import Monitor
    from monitor.config import load_config

    with Servers(feeds, entries) as servers:
        (work / "config.yaml").write_text(yaml.safe_dump(config_yaml(work / "fetch.db", servers.smtp_port,
                                                                     servers.urls)))
        monitor = Monitor.from_config(load_config(work / "config.yaml"))
        poll = monitor.sources["rss"].poll({})
        monitor.store.close()
    path = work / "poll.pickle"
    path.write_bytes(pickle.dumps(poll))
    return path


def process_once(root: Path, poll_path: Path, now: datetime) -> None:
    """In a contender's process: its Pipeline on the poll into a fresh store; prints seconds and digest."""
    sys.path.insert(0, str(root))
    import yaml

    from monitor.config import load_config
    from monitor.pipeline import Pipeline
    from monitor.store import Store

    poll = pickle.loads(poll_path.read_bytes())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # The feeds' addresses do not matter here: nothing is fetched.
        (work / "config.yaml").write_text(yaml.safe_dump(config_yaml(work / "bench.db", 25,
                                                                     ["http://127.0.0.1:9/feed.xml"])))
        config = load_config(work / "config.yaml")
        store = Store(config.store_path)
        pipeline = Pipeline(config=config, store=store)
        started, cpu = time.perf_counter(), time.process_time()
        outcome = pipeline.process("rss", poll, now=now)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        print(json.dumps({"seconds": seconds, "cpu": cpu, "stored": len(outcome.stored), "alerts": outcome.alerts,
                          "digest": digest(store)}))
        store.close()


def digest(store) -> str:
    """What the poll stored, without the clock's own columns."""
    rows = {
        "mentions": store.query(
            "SELECT source_id, brand, quote, priority, peak_priority, urgency, virality, complaint, is_complaint,"
            " reasons, rules, tags, signals, suppressed, story_id FROM mentions ORDER BY id"),
        "stories": store.query("SELECT id, brand, key, title, url, sightings FROM stories ORDER BY id"),
        "keys": store.query("SELECT key, story_id FROM story_keys ORDER BY key"),
        "alerts": store.query("SELECT id, mention_id, recipient, priority, status, message_id, kind, digest, about,"
                              " urgency, virality FROM alerts ORDER BY id"),
    }
    text = json.dumps({k: [list(r) for r in v] for k, v in rows.items()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run(root: Path, poll_path: Path) -> dict:
    done = subprocess.run([sys.executable, __file__, "--process", str(poll_path), "--root", str(root),
                           "--now", NOW.isoformat()], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", type=Path, help="a checkout of the code to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--entries", type=int, default=5)
    parser.add_argument("--process", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    parser.add_argument("--now", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.process:
        process_once(args.root, args.process, datetime.fromisoformat(args.now))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        poll_path = fetch_poll(Path(tmp), args.feeds, args.entries)
        contenders = {"this checkout": ROOT}
        if args.against:
            contenders[f"against {args.against}"] = args.against
        best: dict[str, dict] = {}
        for _ in range(args.rounds):  # taking turns: load from other processes hits both alike
            for name, root in contenders.items():
                result = run(root, poll_path)
                if name not in best:
                    best[name] = result
                best[name]["seconds"] = min(best[name]["seconds"], result["seconds"])
                best[name]["cpu"] = min(best[name]["cpu"], result["cpu"])
                if result["digest"] != best[name]["digest"]:
                    best[name]["digest"] = "differs between rounds"
    print(f"Pipeline.process on one first RSS cycle ({args.feeds} feeds x {args.entries} entries), best of "
          f"{args.rounds}:")
    for name, result in best.items():
        print(f"  {name:40} {result['seconds']:6.2f} s ({result['cpu']:.2f} s CPU)  stored {result['stored']}  alerts {result['alerts']}"
              f"  digest {result['digest']}")
    if args.against:
        ours, theirs = best["this checkout"], best[f"against {args.against}"]
        print(f"  speed-up: {theirs['seconds'] / ours['seconds']:.2f}x ({theirs['cpu'] / ours['cpu']:.2f}x in CPU time);"
              f" outcome {'identical' if ours['digest'] == theirs['digest'] else 'DIFFERENT'}")
        return 0 if ours["digest"] == theirs["digest"] else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

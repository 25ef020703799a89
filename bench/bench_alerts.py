"""Alert emails per second in a storm, to a local SMTP server, against a plain smtplib loop, in the same run.

N alerts are queued through the real pipeline (``Pipeline.process``: matched,
scored by the shipped rules, stored, alerts queued) into a SQLite store, once;
each round then delivers them from a fresh copy of that store:

- complaint-monitor: ``deliver_pending`` until nothing is pending (rounds of
  200, as the daemon's job sends them): render each email, send it over SMTP,
  record it as sent.
- reference: the same emails, rendered beforehand (not timed), each sent by
  ``smtplib`` over a connection of its own: what a naive sender costs without
  any rendering or bookkeeping.

The SMTP server (aiosmtpd, tests/servers/smtp.py) runs in a child process, so
it shares no interpreter lock with the sender. ``email.storm_threshold`` is set
above N: otherwise a storm for one responder is one summary email, and this
measures emails one by one. The machine is shared: the contenders take turns,
and each one's best round counts.

    .venv/bin/python bench/bench_alerts.py [--mentions 500] [--rounds 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import smtplib
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from monitor.alert import deliver_pending, render_alert  # noqa: E402
from monitor.config import load_config  # noqa: E402
from monitor.mail import SmtpTransport  # noqa: E402
from monitor.mention import Engagement, Mention  # noqa: E402
from monitor.pipeline import Pipeline  # noqa: E402
from monitor.source import Poll  # noqa: E402
from monitor.store import Store  # noqa: E402
from tests.servers.smtp import SmtpServer  # noqa: E402

PRODUCTS = ["kettle", "router", "blender", "laptop", "vacuum", "toaster", "printer", "mattress", "drone", "fridge"]
PROBLEMS = ["charged me twice and still no refund", "broke after a week, support hung up on me",
            "never arrived, I have emailed five times", "caught fire, this is a safety issue",
            "cancelled my order and kept the money, talking to my lawyer"]


def _serve(conn) -> None:
    with SmtpServer() as smtp:
        conn.send(smtp.port)
        while conn.recv() != "stop":
            conn.send(len(smtp.messages))


class Server:
    """aiosmtpd in a child process; ``received()`` counts the emails it accepted."""

    def __init__(self):
        self._conn, child = multiprocessing.Pipe()
        self._process = multiprocessing.get_context("spawn").Process(target=_serve, args=(child,), daemon=True)

    def __enter__(self) -> "Server":
        self._process.start()
        self.port = self._conn.recv()
        return self

    def received(self) -> int:
        self._conn.send("count")
        return self._conn.recv()

    def __exit__(self, *exc) -> None:
        self._conn.send("stop")
        self._process.join(timeout=10)


def build_store(work: Path, port: int, n: int) -> tuple[Path, int]:
    """A config and a store with the alerts the pipeline queued for ``n`` complaints: the config path and
    the number of alerts (a mention the model and rules do not take for a complaint alerts nobody)."""
    config_path = work / "config.yaml"
    config_path.write_text(yaml.safe_dump({
        "brands": [{"name": "Acme", "keywords": ["acme"]}],
        "store": str(work / "queued.db"),
        "email": {"from": "monitor@bench.local", "smtp": {"host": "127.0.0.1", "port": port},
                  "storm_threshold": n + 1},  # one email per alert: no storm summary
        "responders": [{"email": "oncall@bench.local", "min_priority": "P4"}],
        "rules": [str(p) for p in sorted((ROOT / "rules").glob("*.yaml"))],
    }))
    config = load_config(config_path)
    store = Store(config.store_path)
    now = datetime.now(timezone.utc)
    mentions = [Mention(source="reddit", source_id=f"t3_b{i}", url=f"https://reddit.example/r/help/b{i}",
                        title=f"Acme {PRODUCTS[i % len(PRODUCTS)]} order {i}: {PROBLEMS[i % len(PROBLEMS)]}",
                        text=f"Ordered an Acme {PRODUCTS[i % len(PRODUCTS)]} (order {i}). It "
                             f"{PROBLEMS[i % len(PROBLEMS)]}. Nobody answers. Furious.",
                        author=f"user{i}", place="r/CustomerService", created_at=now - timedelta(minutes=20),
                        fetched_at=now, engagement=Engagement(score=5 + i % 40, comments=i % 7))
                for i in range(n)]
    Pipeline(config=config, store=store).process("reddit", Poll(mentions=mentions))
    queued = store.pending_count()
    store.close()
    return config_path, queued


def fresh_copy(config_path: Path, round_dir: Path) -> Path:
    """The queued store copied for one round, with a config pointing at the copy."""
    round_dir.mkdir()
    shutil.copy(config_path.parent / "queued.db", round_dir / "queued.db")
    raw = yaml.safe_load(config_path.read_text())
    raw["store"] = str(round_dir / "queued.db")
    (round_dir / "config.yaml").write_text(yaml.safe_dump(raw))
    return round_dir / "config.yaml"


def ours(config_path: Path) -> tuple[float, int]:
    config = load_config(config_path)
    store = Store(config.store_path)
    transport = SmtpTransport(settings=config.email.smtp)
    sent = 0
    started = time.perf_counter()
    while True:
        delivery = deliver_pending(store, transport, config)
        sent += delivery.sent
        if not delivery.sent or not delivery.pending:
            break
    seconds = time.perf_counter() - started
    store.close()
    return seconds, sent


def reference(config_path: Path) -> tuple[float, int]:
    config = load_config(config_path)
    store = Store(config.store_path)
    messages = [render_alert(store, alert, config)[0] for alert in store.due_alerts(time.time(), limit=10 ** 9)]
    store.close()
    for msg in messages:  # a built email reads its parts when first asked: here, not in send_message's timing
        msg.is_multipart()
    started = time.perf_counter()
    for msg in messages:
        with smtplib.SMTP("127.0.0.1", config.email.smtp.port, timeout=30) as smtp:
            smtp.send_message(msg)
    return time.perf_counter() - started, len(messages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mentions", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-alerts-"))
    try:
        with Server() as server:
            started = time.perf_counter()
            config_path, n = build_store(work, server.port, args.mentions)
            print(f"{n} alerts queued through the pipeline ({args.mentions} mentions) in"
                  f" {time.perf_counter() - started:.1f} s")
            best = {"complaint-monitor": float("inf"), "reference": float("inf")}
            for r in range(args.rounds):
                for name, contender in (("complaint-monitor", ours), ("reference", reference)):
                    before = server.received()
                    seconds, sent = contender(fresh_copy(config_path, work / f"{name}-{r}"))
                    received = server.received() - before
                    assert sent == received == n, (name, sent, received)
                    best[name] = min(best[name], seconds)
                    print(f"  round {r + 1} {name:<18} {seconds:6.2f} s  {n / seconds:6.0f} emails/s")
            print(f"best of {args.rounds} rounds, interleaved:")
            print(f"complaint-monitor: {n / best['complaint-monitor']:.0f} emails/s (render, send over one"
                  f" connection per round, record each as sent)")
            print(f"reference, smtplib with a connection per email, emails rendered beforehand:"
                  f" {n / best['reference']:.0f} emails/s")
            print(f"ratio: complaint-monitor {best['reference'] / best['complaint-monitor']:.2f}x the reference's rate")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

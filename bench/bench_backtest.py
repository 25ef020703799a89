"""The backtest's speed per mention against the daemon pipeline's, on the same real texts, in the same run.

Texts: short real texts from ``../shared/data`` (VADER's ground-truth tweets, the IBM customer-care
requests, GoEmotions' test comments, the UCI review sentences), one row each, in a CSV with ``id`` and
``text``. Config: bench_scoring's 300 brands and the shipped rules.

* in process: ``monitor.backtest.backtest`` on the whole file (with its progress reports, sent to a
  null stream) against bench_scoring's pipeline stages (match, read, rank, a poll of 100 at a time)
  on the same texts, taking turns, best of ``--rounds``;
* whole process: ``complaint-monitor backtest FILE`` (this checkout's) with the shipped config.yaml, and
  on a one-row file (what starting up costs: imports, config, rules, model).

Times are CPU seconds (this process's, the child's for the whole process): four helpers share the two
cores, and wall time mostly measures them.

    .venv/bin/python bench/bench_backtest.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import csv
import io
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import realdata  # noqa: E402
from bench_scoring import CHUNK, Pipeline, bench_config  # noqa: E402

from monitor.backtest import Progress, backtest, read_mentions  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def short_texts() -> list[str]:
    return realdata.tweet_texts() + [t for t, _ in realdata.goemotions_test()] + [t for t, _ in realdata.uci_sentences()]


def write_csv(path: Path, texts: list[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text"])
        writer.writerows((f"t{i}", text) for i, text in enumerate(texts))


CLI = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from monitor.cli import main; sys.exit(main())"


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def whole_process(path: Path) -> float:
    start = children_cpu()
    subprocess.run([sys.executable, "-c", CLI, "--config", str(ROOT / "config.yaml"), "backtest", str(path),
                    "--top", "1"], check=True, capture_output=True)
    return children_cpu() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not realdata.available():
        print(f"skipped: no shared data at {realdata.DATA}")
        return 0
    texts = short_texts()
    config = bench_config()
    pipeline = Pipeline(config)
    pipeline.prepare(texts)
    with tempfile.TemporaryDirectory() as tmp:
        path, one = Path(tmp) / "texts.csv", Path(tmp) / "one.csv"
        write_csv(path, texts)
        write_csv(one, texts[:1])
        frame = read_mentions(path)
        best = {"backtest": float("inf"), "pipeline": float("inf")}
        for _ in range(args.rounds):
            progress = Progress(total=len(frame))
            progress.stream = io.StringIO()
            start = time.process_time()
            backtest(frame, config=config, progress=progress)
            best["backtest"] = min(best["backtest"], time.process_time() - start)
            start = time.process_time()
            for i in range(0, len(texts), CHUNK):
                pipeline.poll(texts[i : i + CHUNK])
            best["pipeline"] = min(best["pipeline"], time.process_time() - start)
        print(f"{len(texts):,} real short texts, best of {args.rounds} rounds, taking turns")
        print(f"  pipeline stages (polls of {CHUNK}): {len(texts) / best['pipeline']:8,.0f} mentions/s")
        print(f"  backtest() on the file        : {len(texts) / best['backtest']:8,.0f} rows/s"
              f"  ({best['pipeline'] / best['backtest']:.2f}x the pipeline's rate, setting up its scorer included)")
        started, whole = min(whole_process(one) for _ in range(args.rounds)), whole_process(path)
        print(f"  complaint-monitor backtest    : {len(texts) / whole:8,.0f} rows/s whole process ({whole:.1f} s),"
              f" of which {started:.1f} s starting up (a one-row file);"
              f" {(len(texts) - 1) / (whole - started):,.0f} rows/s after it")
    return 0


if __name__ == "__main__":
    sys.exit(main())

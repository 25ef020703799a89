"""The ``complaint-monitor`` command."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from contextlib import nullcontext

from .config import ConfigError, load_config

log = logging.getLogger("complaint_monitor")


_formatter = None


def _load(path):
    """Load the config and teach the log formatter its secrets before anything can log them."""
    from .logs import config_secrets
    config = load_config(path)
    if _formatter is not None:
        _formatter.add_secrets(config_secrets(config))
    return config


def cmd_check_config(args) -> int:
    from .rules import RuleBook
    from .source import validate_source_settings
    config = _load(args.config)
    validate_source_settings(config)
    book = RuleBook.from_config(config)
    if not book.rules:
        print(f"warning: {args.config}: no rules loaded, so every mention ranks urgency 0 and virality 0"
              " (leave the rules key out to use the shipped packs)", file=sys.stderr)
    packs = " from the shipped packs" if config.rules is None else ""
    print(f"{args.config}: OK ({len(config.brands)} brands, sources: {', '.join(config.sources) or 'none'},"
          f" {len(book.rules)} rules{packs}, {len(config.responders)} responders)")
    return 0


def cmd_once(args) -> int:
    from .alert import waiting
    from .app import Monitor
    from .daemon import StoreLock
    from .health import waiting_lines
    from .logs import Redactor, config_secrets
    from .sharing import is_shared_store
    config = _load(args.config)
    # The same lock as the daemon's: two senders on one outbox would email every alert twice. A PostgreSQL
    # store has none: its leases let this run share the work with the daemons running on it.
    with nullcontext() if is_shared_store(config.store) else StoreLock(config.store_path):
        monitor = Monitor.from_config(config, once=True)  # one poll: the sources open no streams
        try:
            reports = monitor.poll_all()
            delivery = monitor.deliver()
            monitor.deliver_digests()
            sent, pending = delivery.sent, monitor.store.pending_count()
            queued = waiting(monitor.store, config)
        finally:
            monitor.close()
    stored = sum(len(r.outcome.stored) for r in reports if r.outcome)
    errors = sum(len(r.errors) for r in reports)
    print(f"{stored} new mentions, {sent} alerts sent, {pending} pending, {errors} source errors")
    for line in waiting_lines([w for w in queued if w.held]):
        print(line)
    undelivered = [w for w in queued if not w.held]
    if undelivered:
        print(f"{sum(w.count for w in undelivered)} alerts could not be delivered yet; they stay queued for the"
              " next run", file=sys.stderr)
        redact = Redactor(config_secrets(config))  # an SMTP error may quote what it was sent
        for line in waiting_lines(undelivered):
            print(redact(line), file=sys.stderr)
    return 0


def cmd_test_email(args) -> int:
    from .alert import send_test_email
    from .mail import transport_for
    config = _load(args.config)
    to = args.to or (config.responders[0].email if config.responders else None)
    if not to:
        print("no --to given and no responders configured", file=sys.stderr)
        return 2
    transport = transport_for(config.email, base_dir=config.base_dir)
    try:
        message_id = send_test_email(transport, config, to=to)
    except Exception as err:
        print(f"test email to {to} via {transport.description} failed: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    print(f"test email {message_id} sent to {to} via {transport.description}")
    return 0


def cmd_run(args) -> int:
    from .daemon import run
    run(_load(args.config))
    return 0


def _utc_time(arg: str):
    """An ISO date or time for an option; UTC unless it says otherwise."""
    from datetime import datetime, timezone
    try:
        when = datetime.fromisoformat(arg)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date or time such as 2026-11-01T12:00Z: {arg!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _read_text(arg: str) -> str:
    if arg == "-":
        return sys.stdin.buffer.read().decode("utf-8", errors="replace")
    return arg


def cmd_score(args) -> int:
    from .match import BrandMatcher, quote_around
    from .mention import Mention
    from .score import Scorer, format_explanation
    config = _load(args.config)
    text = _read_text(args.text)
    matcher = BrandMatcher(config.brands)
    scorer = Scorer.from_config(config, own_account=matcher.is_own_account)
    mention = Mention(source="cli", source_id="-", url="", title=args.title or "", text=text,
                      author=args.author)
    haystack = f"{mention.title}\n{text}" if mention.title else text
    match = matcher.match(haystack)
    if match:
        mention.brand = match.brand
        mention.quote = quote_around(haystack, match.start, match.end)
    scores = scorer.score(mention, match)
    result = {"brand": mention.brand, "quote": mention.quote, **scores.explain()}
    print(json.dumps(result, indent=2) if args.json else format_explanation(result))
    return 0


def cmd_explain(args) -> int:
    from .score import format_explanation, stored_explanation
    from .store import Store
    config = _load(args.config)
    store = Store(config.store_path)
    row = store.mention(args.mention_id)
    if row is None:
        print(f"no mention {args.mention_id} in {config.store_path}", file=sys.stderr)
        return 1
    result = stored_explanation(row)
    # Priority decays once a story calms down; the level it reached is what the responder was told.
    alerted = store.sent_priorities(args.mention_id)
    result.update(peak_priority=row.peak_priority, alerted=alerted)
    print(json.dumps(result, indent=2) if args.json else format_explanation(result)
          + f"\nhighest priority reached: {row.peak_priority} (alerted: {', '.join(alerted) or 'none'})")
    return 0


def cmd_backtest(args) -> int:
    from .backtest import BacktestError, Progress, backtest, format_ranking, read_mentions, write_scored
    config = _load(args.config)
    try:
        frame = read_mentions(args.file)
    except BacktestError as err:
        print(f"backtest: {err}", file=sys.stderr)
        return 1
    scored = backtest(frame, config=config, brand=args.brand, now=args.now,
                      progress=Progress(total=len(frame)) if len(frame) >= 1000 else None)
    print(format_ranking(scored, top=args.top))
    if args.out:
        write_scored(scored, args.out)
        print(f"wrote {len(scored)} scored rows to {args.out}")
    return 0


LABELS = {"complaint": True, "1": True, "true": True, "yes": True, "not": False, "0": False, "false": False,
          "no": False}


def cmd_label(args) -> int:
    """Record people's word on mentions: one on the command line, or a CSV of mention_id,label."""
    import time

    from .store import Store
    config = _load(args.config)
    if args.file:
        import pandas as pd
        try:
            rows = pd.read_csv(args.file, dtype=str, keep_default_na=False)
        except (OSError, ValueError) as err:
            print(f"label: cannot read {args.file}: {err}", file=sys.stderr)
            return 2
        if not {"mention_id", "label"} <= set(rows.columns):
            print(f"label: {args.file} needs columns mention_id and label", file=sys.stderr)
            return 2
        pairs = list(zip(rows["mention_id"], rows["label"]))
    elif args.mention_id is not None and args.label is not None:
        pairs = [(args.mention_id, args.label)]
    else:
        print("label: give MENTION_ID complaint|not, or --import FILE.csv", file=sys.stderr)
        return 2
    store = Store(config.store_path)
    stored, problems = 0, []
    try:
        for line, (mention_id, label) in enumerate(pairs, start=1):
            value = LABELS.get(str(label).strip().lower())
            if value is None or not str(mention_id).strip().isdigit():
                problems.append(f"row {line}: {mention_id!r}, {label!r}: want a mention id and complaint|not")
            elif store.set_label(int(mention_id), value, now=time.time(), by=args.by):
                stored += 1
            else:
                problems.append(f"row {line}: no mention {mention_id} in {config.store_path}")
    finally:
        store.close()
    for problem in problems:
        print(f"label: {problem}", file=sys.stderr)
    print(f"{stored} labels stored")
    return 1 if problems else 0


def cmd_train(args) -> int:
    from pathlib import Path

    from .train import DEFAULT_DATA, SEED, TrainingError, train, train_local
    config = _load(args.config)
    out = Path(args.out) if args.out else config.complaint_model_path
    data = Path(args.data) if args.data else DEFAULT_DATA
    seed = args.seed or SEED
    try:
        if args.local:
            train_local(config, out=out, data=data, folds=args.folds, seed=seed)
        else:
            train(out=out, data=data, folds=args.folds, seed=seed)
    except TrainingError as err:
        print(f"train: {err}", file=sys.stderr)
        return 2
    return 0


def _filters(args) -> dict:
    return {"brand": args.brand, "since": args.since, "until": args.until, "source": args.source,
            "min_priority": args.min_priority}


def _analyst_command(name: str, run) -> int:
    """Bad filters or a missing store get a one-line error and exit code 2."""
    try:
        print(run())
    except (ValueError, OSError) as err:  # OSError: --out names a missing folder, a file's child, a folder
        print(f"{name}: {err}", file=sys.stderr)
        return 2
    return 0


def cmd_export(args) -> int:
    from .analysis import export

    def run():
        rows = export(_load(args.config), args.out, fmt=args.format, table=args.table, **_filters(args))
        return f"wrote {rows} {args.table} to {args.out}"
    return _analyst_command("export", run)


def cmd_report(args) -> int:
    from .report import build_report
    return _analyst_command("report", lambda: f"wrote {build_report(_load(args.config), args.out, **_filters(args))}")


def cmd_status(args) -> int:
    from .health import format_status, status
    from .source import validate_source_settings
    from .store import Store
    config = _load(args.config)
    intervals = {name: settings.interval for name, (_, settings) in validate_source_settings(config).items()}
    from .logs import Redactor, config_secrets
    from .alert import waiting
    from .sharing import daemons_status, format_daemons, is_shared_store
    store = Store(config.store_path)
    report = status(store, intervals, waiting=waiting(store, config))
    text = json.dumps(report, indent=2) if args.json else format_status(report)
    if is_shared_store(config.store):  # several daemons may share it: who runs, and who does what
        report["daemons"] = daemons_status(store)
        text = json.dumps(report, indent=2) if args.json else "\n".join([text, *format_daemons(report["daemons"])])
    print(Redactor(config_secrets(config))(text))
    return 0


def _add_filters(p: argparse.ArgumentParser) -> None:
    for flag in ("--brand", "--source"):
        p.add_argument(flag, default=None)
    p.add_argument("--since", default=None, help="ISO date or time, UTC unless it names a zone")
    p.add_argument("--until", default=None, help="ISO date or time (exclusive)")
    p.add_argument("--min-priority", choices=["P1", "P2", "P3", "P4"], default=None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="complaint-monitor", description=__doc__)
    parser.add_argument("--config", default="config.yaml", help="config file (default ./config.yaml)")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name, func, help):
        p = sub.add_parser(name, help=help)
        p.add_argument("--config", default=argparse.SUPPRESS, help="config file (default ./config.yaml)")
        p.set_defaults(func=func)
        return p

    command("run", cmd_run, "run the daemon")
    command("once", cmd_once, "poll every source once, deliver alerts, exit")
    p = command("status", cmd_status, "per source: last success, last error, items in the last hour; the outbox")
    p.add_argument("--json", action="store_true")
    command("check-config", cmd_check_config, "validate the config and the rule packs")
    p = command("test-email", cmd_test_email, "send a sample alert to check the email settings")
    p.add_argument("--to", default=None, help="address (default: the first responder)")
    p = command("score", cmd_score, "score a text and explain the result")
    p.add_argument("text", help="the text, or - to read it from standard input")
    p.add_argument("--title", default="")
    p.add_argument("--author", default=None)
    p.add_argument("--json", action="store_true")
    p = command("explain", cmd_explain, "a stored mention's scores: rules fired with points, signals with values")
    p.add_argument("mention_id", type=int)
    p.add_argument("--json", action="store_true")
    p = command("backtest", cmd_backtest, "replay a CSV or JSON Lines file of mentions through the current rules")
    p.add_argument("file", help="CSV or .jsonl with columns id and text (title, author, source, kind, url, place,"
                                " subreddit, created_at, fetched_at, score, comments, upvote_ratio, awards, reach,"
                                " sightings, brand_spike optional); rows with the same id are successive readings")
    p.add_argument("--now", type=_utc_time, default=None,
                   help="when rows without fetched_at were read (ISO time, UTC unless it says otherwise;"
                        " default: the newest time in the file)")
    p.add_argument("--brand", default=None, help="treat every row as a mention of this configured brand")
    p.add_argument("--out", default=None, help="write every input row with the scores added (.csv or .jsonl)")
    p.add_argument("--top", type=int, default=20, help="rows of the ranking to print (default 20)")
    p = command("label", cmd_label, "say whether a stored mention is a complaint (the model learns from it)")
    p.add_argument("mention_id", nargs="?", default=None)
    p.add_argument("label", nargs="?", default=None, choices=["complaint", "not"])
    p.add_argument("--import", dest="file", default=None, help="CSV with columns mention_id, label (complaint|not)")
    p.add_argument("--by", default="", help="who says so (kept with the label)")
    p = command("train", cmd_train, "train the complaint model from the shared data (and, with --local, labels)")
    p.add_argument("--data", default=None, help="the shared data folder (default ../shared/data beside the project)")
    p.add_argument("--out", default=None, help="model file to write (default: complaint.model from the config)")
    p.add_argument("--folds", type=int, default=3, help="cross-validation folds to report AUC per source (0: none)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: the one the shipped model used)")
    p.add_argument("--local", action="store_true", help="add the labels stored by `label`; report AUC before/after")
    p = command("export", cmd_export, "write stored mentions (or alerts, snapshots, stories) to a file")
    p.add_argument("--format", choices=["csv", "parquet", "jsonl"], default="csv")
    p.add_argument("--table", choices=["mentions", "alerts", "snapshots", "stories"], default="mentions")
    p.add_argument("--out", required=True)
    _add_filters(p)
    p = command("report", cmd_report, "write an HTML report with charts (index.html and PNGs) into a folder")
    p.add_argument("--out", required=True, help="folder for index.html and the charts")
    _add_filters(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    global _formatter
    from .logs import setup
    args = build_parser().parse_args(argv)
    _formatter = setup(verbose=args.verbose)
    try:
        code = args.func(args)
        sys.stdout.flush()  # here, so a reader that went away is seen below and not at interpreter exit
        return code
    except BrokenPipeError:
        # The reader (`| head`) stopped reading: nothing more to say. stdout goes to devnull so
        # Python's own flush at exit does not fail again (the way the Python docs give for SIGPIPE).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except ConfigError as err:
        print(f"config error in {args.config}:\n{err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as err:
        from .daemon import EXIT_ALREADY_RUNNING, AlreadyRunning
        if isinstance(err, AlreadyRunning):
            print(str(err), file=sys.stderr)
            return EXIT_ALREADY_RUNNING
        raise


if __name__ == "__main__":
    sys.exit(main())

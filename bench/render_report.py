"""Build a store through the real pipeline, write the report, and screenshot it in headless Chromium.

    .venv/bin/python bench/render_report.py [--out DIR] [--empty]

The mentions are made up here from a few sentence templates, but they go
through the real matcher, scorer, shipped rule packs, store, engagement
updates and alert delivery (to an outbox folder). Chromium is optional: without
it the script still writes the report and says where it is. Look at the PNG.
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from monitor.alert import deliver_pending  # noqa: E402
from monitor.config import load_config  # noqa: E402
from monitor.mail import transport_for  # noqa: E402
from monitor.mention import Engagement, Mention  # noqa: E402
from monitor.pipeline import Pipeline  # noqa: E402
from monitor.report import build_report  # noqa: E402
from monitor.source import Poll  # noqa: E402
from monitor.store import Store, to_epoch  # noqa: E402

BRANDS = {"Acme": 1.0, "Globex": 0.6, "Initech": 0.35}
COMPLAINTS = [
    "{b} charged me twice for the same order and support hung up on me. Still no refund, absolutely furious.",
    "{b} lost my parcel again. I have emailed them 5 times and nobody answers.",
    "The {b} app keeps crashing when I try to pay. Useless.",
    "My {b} kettle caught fire on day two. Dangerous product, I'm talking to a lawyer.",
    "Waited 3 hours on hold with {b} today. Horrible service, never again.",
    "{b} cancelled my account without warning and kept my money.",
]
NEUTRAL = [
    "Does {b} ship to Canada?",
    "{b} delivery arrived on Tuesday, box was a bit dented.",
    "Anyone know if {b} has a student discount?",
    "{b} support sorted my refund out in five minutes, great service, thank you!",
    "Honestly love my new {b} headphones.",
]
TITLES = ["<b>{b}</b> & the missing refund", "{b} support is a joke", "Warning about {b}", "{b} again...",
          "Question about {b}", "{b} experience"]


def write_config(folder: Path) -> Path:
    config = {
        "brands": [{"name": b, "keywords": [b.lower()]} for b in BRANDS],
        "store": str(folder / "store.db"),
        "email": {"from": "monitor@example.test", "outbox_dir": str(folder / "outbox")},
        "responders": [{"email": "oncall@example.test", "brands": "all", "min_priority": "P2"}],
        "rules": sorted(str(p) for p in (ROOT / "rules").glob("*.yaml")),
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def history(now: datetime, days: int, rnd: random.Random) -> list[Mention]:
    mentions = []
    for day in range(days):
        for brand, weight in BRANDS.items():
            # A bad week for Acme in the middle of the window.
            surge = 3 if brand == "Acme" and days // 2 <= day < days // 2 + 5 else 1
            for n in range(rnd.randint(0, int(6 * weight * surge))):
                complaint = rnd.random() < (0.75 if surge > 1 else 0.45)
                text = rnd.choice(COMPLAINTS if complaint else NEUTRAL).format(b=brand)
                source = "reddit" if rnd.random() < 0.7 else "rss"
                created = now - timedelta(days=days - day - rnd.random())
                reddit = source == "reddit"
                mentions.append(Mention(
                    source=source, source_id=f"{brand}-{day}-{n}", url=f"https://{source}.example.test/{brand}/{day}/{n}",
                    title=rnd.choice(TITLES).format(b=brand), text=text, author=f"user{rnd.randint(1, 999)}",
                    place="r/CustomerService" if reddit else "Consumer blog", created_at=created,
                    # Fetched minutes ago: response times measure our own delay, sent right after.
                    fetched_at=now - timedelta(minutes=rnd.uniform(2, 90)),
                    engagement=Engagement(score=rnd.randint(1, 30), comments=rnd.randint(0, 8)) if reddit else Engagement()))
    return mentions


def build_store(folder: Path, *, days: int = 30, seed: int = 3) -> Path:
    rnd = random.Random(seed)
    config_path = write_config(folder)
    config = load_config(config_path)
    store = Store(config.store_path)
    pipeline = Pipeline(config=config, store=store)
    now = datetime.now(timezone.utc)
    mentions = history(now, days, rnd)
    # A few Reddit posts from this morning take off: hourly engagement readings.
    risers = [m for m in mentions if m.source == "reddit"][-6:]
    for rank, mention in enumerate(risers):
        mention.created_at = now - timedelta(hours=11 - rank)
        mention.fetched_at = mention.created_at + timedelta(minutes=4)
    for source in ("reddit", "rss"):
        pipeline.process(source, Poll(mentions=[m for m in mentions if m.source == source]), now=now)
    for rank, mention in enumerate(risers):
        score, comments = mention.engagement.score, mention.engagement.comments
        for hours in range(1, 11 - rank):
            score = int(score * rnd.uniform(1.2, 1.5 + rank / 10)) + 5
            comments = int(comments + score * rnd.uniform(0.02, 0.1))
            update = Mention(source="reddit", source_id=mention.source_id, url=mention.url, title=mention.title,
                             text=mention.text, created_at=mention.created_at,
                             fetched_at=mention.created_at + timedelta(hours=hours),
                             engagement=Engagement(score=score, comments=comments, upvote_ratio=0.9))
            pipeline.update_engagement("reddit", [update])
    deliver_pending(store, transport_for(config.email, base_dir=config.base_dir), config)
    # Stories are clustered by another stage; two are written straight into the store here.
    with store.transaction() as db:
        for key, members in (("riser", risers[-2:]), ("pair", risers[:2])):
            first = min(m.created_at for m in members)
            story = db.exec_driver_sql("INSERT INTO stories (brand, key, title, url, first_seen, last_seen, sightings)"
                               " VALUES (?, ?, ?, ?, ?, ?, ?)",
                               (members[0].brand, key, members[0].title, members[0].url, to_epoch(first),
                                to_epoch(now), len(members))).lastrowid
            db.exec_driver_sql("UPDATE mentions SET story_id = ? WHERE source = 'reddit' AND source_id = ?",
                           [(story, m.source_id) for m in members])
    store.close()
    return config_path


def screenshot(index: Path, png: Path) -> bool:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not browser:
        print("chromium not found: open the report in a browser to look at it")
        return False
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={png}", "--window-size=1200,2400", index.resolve().as_uri()],
                   check=True, capture_output=True, timeout=120)
    return png.exists() and png.stat().st_size > 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="report folder (default: a temporary one, kept)")
    parser.add_argument("--empty", action="store_true", help="report on an empty store")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cm-report-"))
    if args.empty:
        Store(work / "store.db").close()
        where = work / "store.db"
    else:
        where = build_store(work)
    out = args.out or work / "report"
    index = build_report(where, out)
    print(f"report: {index}")
    for png in sorted(out.glob("*.png")):
        print(f"  {png.name}: {png.stat().st_size:,} bytes")
    shot = out.parent / f"{out.name}-screenshot.png"
    if screenshot(index, shot):
        print(f"screenshot: {shot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A report an analyst can open in a browser: index.html with PNG charts beside it.

Everything comes from the loaders in ``analysis`` with the same filters; the
charts are drawn by matplotlib (Agg, no display needed) and the page by jinja2
with autoescape, because titles and quotes are written by strangers.
The page has no remote assets: it opens offline.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from .analysis import load_alerts, load_mentions, load_snapshots, load_stories
from .config import PRIORITIES, Config, Thresholds, load_config

TOP_STORIES = 8
PRIORITY_COLOURS = {"P1": "#c0392b", "P2": "#e67e22", "P3": "#d4ac0d", "P4": "#95a5a6"}

_env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True,
                          undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


@dataclass
class Chart:
    file: str
    title: str
    caption: str


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")  # files only; never look for a display
    import matplotlib.pyplot as plt
    return plt


def _save(fig, out_dir: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out_dir / name, dpi=100)
    _pyplot().close(fig)
    return name


def _thresholds(where) -> Thresholds:
    if isinstance(where, Config):
        return where.thresholds
    if Path(where).suffix.lower() in (".yaml", ".yml"):
        return load_config(where).thresholds
    return Thresholds()


def _safe_link(url: str | None) -> str | None:
    # Autoescape stops markup, not a javascript: URL in an href.
    return url if isinstance(url, str) and url.lower().startswith(("http://", "https://")) else None


def _day_axis(ax, days: pd.DatetimeIndex) -> None:
    """The x axis spans the data's days, half a day either side: matplotlib's default around a single
    day is years wide."""
    import matplotlib.dates as mdates
    ax.set_xlim(days.min() - pd.Timedelta(hours=12), days.max() + pd.Timedelta(hours=12))
    locator = mdates.AutoDateLocator(minticks=1, maxticks=10)
    if len(days) < 3:
        locator = mdates.DayLocator()  # a tick for each day, not one every few hours
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%b %d", tz=timezone.utc))


def chart_mentions_per_day(mentions: pd.DataFrame, out_dir: Path) -> Chart:
    plt = _pyplot()
    daily = (mentions.groupby([mentions["created_at"].dt.floor("D"), "brand"], observed=True).size()
             .unstack("brand", fill_value=0))
    daily = daily.reindex(pd.date_range(daily.index.min(), daily.index.max(), freq="D"), fill_value=0)
    fig, ax = plt.subplots(figsize=(10, 3.6))
    for brand in daily.columns:
        ax.plot(daily.index, daily[brand], marker="o", markersize=3, linewidth=1.5, label=str(brand))
    ax.set_ylabel("mentions")
    ax.set_xlabel("day (UTC)")
    ax.set_ylim(bottom=0)
    _day_axis(ax, daily.index)
    ax.grid(alpha=0.3)
    ax.legend(title="brand", fontsize=8)
    fig.autofmt_xdate()
    return Chart(_save(fig, out_dir, "mentions_per_day.png"), "Mentions per day",
                 "Stored mentions by the day they were posted, one line per brand.")


def chart_sentiment(mentions: pd.DataFrame, out_dir: Path) -> Chart:
    plt = _pyplot()
    by_day = mentions.groupby([mentions["created_at"].dt.floor("D"), "brand"], observed=True)["compound"]
    sums, counts = by_day.sum().unstack("brand"), by_day.count().unstack("brand")
    days = pd.date_range(sums.index.min(), sums.index.max(), freq="D")
    sums, counts = sums.reindex(days).fillna(0), counts.reindex(days).fillna(0)
    # A day with two posts is noise; a rolling week weighs every mention once.
    weekly = sums.rolling(7, min_periods=1).sum() / counts.rolling(7, min_periods=1).sum()
    daily = sums / counts.where(counts > 0)
    fig, ax = plt.subplots(figsize=(10, 3.6))
    for number, brand in enumerate(weekly.columns):
        colour = f"C{number}"
        ax.plot(weekly.index, weekly[brand], color=colour, linewidth=2, label=str(brand))
        ax.scatter(daily.index, daily[brand], color=colour, s=8, alpha=0.35)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("VADER compound")
    ax.set_xlabel("day (UTC)")
    _day_axis(ax, days)
    ax.grid(alpha=0.3)
    ax.legend(title="brand", fontsize=8)
    fig.autofmt_xdate()
    return Chart(_save(fig, out_dir, "sentiment.png"), "Sentiment trend",
                 "Mean VADER compound score per brand over the last 7 days (line) and per day (dots):"
                 " -1 is as negative as text gets, +1 as positive.")


def chart_urgency(mentions: pd.DataFrame, thresholds: Thresholds, out_dir: Path) -> Chart:
    plt = _pyplot()
    fig, (hist, bars) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [3, 1]})
    brands = [b for b in mentions["brand"].cat.categories if (mentions["brand"] == b).any()]
    hist.hist([mentions.loc[mentions["brand"] == b, "urgency"].dropna() for b in brands], bins=range(0, 105, 5),
              stacked=True, label=brands)
    for name, value in (("P3", thresholds.p3), ("P2", thresholds.p2), ("P1", thresholds.p1)):
        hist.axvline(value, color=PRIORITY_COLOURS[name], linestyle="--", linewidth=1)
        hist.text(value + 0.5, 0.97, name, color=PRIORITY_COLOURS[name], transform=hist.get_xaxis_transform(),
                  va="top", fontsize=9)
    hist.set_xlim(0, 100)
    hist.set_xlabel("urgency (0-100)")
    hist.set_ylabel("mentions")
    hist.legend(title="brand", fontsize=8)
    counts = mentions["peak_priority"].value_counts().reindex(list(PRIORITIES), fill_value=0)
    bars.bar(counts.index, counts.values, color=[PRIORITY_COLOURS[p] for p in counts.index])
    for x, value in enumerate(counts.values):
        bars.text(x, value, str(value), ha="center", va="bottom", fontsize=9)
    bars.set_title("by highest priority reached", fontsize=10)
    bars.margins(y=0.15)
    return Chart(_save(fig, out_dir, "urgency.png"), "Urgency distribution",
                 f"Urgency of every mention (dashed: the P3/P2/P1 thresholds {thresholds.p3:g}, {thresholds.p2:g},"
                 f" {thresholds.p1:g}); priority also counts virality risk.")


def top_stories(mentions: pd.DataFrame, stories: pd.DataFrame, top: int) -> tuple[pd.DataFrame, bool]:
    """The most viral stories with the ids of their mentions; single mentions stand in before clustering ran."""
    clustered = stories[stories["mentions"] > 0].head(top)
    if len(clustered):
        members = mentions.dropna(subset=["story_id"]).groupby("story_id")["id"].apply(list)
        rows = clustered.assign(mention_ids=[members.get(i, []) for i in clustered["id"]])
        return rows[["title", "url", "brand", "peak_priority", "virality", "mentions", "sightings", "first_seen",
                     "mention_ids"]], True
    rows = mentions.nlargest(top, "virality")
    return pd.DataFrame({"title": rows["title"], "url": rows["url"], "brand": rows["brand"],
                         "peak_priority": rows["peak_priority"], "virality": rows["virality"], "mentions": 1,
                         "sightings": 1, "first_seen": rows["created_at"],
                         "mention_ids": [[i] for i in rows["id"]]}), False


def growth_curve(snapshots: pd.DataFrame, mention_ids: list[int], first_seen: pd.Timestamp) -> pd.Series:
    """Score + comments of a story over hours since it was first seen, summed over its mentions.

    Each mention's last reading carries forward until its next one, so a story
    seen in three places adds up three running totals.
    """
    mine = snapshots[snapshots["mention_id"].isin(mention_ids)]
    if mine.empty:
        return pd.Series(dtype="float64")
    engagement = mine["score"].fillna(0) + mine["comments"].fillna(0)
    wide = (pd.DataFrame({"taken_at": mine["taken_at"], "mention_id": mine["mention_id"],
                          "engagement": engagement.astype("float64")})
            .pivot_table(index="taken_at", columns="mention_id", values="engagement", aggfunc="last")
            .ffill().fillna(0))
    total = wide.sum(axis=1)
    # A reading can predate the story's first_seen (a backfill, or a story
    # clustered after its first mention was read): the curve starts at 0 either way.
    origin = min(first_seen, total.index.min())
    total.index = (total.index - origin) / pd.Timedelta(hours=1)
    return total


def chart_stories(top: pd.DataFrame, snapshots: pd.DataFrame, out_dir: Path) -> Chart | None:
    curves = [(row, growth_curve(snapshots, row.mention_ids, row.first_seen)) for row in top.itertuples()]
    curves = [(row, curve) for row, curve in curves if len(curve)]
    if not curves:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 4.2))
    for number, (row, curve) in enumerate(curves, start=1):
        title = row.title if len(row.title) <= 45 else row.title[:44] + "…"
        ax.plot(curve.index, curve.values, marker="o", markersize=3, label=f"{number}. {title}")
    ax.set_xlabel("hours since first seen")
    ax.set_ylabel("score + comments")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return Chart(_save(fig, out_dir, "stories.png"), "Top stories: growth",
                 "Score plus comments at each reading, for the stories in the table below (numbers match).")


def chart_response(alerts: pd.DataFrame, out_dir: Path) -> Chart | None:
    # First alerts only: a follow-up is sent hours after the mention was found, on purpose.
    sent = alerts[(alerts["kind"] == "alert")].dropna(subset=["response_time"])
    if sent.empty:
        return None
    plt = _pyplot()
    minutes = sent["response_time"].dt.total_seconds() / 60
    # Held on purpose (digests, quiet hours) apart from the rest: a held P3 is not a slow P3.
    groups = [(f"{p} held" if held else p, p, (sent["priority"] == p) & (sent["held"] == held))
              for p in PRIORITIES for held in (False, True)]
    groups = [g for g in groups if g[2].any()]
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.45 * len(groups)))
    box = ax.boxplot([minutes[rows] for _, _, rows in groups], orientation="horizontal", patch_artist=True)
    ax.set_yticks(range(1, len(groups) + 1), [label for label, _, _ in groups])
    for patch, (label, p, _) in zip(box["boxes"], groups):
        patch.set_facecolor(PRIORITY_COLOURS[p])
        if label.endswith("held"):
            patch.set_hatch("//")
            patch.set_alpha(0.5)
    if minutes.max() > 100 * max(minutes.min(), 0.1):
        ax.set_xscale("log")
    ax.set_xlabel("minutes from the poll that found the mention to the alert email")
    ax.invert_yaxis()
    ax.grid(alpha=0.3, axis="x")
    return Chart(_save(fig, out_dir, "response.png"), "Response time",
                 "Per priority: time from fetching the mention (mentions.fetched_at) to sending its first alert"
                 " (alerts.sent_at). \u201cheld\u201d rows waited on purpose (a digest, quiet hours) and are"
                 " no delay; the others are the monitor's own. The source's delay before we could see a post"
                 " is not included.")


def breakdown(mentions: pd.DataFrame, column: str, *, top: int = 10) -> list[dict[str, Any]]:
    """Mentions per category (rule tags), place or source: how many, how many reached P2 or higher,
    and their mean sentiment, largest first."""
    frame = mentions[[column, "peak_priority", "compound"]]
    if column == "tags":
        frame = frame.assign(tags=[t if t else ["(no tag)"] for t in frame["tags"]]).explode("tags")
    frame = frame.assign(**{column: frame[column].astype("string").fillna("(unknown)")})
    grouped = frame.groupby(column, observed=True)
    table = pd.DataFrame({"mentions": grouped.size(),
                          "urgent": grouped["peak_priority"].apply(lambda p: int((p >= "P2").sum())),
                          "compound": grouped["compound"].mean()})
    table = table.sort_values(["mentions", "urgent"], ascending=False).head(top)
    return [{"name": name, "mentions": int(r.mentions), "urgent": int(r.urgent),
             "compound": f"{r.compound:+.2f}" if pd.notna(r.compound) else "\u2013"} for name, r in table.iterrows()]


def _describe(filters: dict[str, Any]) -> str:
    shown = [f"{k.replace('_', ' ')} {', '.join(v) if isinstance(v, (list, tuple)) else v}"
             for k, v in filters.items() if v is not None]
    return "; ".join(shown) or "all stored history"


def _minutes(delta: pd.Timedelta) -> str:
    if pd.isna(delta):
        return "–"
    minutes = delta.total_seconds() / 60
    return f"{minutes:.1f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def build_report(where: str | Path | Config, out_dir: str | Path, *, top: int = TOP_STORIES,
                 now: datetime | None = None, **filters: Any) -> Path:
    """Write out_dir/index.html and its PNG charts; returns the index path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    mentions = load_mentions(where, **filters)
    context: dict[str, Any] = {
        "generated": (now or datetime.now(timezone.utc)).strftime("%Y-%m-%d %H:%M UTC"),
        "filters": _describe(filters), "empty": mentions.empty, "charts": [], "notes": [],
    }
    if not mentions.empty:
        alerts = load_alerts(where, **filters)
        snapshots = load_snapshots(where, brand=filters.get("brand"), source=filters.get("source"),
                                   min_priority=filters.get("min_priority"))
        stories = load_stories(where, **filters)
        charts = context["charts"]
        charts.append(chart_mentions_per_day(mentions, out_dir))
        charts.append(chart_sentiment(mentions, out_dir))
        charts.append(chart_urgency(mentions, _thresholds(where), out_dir))
        top_rows, clustered = top_stories(mentions, stories, top)
        story_chart = chart_stories(top_rows, snapshots, out_dir)
        if story_chart:
            charts.append(story_chart)
        else:
            context["notes"].append("No engagement readings yet, so no growth curves.")
        response_chart = chart_response(alerts, out_dir)
        if response_chart:
            charts.append(response_chart)
        else:
            context["notes"].append("No alert has been sent yet, so no response times.")
        sent = alerts.dropna(subset=["response_time"])
        first = sent[(sent["kind"] == "alert") & ~sent["held"]]
        context.update(
            mentions=len(mentions), brands=", ".join(str(b) for b in mentions["brand"].dropna().unique()),
            first=mentions["created_at"].min().strftime("%Y-%m-%d"),
            last=mentions["created_at"].max().strftime("%Y-%m-%d"),
            # The highest level each mention reached: its priority decays once the growth stops.
            by_priority=[(p, int((mentions["peak_priority"] == p).sum()), PRIORITY_COLOURS[p]) for p in PRIORITIES],
            alerts_sent=len(sent), median_response=_minutes(first["response_time"].median()),
            breakdowns=[("Complaint category (rule tags)", breakdown(mentions, "tags")),
                        ("Place", breakdown(mentions, "place")), ("Source", breakdown(mentions, "source"))],
            clustered=clustered,
            stories=[{"title": r.title, "link": _safe_link(r.url), "brand": r.brand, "priority": r.peak_priority,
                      "virality": f"{r.virality:.0f}" if pd.notna(r.virality) else "–", "mentions": r.mentions,
                      "sightings": r.sightings, "first_seen": r.first_seen.strftime("%Y-%m-%d %H:%M")}
                     for r in top_rows.itertuples()],
            urgent=[{"title": r.title, "link": _safe_link(r.url), "brand": r.brand, "priority": r.peak_priority,
                     "urgency": f"{r.urgency:.0f}", "quote": r.quote, "source": r.source, "place": r.place,
                     "created_at": r.created_at.strftime("%Y-%m-%d %H:%M")}
                    for r in mentions.sort_values(["urgency", "created_at"], ascending=False).head(10).itertuples()],
        )
    index = out_dir / "index.html"
    index.write_text(_env.get_template("report.html").render(**context), encoding="utf-8")
    return index

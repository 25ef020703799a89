"""Virality risk is graded: monotone in score velocity, raised by a steeper reading, every point explained."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from monitor.config import load_config
from monitor.mention import Engagement, Mention
from monitor.score import Scorer, Signals, signals_from_mention
from monitor.virality import growth_risk
from tests.servers.reddit import RedditServer
from tests.test_reddit import setup  # noqa: F401 - the Reddit source + pipeline + store fixture

NOW = datetime(2026, 11, 1, 12, tzinfo=timezone.utc)
RATES = [0, 0.5, 2, 10, 50, 100, 200, 500, 1_000, 2_000, 10_000, 100_000]


def first_sighting(rate: float, *, comments: float = 0.0, sightings: int = 1) -> Signals:
    """One reading: the rate since posting is also the rate since the last reading."""
    return Signals(score_velocity=rate, recent_velocity=rate, comment_velocity=comments, sightings=sightings)


def post(score: int, *, hours_old: float, comments: int = 0) -> Mention:
    return Mention(source="reddit", source_id="t3_p", url="", title="Acme kettle", text="My Acme kettle",
                   created_at=NOW - timedelta(hours=hours_old), engagement=Engagement(score=score, comments=comments),
                   reach=300_000.0)


def test_risk_rises_with_score_velocity_at_first_sighting_and_never_saturates():
    for reach in (None, 5_000.0, 25_000_000.0):
        risks = [growth_risk(first_sighting(rate), reach).base for rate in RATES]
        assert risks == sorted(risks) and len(set(risks)) == len(risks), (reach, risks)
        assert 0 <= risks[0] and risks[-1] < 100
    # The step rules gave these two the same +40: they are different risks.
    assert growth_risk(first_sighting(2_000), 300_000).base > growth_risk(first_sighting(200), 300_000).base + 5


def test_a_steeper_second_reading_raises_the_risk():
    first = [(NOW - timedelta(minutes=5), 100, 10)]  # 100 points an hour after posting
    slow = signals_from_mention(post(105, hours_old=1 + 5 / 60, comments=11), now=NOW, previous=first)
    steady = signals_from_mention(post(108, hours_old=1 + 5 / 60, comments=11), now=NOW, previous=first)
    steep = signals_from_mention(post(160, hours_old=1 + 5 / 60, comments=20), now=NOW, previous=first)
    assert slow.recent_velocity < steady.recent_velocity < steep.recent_velocity and steep.acceleration > 0
    risks = [growth_risk(s, 300_000).base for s in (slow, steady, steep)]
    assert risks[0] < risks[1] < risks[2]
    # A post that stopped growing is a smaller risk than the same post seen once at its overall rate.
    assert risks[0] < growth_risk(signals_from_mention(post(105, hours_old=1 + 5 / 60, comments=11), now=NOW),
                                  300_000).base


@pytest.mark.parametrize("signals,reach", [
    (first_sighting(0), None),
    (first_sighting(0), 2_000_000.0),
    (first_sighting(37.5, comments=4), 12_000.0),
    (first_sighting(2_000, comments=600, sightings=3), 25_000_000.0),
    (Signals(score_velocity=400, recent_velocity=20, comment_velocity=3, acceleration=-900), 80_000.0),
    (Signals(score_velocity=50, recent_velocity=900, comment_velocity=90, acceleration=5_000), 80_000.0),
])
def test_reasons_explain_every_point(signals, reach):
    growth = growth_risk(signals, reach)
    assert all(r.kind == "signal" and r.urgency == 0 and r.detail for r in growth.reasons)
    assert growth.base == pytest.approx(sum(r.virality for r in growth.reasons), abs=1e-9)
    assert 0 <= growth.base < 100
    if signals.acceleration < 0:  # a slowdown is shown with the points it takes away
        assert next(r for r in growth.reasons if r.name == "acceleration").virality < 0


def test_the_scorer_starts_virality_from_the_growth_base_and_rules_add_on_top(write_config):
    scorer = Scorer.from_config(load_config(write_config()))
    mention = post(200, hours_old=1)
    signals = signals_from_mention(mention, now=NOW, brand_spike=4.0)
    scores = scorer.score(mention, signals=signals)
    growth = growth_risk(signals, mention.reach)
    rules = [r for r in scores.reasons if r.kind == "rule"]
    assert "brand-spike" in [r.name for r in rules]
    assert scores.virality == pytest.approx(min(100, growth.base + sum(r.virality for r in rules)))
    assert [r for r in scores.reasons if r.kind == "signal" and r.virality] == growth.reasons


def test_brand_spike_follows_the_configured_ratio(write_config):
    mention = post(1, hours_old=1)
    for ratio, spike, fires in ((3, 2.5, False), (2, 2.5, True), (4, 3.5, False), (4, 4.0, True)):
        scorer = Scorer.from_config(load_config(write_config({"spikes": {"ratio": ratio}})))
        scores = scorer.score(mention, signals=signals_from_mention(mention, now=NOW, brand_spike=spike))
        assert ("brand-spike" in scores.verdict.fired) is fires, (ratio, spike)


def test_a_growing_post_rises_in_virality_across_rereads(reddit: RedditServer, setup):  # noqa: F811
    now = time.time()
    reddit.add_subreddit("CustomerService", subscribers=250_000)
    reddit.add_post(subreddit="CustomerService", id="g1", title="Acme kettle", selftext="My Acme kettle arrived.",
                    created_utc=now - 1800, score=20, num_comments=2)
    _, run, store, clock = setup(reddit)
    run()
    seen = [store.find_mention("reddit", "t3_g1").virality]
    for minutes, score, comments in ((5, 80, 10), (10, 300, 45), (20, 1_500, 260)):
        clock.advance(minutes * 60 + 1)
        reddit.update_post("g1", score=score, num_comments=comments)
        assert [u.source_id for u in run().updates] == ["t3_g1"]
        seen.append(store.find_mention("reddit", "t3_g1").virality)
    assert seen == sorted(seen) and len(set(seen)) == len(seen), seen
    row = store.find_mention("reddit", "t3_g1")
    signals = row.signals
    assert signals["recent_velocity"] > signals["score_velocity"] and signals["acceleration"] > 0
    reasons = {r["name"]: r["virality"] for r in row.reasons if r["kind"] == "signal"}
    assert row.virality == pytest.approx(sum(reasons.values()))

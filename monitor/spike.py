"""Brand spikes: a brand's mentions in the last hour against its own baseline.

The baseline is the brand's mean hourly count over the previous seven days
(the hour being judged excluded), but never below ``MIN_BASELINE_PER_HOUR``,
so a quiet or new brand does not "spike" on its second mention. Until the
store has watched for ``MIN_HISTORY_HOURS`` there is no baseline to compare
with, and the signal stays 0: a first start that backfills an hour of
mentions must not look like a storm.

The ratio is the ``brand_spike`` signal the ``brand-spike`` rule reads.
``Pipeline.check_spikes`` (the daemon's ``spikes`` job) gives the spike's
points to the mentions of the hour that were scored before the spike was
visible, so the most important of them escalates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .store import Store, to_epoch

BASELINE_DAYS = 7
MIN_BASELINE_PER_HOUR = 1.0
MIN_HISTORY_HOURS = 24
SPIKE_RATIO = 3.0  # the shipped brand-spike rule fires from here
RESCORE_PER_SPIKE = 3  # a spike escalates at most this many mentions per check


@dataclass(frozen=True, slots=True)
class Volume:
    brand: str
    last_hour: int
    baseline_per_hour: float  # 0 when there is not enough history yet
    ratio: float  # last_hour / max(baseline, floor); 0 without history

    @property
    def spiking(self) -> bool:
        return self.ratio >= SPIKE_RATIO


def brand_volume(store: Store, brand: str, now: datetime, *, pending: int = 0) -> Volume:
    """The brand's volume now; ``pending`` counts mentions about to be stored (the one being scored)."""
    end = to_epoch(now)
    hour_start = end - 3600
    last_hour = store.query("SELECT count(*) FROM mentions WHERE brand = ? AND created_at > ? AND created_at <= ?",
                            (brand, hour_start, end))[0][0] + pending
    watched_since = store.query("SELECT min(fetched_at) FROM mentions")[0][0]
    if watched_since is None:
        return Volume(brand, last_hour, 0.0, 0.0)
    history_hours = min(BASELINE_DAYS * 24, (hour_start - watched_since) / 3600)
    if history_hours < MIN_HISTORY_HOURS:
        return Volume(brand, last_hour, 0.0, 0.0)
    before = store.query("SELECT count(*) FROM mentions WHERE brand = ? AND created_at > ? AND created_at <= ?",
                         (brand, hour_start - history_hours * 3600, hour_start))[0][0]
    baseline = before / history_hours
    return Volume(brand, last_hour, round(baseline, 3), round(last_hour / max(baseline, MIN_BASELINE_PER_HOUR), 2))

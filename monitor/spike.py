"""Brand spikes: a brand's mentions in the last hour against its own baseline.

The baseline is the brand's mean hourly count over the previous
``spikes.baseline_days`` (the hour being judged excluded), but never below
``spikes.min_baseline_per_hour``, so a quiet or new brand does not "spike" on
its second mention. Until the store has watched for
``spikes.min_history_hours`` there is no baseline to compare with, and the
signal stays 0: a first start that backfills an hour of mentions must not look
like a storm.

The ratio is the ``brand_spike`` signal the ``brand-spike`` rule reads.
``Pipeline.check_spikes`` (the daemon's ``spikes`` job) gives the spike's
points to the mentions of the hour that were scored before the spike was
visible, so the most important of them escalates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .config import SpikeSettings
from .store import Store, to_epoch

@dataclass(frozen=True, slots=True)
class Volume:
    brand: str
    last_hour: int
    baseline_per_hour: float  # 0 when there is not enough history yet
    ratio: float  # last_hour / max(baseline, floor); 0 without history
    spiking: bool  # the ratio reached spikes.ratio


_ASK_STORE = object()


def brand_volume(store: Store, brand: str, now: datetime, *, pending: int = 0,
                 settings: SpikeSettings = SpikeSettings(), watched_since: float | None | object = _ASK_STORE) -> Volume:
    """The brand's volume now; ``pending`` counts mentions about to be stored (the one being scored).
    ``watched_since``: ``store.watched_since()`` when the caller keeps it (a poll's pipeline does)."""
    end = to_epoch(now)
    hour_start = end - 3600
    last_hour = store.count_mentions(brand, after=hour_start, until=end) + pending
    if watched_since is _ASK_STORE:
        watched_since = store.watched_since()
    if watched_since is None:
        return Volume(brand, last_hour, 0.0, 0.0, False)
    history_hours = min(settings.baseline_days * 24, (hour_start - watched_since) / 3600)
    if history_hours < settings.min_history_hours or history_hours <= 0:
        return Volume(brand, last_hour, 0.0, 0.0, False)
    before = store.count_mentions(brand, after=hour_start - history_hours * 3600, until=hour_start)
    baseline = before / history_hours
    ratio = round(last_hour / max(baseline, settings.min_baseline_per_hour), 2)
    return Volume(brand, last_hour, round(baseline, 3), ratio, ratio >= settings.ratio)

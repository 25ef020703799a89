"""complaint-monitor: hear about a complaint while a personal answer still turns it around.

Data flow, one module per stage:
``sources/*`` -> ``mention`` -> ``match`` -> ``sentiment``/``score`` -> ``rules`` ->
``store`` -> ``alert`` -> ``mail``; ``pipeline`` wires them, ``app`` builds them
from ``config``, ``daemon`` schedules them, ``analysis`` reads the history.
"""

from .mention import Engagement, Mention

_ANALYSIS = ("load_mentions", "load_alerts", "load_snapshots", "load_stories")
__all__ = ["Mention", "Engagement", *_ANALYSIS]


def __getattr__(name: str):
    # pandas takes a while to import; only the analyst's functions need it.
    if name in _ANALYSIS:
        from . import analysis
        return getattr(analysis, name)
    raise AttributeError(f"module 'monitor' has no attribute {name!r}")

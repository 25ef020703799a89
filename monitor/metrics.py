"""Prometheus metrics (``metrics.port``): polls, errors, mentions, alerts, lag.

Each ``Metrics`` has its own registry rather than prometheus_client's global
one, so two monitors in one process (tests, a bench) never share counters.
The endpoint listens on 127.0.0.1 only: the numbers name sources and feeds.
Gauges that describe the store (pending alerts, lag) are read from it at
scrape time, so they are right after a restart too.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from .store import Store

log = logging.getLogger("complaint_monitor.metrics")


class Metrics:
    def __init__(self, *, store: Store, sources: Iterable[str], registry: CollectorRegistry | None = None):
        self.store = store
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.polls = Counter("complaint_monitor_polls", "Polls finished, per source", ["source"], registry=r)
        self.poll_errors = Counter("complaint_monitor_poll_errors",
                                   "Errors polls reported (a failed feed or listing, or the whole poll)",
                                   ["source"], registry=r)
        self.poll_seconds = Histogram("complaint_monitor_poll_seconds", "How long a poll took", ["source"],
                                      buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300), registry=r)
        self.items = Counter("complaint_monitor_items_seen", "Items sources returned", ["source"], registry=r)
        self.mentions = Counter("complaint_monitor_mentions_stored", "New mentions stored", ["source"], registry=r)
        self.alerts_queued = Counter("complaint_monitor_alerts_queued", "Alerts put in the outbox", ["source"],
                                     registry=r)
        self.alerts_sent = Counter("complaint_monitor_alerts_sent", "Alert emails the server accepted", registry=r)
        self.smtp_errors = Counter("complaint_monitor_smtp_errors", "Delivery rounds that could not reach the server",
                                   registry=r)
        Gauge("complaint_monitor_alerts_pending", "Alerts waiting in the outbox",
              registry=r).set_function(self._guarded(store.pending_count))
        Gauge("complaint_monitor_oldest_pending_alert_seconds", "Age of the oldest alert waiting in the outbox",
              registry=r).set_function(self._guarded(self._oldest_pending_age))
        since = Gauge("complaint_monitor_seconds_since_last_success",
                      "Seconds since the source's last poll without errors (NaN: none yet)", ["source"], registry=r)
        for name in sources:
            since.labels(source=name).set_function(self._guarded(lambda name=name: self._since_success(name)))

    def polled(self, name: str, report, started: float) -> None:
        self.polls.labels(source=name).inc()
        self.poll_seconds.labels(source=name).observe(time.time() - started)
        self.poll_errors.labels(source=name).inc(len(report.errors))
        if report.outcome is not None:
            self.items.labels(source=name).inc(report.outcome.seen)
            self.mentions.labels(source=name).inc(len(report.outcome.stored))
            self.alerts_queued.labels(source=name).inc(report.outcome.alerts)

    def delivered(self, delivery) -> None:
        self.alerts_sent.inc(delivery.sent)
        if delivery.connection_error:
            self.smtp_errors.inc()

    def serve(self, port: int):
        """Start the endpoint on 127.0.0.1:port; returns the server (call .shutdown() to stop it)."""
        server, _thread = start_http_server(port, addr="127.0.0.1", registry=self.registry)
        log.info("metrics on http://127.0.0.1:%d/metrics", port)
        return server

    def _oldest_pending_age(self) -> float:
        oldest = self.store.oldest_pending()
        return 0.0 if oldest is None else max(0.0, time.time() - oldest)

    def _since_success(self, name: str) -> float:
        last = self.store.last_success(name)
        return math.nan if last is None else max(0.0, time.time() - last)

    @staticmethod
    def _guarded(read):
        # A scrape during shutdown (store closed) must not break the endpoint.
        def value() -> float:
            try:
                return float(read())
            except Exception as err:
                log.debug("metric not readable: %s", err)
                return math.nan
        return value

"""Build the running system from a config: store, sources, pipeline, transport.

Everything that talks to the network is created here (or passed in by a
test), so no other module reaches for a global client.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from .alert import Delivery, deliver_digests, deliver_pending
from .config import Config
from .health import Health, subject_names
from .logs import Redactor, config_secrets
from .mail import FolderTransport, SmtpFactory, Transport, transport_for
from .pipeline import Outcome, Pipeline
from .sharing import AlertClaims, Sharing, SourceWork, is_shared_store
from .source import Source, SourceContext, validate_source_settings
from .store import Store

log = logging.getLogger("complaint_monitor")


@dataclass
class PollReport:
    source: str
    outcome: Outcome | None = None
    errors: list[str] = field(default_factory=list)


class Monitor:
    def __init__(self, *, config: Config, store: Store, sources: dict[str, Source], transport: Transport,
                 pipeline: Pipeline | None = None, metrics=None, sharing: Sharing | None = None):
        self.config = config
        # The work shared with other daemons on one PostgreSQL store; None: this daemon does everything.
        self.sharing = sharing
        self.store = store
        self.sources = sources
        self.transport = transport
        self.pipeline = pipeline or Pipeline(config=config, store=store)
        self.metrics = metrics
        self._last_errors: dict[str, list[str]] = {}
        self.redact = Redactor(config_secrets(config))
        self.health = Health(redact=self.redact, store=store, transport=transport,
                             fallback=FolderTransport(folder=config.path(config.email.outbox_dir)),
                             sender=config.email.from_, operator=config.health.operator_email,
                             notify_after=config.health.notify_after_minutes * 60,
                             names=subject_names(config.sources))

    @classmethod
    def from_config(cls, config: Config, *, smtp_connect: SmtpFactory | None = None, once: bool = False) -> "Monitor":
        """The monitor the config describes; ``once``: for one poll of each source (its sources open no streams)."""
        adapters = validate_source_settings(config)
        store = Store(config.store_path)
        search_terms = {b.name: b.terms for b in config.brands}
        sources = {}
        for name, (adapter, settings) in adapters.items():
            context = SourceContext(name=name, search_terms=search_terms, once=once,
                                    log=logging.getLogger(f"complaint_monitor.sources.{name}"))
            sources[name] = adapter.from_settings(settings, context=context)
        transport = transport_for(config.email, base_dir=config.base_dir, connect=smtp_connect)
        # Several daemons share a PostgreSQL store through its leases; a SQLite store has one daemon.
        sharing = Sharing.for_store(store, lease_seconds=config.lease_seconds) \
            if is_shared_store(config.store) else None
        metrics = None
        if config.metrics.port is not None:
            from .metrics import Metrics  # prometheus_client only when metrics are asked for
            metrics = Metrics(store=store, sources=sources)
        return cls(config=config, store=store, sources=sources, transport=transport, metrics=metrics,
                   sharing=sharing)

    def poll(self, name: str) -> PollReport:
        if self.sharing is None:
            return self._poll(name)
        with self.sharing.source_work(name, self.sources[name]) as work:
            if not work.names:
                return PollReport(source=name)  # the other daemons hold all of it
            return self._poll(name, work)

    def _poll(self, name: str, work: SourceWork | None = None) -> PollReport:
        source = self.sources[name]
        report = PollReport(source=name)
        started = time.time()
        try:
            # Read after the claim: the cursors are those the last holder of each unit stored.
            state = self.store.source_state(name)
            poll = source.poll(state) if work is None or work.units is None else source.poll(state, units=work.units)
        except Exception as err:  # an adapter bug must not stop the daemon or other sources
            log.exception("source %s failed", name, extra={"source": name})
            report.errors.append(self.redact(f"{type(err).__name__}: {err}"))
            self.health.failed(f"source:{name}", report.errors[0])
            self.store.record_poll(source=name, started_at=started, finished_at=time.time(), items=0, stored=0,
                                   errors=report.errors, interval=source.interval)
            if self.metrics:
                self.metrics.polled(name, report, started)
            return report
        if poll.idle:
            return report
        report.errors.extend(self.redact(e) for e in poll.errors)
        if work is not None:
            poll = work.drop_lost(poll)
        report.outcome = self.pipeline.process(name, poll)
        self.store.record_poll(source=name, started_at=started, finished_at=time.time(), items=report.outcome.seen,
                               stored=len(report.outcome.stored), errors=report.errors, interval=source.interval)
        self.health.succeeded(f"source:{name}")
        for subject, reason in poll.failed.items():
            self.health.failed(f"{name} {subject}", reason)
        self.health.succeeded_all([f"{name} {subject}" for subject in poll.succeeded])
        if self.metrics:
            self.metrics.polled(name, report, started)
        # A poll that found nothing and failed exactly as the last one did is not news:
        # the first occurrence was logged, and Health emails the operator if it lasts.
        news = bool(report.outcome.seen or report.outcome.alerts) or report.errors != self._last_errors.get(name)
        self._last_errors[name] = list(report.errors)
        log.log(logging.INFO if news else logging.DEBUG,
                "polled %s: %d items, %d matched, %d new mentions, %d alerts queued, %d errors", name,
                report.outcome.seen, report.outcome.matched, len(report.outcome.stored), report.outcome.alerts,
                len(report.errors), extra={"source": name})
        return report

    def poll_all(self) -> list[PollReport]:
        return [self.poll(name) for name in self.sources]

    def deliver(self) -> Delivery:
        delivery = deliver_pending(self.store, self.transport, self.config, claims=self._alert_claims())
        if delivery.connection_error:
            self.health.failed("smtp", delivery.connection_error)
        elif delivery.sent:
            self.health.succeeded("smtp")
        if self.metrics:
            self.metrics.delivered(delivery)
        return delivery

    def deliver_digests(self) -> int:
        return deliver_digests(self.store, self.transport, self.config, claims=self._alert_claims())

    def _alert_claims(self) -> AlertClaims | None:
        return self.sharing.alert_claims() if self.sharing is not None else None

    def check_spikes(self) -> list:
        """Each brand's mention volume against its baseline; a spike re-scores its recent mentions."""
        return self.pipeline.check_spikes()

    def prune(self) -> tuple[int, int]:
        now = time.time()
        r = self.config.retention
        pruned = self.store.prune(snapshots_before=now - r.snapshots_days * 86400,
                                  poll_runs_before=now - r.poll_runs_days * 86400)
        if any(pruned):
            log.info("pruned %d old snapshots and %d poll records", *pruned)
        if self.sharing is not None:
            self.sharing.prune()
        return pruned

    def close(self) -> None:
        for source in self.sources.values():
            try:
                source.close()
            except Exception:
                log.exception("closing source %s", source)
        self.store.close()

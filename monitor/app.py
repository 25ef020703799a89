"""Build the running system from a config: store, sources, pipeline, transport.

Everything that talks to the network is created here (or passed in by a
test), so no other module reaches for a global client.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from .alert import deliver_digests, deliver_pending
from .config import Config
from .mail import SmtpFactory, Transport, transport_for
from .pipeline import Outcome, Pipeline
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
                 pipeline: Pipeline | None = None):
        self.config = config
        self.store = store
        self.sources = sources
        self.transport = transport
        self.pipeline = pipeline or Pipeline(config=config, store=store)

    @classmethod
    def from_config(cls, config: Config, *, smtp_connect: SmtpFactory | None = None) -> "Monitor":
        adapters = validate_source_settings(config)
        pipeline_store = Store(config.store_path)
        search_terms = {b.name: b.terms for b in config.brands}
        sources = {}
        for name, (adapter, settings) in adapters.items():
            context = SourceContext(name=name, search_terms=search_terms,
                                    log=logging.getLogger(f"complaint_monitor.sources.{name}"))
            sources[name] = adapter.from_settings(settings, context=context)
        transport = transport_for(config.email, base_dir=config.base_dir, connect=smtp_connect)
        return cls(config=config, store=pipeline_store, sources=sources, transport=transport)

    def poll(self, name: str) -> PollReport:
        source = self.sources[name]
        report = PollReport(source=name)
        try:
            poll = source.poll(self.store.source_state(name))
        except Exception as err:  # an adapter bug must not stop the daemon or other sources
            log.exception("source %s failed", name)
            report.errors.append(f"{type(err).__name__}: {err}")
            return report
        report.errors.extend(poll.errors)
        report.outcome = self.pipeline.process(name, poll)
        if poll.updates:
            grown = self.pipeline.update_engagement(name, poll.updates)
            report.outcome.alerts += grown.alerts
        log.info("polled %s: %d items, %d matched, %d new mentions, %d alerts queued, %d errors", name,
                 report.outcome.seen, report.outcome.matched, len(report.outcome.stored), report.outcome.alerts,
                 len(poll.errors))
        return report

    def poll_all(self) -> list[PollReport]:
        return [self.poll(name) for name in self.sources]

    def deliver(self) -> tuple[int, int]:
        return deliver_pending(self.store, self.transport, self.config)

    def deliver_digests(self) -> int:
        return deliver_digests(self.store, self.transport, self.config)

    def close(self) -> None:
        for source in self.sources.values():
            try:
                source.close()
            except Exception:
                log.exception("closing source %s", source)
        self.store.close()

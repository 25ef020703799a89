"""Drive a source the way the daemon does (poll, then process into a real store), for the API sources' tests."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from monitor.config import load_config
from monitor.pipeline import Pipeline
from monitor.store import Store


class Runner:
    """``run()`` polls the source with its stored state and processes the poll; ``store`` is the real store."""

    def __init__(self, *, name: str, source: Any, store: Store, pipeline: Pipeline):
        self.name, self.source, self.store, self.pipeline = name, source, store, pipeline

    def __call__(self):
        poll = self.source.poll(self.store.source_state(self.name))
        self.pipeline.process(self.name, poll)
        return poll


@pytest.fixture
def runner(write_config):
    """runner(name, build) -> Runner, where build(search_terms) makes the source. Each call opens a new source and
    store on the same file: a restart. Everything opened is closed at the end."""
    opened: list[Runner] = []

    def make(name: str, build: Callable[[dict[str, list[str]]], Any]) -> Runner:
        config = load_config(write_config())
        store = Store(config.store_path)
        source = build({b.name: b.terms for b in config.brands})
        opened.append(Runner(name=name, source=source, store=store, pipeline=Pipeline(config=config, store=store)))
        return opened[-1]

    yield make
    for run in opened:
        run.source.close()
        run.store.close()

"""One pass of the data flow: poll -> match -> score -> store (+ queue alerts).

The stages live in their own modules; this one only wires them in order and
owns the transaction boundary: a mention, its scores and its alerts are
stored together, and a source's cursor only after everything it found.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from .alert import recipients
from .config import Config
from .match import BrandMatcher, quote_around
from .mention import Mention
from .score import Scorer
from .source import Poll
from .store import Store

log = logging.getLogger("complaint_monitor.pipeline")


@dataclass
class Outcome:
    seen: int = 0
    matched: int = 0
    stored: list[int] = field(default_factory=list)
    alerts: int = 0


class Pipeline:
    def __init__(self, *, config: Config, store: Store, matcher: BrandMatcher | None = None,
                 scorer: Scorer | None = None):
        self.config = config
        self.store = store
        self.matcher = matcher or BrandMatcher(config.brands)
        self.scorer = scorer or Scorer.from_config(config, own_account=self.matcher.is_own_account)

    def process(self, source: str, poll: Poll) -> Outcome:
        outcome = Outcome(seen=len(poll.mentions))
        known = self.store.known(source, [m.source_id for m in poll.mentions])
        for mention in poll.mentions:
            if mention.source_id in known:
                continue
            known.add(mention.source_id)
            try:
                stored = self._process_one(mention, outcome)
            except Exception:
                # One poisoned item must not cost the rest of the poll; its
                # cursor still advances, so it is logged loudly instead.
                log.exception("could not process %s %s (%s)", mention.source, mention.source_id, mention.url)
                continue
            if stored:
                outcome.stored.append(stored)
        if poll.state:
            self.store.save_source_state(source, poll.state)
        return outcome

    def _process_one(self, mention: Mention, outcome: Outcome) -> int | None:
        haystack = f"{mention.title}\n{mention.text}" if mention.title else mention.text
        match = self.matcher.match(haystack)
        if match is None:
            return None
        outcome.matched += 1
        mention.brand = match.brand
        mention.quote = quote_around(haystack, match.start, match.end)
        scores = self.scorer.score(mention, match)
        now = time.time()
        with self.store.transaction():
            mention_id = self.store.add_mention(mention, scores)
            if mention_id is None:
                return None
            for recipient in recipients(self.config, brand=mention.brand, priority=scores.priority,
                                        suppressed=scores.verdict.suppressed, notify=scores.verdict.notify):
                if self.store.enqueue_alert(mention_id=mention_id, recipient=recipient,
                                            priority=scores.priority, now=now):
                    outcome.alerts += 1
        log.info("stored %s mention %s of %s: %s urgency %.0f virality %.0f", mention.source, mention.source_id,
                 mention.brand, scores.priority, scores.urgency, scores.virality)
        return mention_id

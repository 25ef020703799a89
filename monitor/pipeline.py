"""One pass of the data flow: poll -> match -> score -> store (+ queue alerts).

The stages live in their own modules; this one only wires them in order and
owns the transaction boundary: a mention, its scores and its alerts are
stored together, and a source's cursor only after everything it found.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from dataclasses import dataclass, field

from .alert import recipients
from .config import Config
from .match import BrandMatcher, quote_around
from .mention import Mention
from .score import Scorer, signals_from_mention
from .source import Poll
from .store import Store, from_epoch, to_epoch

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

    def process(self, source: str, poll: Poll, *, now: datetime | None = None) -> Outcome:
        outcome = Outcome(seen=len(poll.mentions))
        known = self.store.known(source, [m.source_id for m in poll.mentions])
        for mention in poll.mentions:
            if mention.source_id in known:
                continue
            known.add(mention.source_id)
            try:
                stored = self._process_one(mention, outcome, now=now)
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

    def update_engagement(self, source: str, fresh: list[Mention]) -> Outcome:
        """New numbers for mentions stored before: snapshot them, re-score, alert again if the priority rose.

        Alerts are unique per (mention, recipient, priority), so a story sends at
        most one email per priority level however often it is re-read.
        """
        outcome = Outcome(seen=len(fresh))
        for update in fresh:
            row = self.store.find_mention(source, update.source_id)
            if row is None:
                continue
            mention = self.store.row_to_mention(row)
            mention.engagement = update.engagement
            if update.reach is not None:
                mention.reach = update.reach
            now = update.fetched_at
            previous = [(from_epoch(s["taken_at"]), s["score"] or 0, s["comments"] or 0)
                        for s in self.store.snapshots(row["id"]) if s["taken_at"] < to_epoch(now)]
            signals = signals_from_mention(mention, now=now, previous=previous)
            haystack = f"{mention.title}\n{mention.text}" if mention.title else mention.text
            scores = self.scorer.score(mention, self.matcher.match(haystack), signals=signals)
            with self.store.transaction():
                self.store.add_snapshot(row["id"], update.engagement, to_epoch(now))
                self.store.update_scores(row["id"], scores)
                outcome.alerts += self._queue_alerts(row["id"], mention, scores)
            outcome.stored.append(row["id"])
        return outcome

    def _queue_alerts(self, mention_id: int, mention: Mention, scores) -> int:
        queued = 0
        for recipient, digest in recipients(self.config, brand=mention.brand, priority=scores.priority,
                                            suppressed=scores.verdict.suppressed, notify=scores.verdict.notify):
            # Only a rise in priority is news; a story never re-alerts at a level it already reached.
            sent = self.store.query("SELECT priority FROM alerts WHERE mention_id = ? AND recipient = ?",
                                    (mention_id, recipient))
            if any(r["priority"] <= scores.priority for r in sent):
                continue
            if self.store.enqueue_alert(mention_id=mention_id, recipient=recipient, priority=scores.priority,
                                        now=time.time(), urgency=scores.urgency, virality=scores.virality,
                                        score=mention.engagement.score, comments=mention.engagement.comments,
                                        digest=digest):
                queued += 1
        return queued

    def _process_one(self, mention: Mention, outcome: Outcome, *, now: datetime | None) -> int | None:
        haystack = f"{mention.title}\n{mention.text}" if mention.title else mention.text
        match = self.matcher.match(haystack)
        if match is None:
            return None
        outcome.matched += 1
        mention.brand = match.brand
        mention.quote = quote_around(haystack, match.start, match.end)
        scores = self.scorer.score(mention, match, signals=signals_from_mention(mention, now=now))
        with self.store.transaction():
            mention_id = self.store.add_mention(mention, scores)
            if mention_id is None:
                return None
            outcome.alerts += self._queue_alerts(mention_id, mention, scores)
        log.info("stored %s mention %s of %s: %s urgency %.0f virality %.0f", mention.source, mention.source_id,
                 mention.brand, scores.priority, scores.urgency, scores.virality)
        return mention_id

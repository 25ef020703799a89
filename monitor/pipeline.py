"""One pass of the data flow: poll -> match -> score -> store (+ queue alerts).

The stages live in their own modules; this one only wires them in order and
owns the transaction boundary: a mention, its scores and its alerts are
stored together, and a source's cursor (with its growth schedule) only after
everything it found and every snapshot of its re-reads.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from contextlib import contextmanager
from datetime import datetime
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator

from .alert import recipients
from .config import Config
from .match import BrandMatch, BrandMatcher, quote_around
from .mention import Mention, utcnow
from .score import Reading, Scorer, Signals, signals_from_mention
from .source import Poll
from .spike import Volume, brand_volume
from .stories import Stories
from .store import Store, StoreError, from_epoch, to_epoch
from .store.records import ThreadSummary

log = logging.getLogger("complaint_monitor.pipeline")

FOLLOW_UP_MIN_BASE = 10  # score + comments below this are too few to grow "n times" from
READINGS_KEPT = 5000  # mentions whose reading is kept for re-scores (a few MB)
# Mentions (or re-scores) committed together (``Store.batch``): few enough that the store is not held long (about
# a tenth of a second for bench_rss.py's), enough that a commit per mention is no longer the cost it was.
BATCH = 100


@dataclass
class Outcome:
    seen: int = 0
    matched: int = 0
    stored: list[int] = field(default_factory=list)
    alerts: int = 0


@dataclass
class _Storing:
    """What storing one poll's new mentions keeps from one mention to the next."""

    outcome: Outcome
    # Mention id -> the sightings its story reached in this poll (re-scored once the poll is stored).
    grown: dict[int, int] = field(default_factory=dict)
    # ``store.watched_since()`` (the first mention's fetch time), read once per poll and kept as the mentions
    # stored since would move it: one statement per poll instead of one per mention.
    watched_since: float | None = None
    # Alert threads by (story, recipient) while the batch holds the store (``_queue_alerts``), else None.
    threads: dict | None = None


class Pipeline:
    def __init__(self, *, config: Config, store: Store, matcher: BrandMatcher | None = None,
                 scorer: Scorer | None = None):
        self.config = config
        self.store = store
        self.matcher = matcher or BrandMatcher(config.brands)
        self.scorer = scorer or Scorer.from_config(config, own_account=self.matcher.is_own_account)
        self.stories = Stories(store, settings=config.stories)
        # What the words of recently stored mentions say (sentiment, complaint model), by mention id: a story
        # seen somewhere new re-scores its earlier mentions with a new sightings count, and reading their
        # words again was two thirds of a first RSS cycle's scoring (bench/bench_rss.py).
        self._readings: OrderedDict[int, tuple[tuple, Reading]] = OrderedDict()

    def process(self, source: str, poll: Poll, *, now: datetime | None = None) -> Outcome:
        """The poll's new mentions go through the stages together: all are matched, then all the matched
        ones read (sentiment), then each is ranked and stored in turn (its signals depend on the mentions
        stored before it). Stage by stage, each stage's code and data stay in the CPU's caches: about 13%
        less time per mention than taking each through every stage (bench/bench_scoring.py)."""
        outcome = Outcome(seen=len(poll.mentions))
        self.refresh_model()
        known = self.store.known(source, [m.source_id for m in poll.mentions])
        fresh = []
        for mention in poll.mentions:
            if mention.source_id not in known:
                known.add(mention.source_id)
                fresh.append((mention,))
        matched = list(_each(fresh, self._match_new))
        outcome.matched += len(matched)
        read = list(_each(matched, lambda mention, match: (mention, match, self.scorer.read(mention, match))))
        storing = _Storing(outcome, watched_since=self.store.watched_since() if read else None)
        for batch in _batches(read):
            # Each mention stays all or nothing with its alerts; a crash loses the batch, and the source's
            # state, saved after all of them, has the next poll read them again.
            with self.store.batch() as exclusive:
                storing.threads = {} if exclusive else None
                outcome.stored.extend(_each(batch, lambda *item: self._store_new(*item, storing, now=now)))
        outcome.alerts += self._rescore_grown(storing.grown)
        if poll.updates:
            # Before the state: the growth schedule in it already counts these re-reads as
            # done, so saving it first would lose a reading to a crash in between.
            outcome.alerts += self.update_engagement(source, poll.updates).alerts
        if poll.state:
            self.store.save_source_state(source, poll.state)
        return outcome

    def refresh_model(self) -> None:
        """A complaint model retrained since (``train --local``) is used from this poll on, without a restart."""
        try:
            if self.scorer.complaint.refresh():
                log.info("complaint model %s loaded from %s", self.scorer.complaint.model.version,
                         self.scorer.complaint.path)
        except Exception:
            log.exception("could not load the complaint model from %s; the one in use stays",
                          self.scorer.complaint.configured)

    def update_engagement(self, source: str, fresh: list[Mention]) -> Outcome:
        """New numbers for mentions stored before: snapshot them, re-score, alert again if the priority rose.

        A first alert is unique per (mention, recipient, priority); at a level already
        reached only a follow-up on big growth goes out (``_follow_up_due``).
        """
        outcome = Outcome(seen=len(fresh))
        for update in fresh:
            try:
                row = self.store.find_mention(source, update.source_id)
                if row is None:
                    continue
                outcome.alerts += self._update_one(row, update)
            except StoreError:
                raise  # the store cannot write: nothing may count as done, so the next poll reads again
            except Exception:
                # One item we cannot score must not pin the source's cursor; the others go on.
                log.exception("could not apply new numbers to %s %s (%s)", source, update.source_id, update.url)
                continue
            outcome.stored.append(row.id)
        return outcome

    def _update_one(self, row, update: Mention) -> int:
        mention = self.store.row_to_mention(row)
        mention.engagement = update.engagement
        if update.reach is not None:
            mention.reach = update.reach
        edited = _apply_edit(mention, update)
        now = update.fetched_at
        previous = [(from_epoch(s.taken_at), s.score or 0, s.comments or 0)
                    for s in self.store.snapshots(row.id) if s.taken_at < to_epoch(now)]
        before = _signals(row.signals)
        signals = signals_from_mention(mention, now=now, previous=previous,
                                       sightings=self.stories.sightings(row.story_id),
                                       brand_spike=before.brand_spike)
        match = self._match(mention)
        if edited and match is not None:
            mention.quote = quote_around(_haystack(mention), match.start, match.end)
        scores = self.scorer.score(mention, match, signals=signals)
        with self.store.transaction():
            if edited:
                self.store.update_text(row.id, mention)
            self.store.add_snapshot(row.id, update.engagement, to_epoch(now), reach=update.reach)
            self.store.update_scores(row.id, scores)
            return self._queue_alerts(row.id, mention, scores)

    def rescore(self, mention_id: int, *, only_if_more: bool = False, **signal_changes) -> int:
        """Score a stored mention again with some signals changed (sightings, brand_spike); returns alerts queued.
        ``only_if_more``: only when one of the changed signals is above what its stored score counted."""
        row = self.store.mention(mention_id)
        if row is None:
            return 0
        return self._rescore_row(row, only_if_more=only_if_more, **signal_changes)

    def _rescore_row(self, row, *, only_if_more: bool = False, threads: dict | None = None, **signal_changes) -> int:
        mention_id = row.id
        before = _signals(row.signals)
        if only_if_more and all(value <= getattr(before, name) for name, value in signal_changes.items()):
            return 0
        mention = self.store.row_to_mention(row)
        signals = before._replace(**signal_changes)
        match = self._match(mention)
        scores = self.scorer.rank(mention, match, self._read(mention_id, mention, match), signals=signals)
        with self.store.transaction(), _forgetting(threads):
            self.store.update_scores(mention_id, scores)
            return self._queue_alerts(mention_id, mention, scores, new_place=signals.sightings > before.sightings,
                                      story_id=row.story_id, threads=threads)

    def _rescore_grown(self, grown: dict[int, int]) -> int:
        """Re-score the mentions whose story was seen somewhere new in this poll, each once with the sightings it
        reached; one whose stored score already counts them is left alone (nothing it depends on changed)."""
        queued = 0
        # One query for all of them (414 for bench_rss's first cycle): a re-score stores only its own row, so
        # what the others' rows hold does not change meanwhile.
        rows = self.store.mentions_by_id(grown)
        for batch in _batches(list(grown.items())):
            with self.store.batch() as exclusive:
                # The mentions re-scored are a few stories' (twenty each at most): while nobody else writes, a
                # story's thread for a recipient is read once and again only after an alert was queued in it.
                threads: dict | None = {} if exclusive else None
                for mention_id, sightings in batch:
                    try:
                        row = rows.get(mention_id)
                        if row is not None:
                            queued += self._rescore_row(row, sightings=sightings, only_if_more=True, threads=threads)
                    except StoreError:
                        raise
                    except Exception:
                        log.exception("could not re-score mention %s for its story's new sightings", mention_id)
        return queued

    def check_spikes(self, *, now: datetime | None = None) -> list[Volume]:
        """Each brand's volume; a spiking brand's latest mentions scored before the spike get its points."""
        now = now or utcnow()
        volumes = [brand_volume(self.store, brand.name, now, settings=self.config.spikes)
                   for brand in self.config.brands]
        for volume in volumes:
            if not volume.spiking:
                continue
            candidates = self.store.spike_candidates(volume.brand, after=to_epoch(now) - 3600, until=to_epoch(now))
            stale = [mention_id for mention_id, signals in candidates
                     if _signals(signals).brand_spike < volume.ratio][:self.config.spikes.rescore]
            for mention_id in stale:
                self.rescore(mention_id, brand_spike=volume.ratio)
            log.info("brand %s spikes: %d mentions in the last hour, %.2f/hour usual (%.1fx); re-scored %d",
                     volume.brand, volume.last_hour, volume.baseline_per_hour, volume.ratio, len(stale))
        return volumes

    def _match(self, mention: Mention) -> BrandMatch | None:
        return self.matcher.match(_haystack(mention))

    def _read(self, mention_id: int, mention: Mention, match: BrandMatch | None) -> Reading:
        """``scorer.read``, kept for the mention while its words, its brand match and the model stay the same."""
        key = self._reading_key(mention, match)
        known = self._readings.get(mention_id)
        if known is not None and known[0][0] is key[0] and known[0][1:] == key[1:]:
            self._readings.move_to_end(mention_id)
            return known[1]
        reading = self.scorer.read(mention, match)
        self._remember(mention_id, key, reading)
        return reading

    def _reading_key(self, mention: Mention, match: BrandMatch | None) -> tuple:
        span = (match.start, match.end) if match is not None else None
        return (self.scorer.complaint.model, mention.title, mention.text, span)

    def _remember(self, mention_id: int, key: tuple, reading: Reading) -> None:
        self._readings[mention_id] = (key, reading)
        self._readings.move_to_end(mention_id)
        while len(self._readings) > READINGS_KEPT:
            self._readings.popitem(last=False)

    def _queue_alerts(self, mention_id: int, mention: Mention, scores, *, new_place: bool = False,
                      fresh: bool = False, alone: bool = False, story_id: int | None = None,
                      threads: dict | None = None) -> int:
        """A mention new at this level is an alert (every customer deserves an answer), a reply in its
        story's thread when the story was alerted before; at a level the mention itself reached, only
        news is, as a follow-up (``_follow_up_due``). ``fresh``: the mention was stored in this transaction,
        so it has no alert to supersede yet; ``alone``: and it belongs to no story, so its thread for a
        recipient it was not queued for yet is empty (two statements a mention fewer). ``threads``: the threads
        read before by (story, recipient), while no one else writes: every mention of a story has its thread."""
        queued = 0
        now = time.time()
        priority = scores.alert_priority  # a complaint's priority, or a viral mention's spread
        asked: set[str] = set()
        for recipient, digest in recipients(self.config, brand=mention.brand, priority=priority,
                                            suppressed=scores.verdict.suppressed, notify=scores.verdict.notify,
                                            about=scores.about):
            kept = (story_id, recipient) if threads is not None and story_id is not None else None
            # Stored in this transaction and not queued for this recipient yet: it has no alert of its own.
            no_own = fresh and recipient not in asked
            asked.add(recipient)
            if no_own and alone:
                thread = EMPTY_THREAD
            elif kept is not None and kept in threads:
                thread = replace(threads[kept], own=() if no_own else self.store.own_alerts(mention_id, recipient))
            else:
                thread = self.store.thread_summary(mention_id, recipient)
            own = thread.own
            kind, due = "alert", now
            if own and min(a.priority for a in own) <= priority:
                due = self._follow_up_due(thread, own[-1], mention, new_place=new_place, now=now)
                if due is None:
                    if kept is not None:
                        threads[kept] = thread
                    continue
                kind = "follow_up"
            alert_id = self.store.enqueue_alert(
                mention_id=mention_id, recipient=recipient, priority=priority, now=now,
                urgency=scores.urgency, virality=scores.virality, score=mention.engagement.score,
                comments=mention.engagement.comments, digest=digest, kind=kind, not_before=due, about=scores.about,
                supersede_lower=not fresh)
            if not alert_id:  # queued before at this level: the thread is as it was
                if kept is not None:
                    threads[kept] = thread
                continue
            queued += 1
            # enqueue_alert superseded the mention's own lower levels still waiting (none when fresh).
            superseded = 0 if fresh else sum(1 for a in own if a.status == "pending" and a.priority > priority)
            if thread.best is not None and priority < thread.best:
                # The escalation tells all the news: a follow-up still waiting would only repeat it.
                superseded += self.store.supersede_follow_ups(mention_id, recipient, besides=alert_id)
            if kept is not None:
                # What the batch itself queued and superseded is all that changed in the thread meanwhile.
                threads[kept] = thread.after(priority=priority, queued_at=now, superseded=superseded)
        return queued

    def _follow_up_due(self, thread: ThreadSummary, last_own, mention: Mention, *, new_place: bool,
                       now: float) -> float | None:
        """When a follow-up may go out, or None when there is no news. News: the mention's score + comments
        grew ``follow_up_growth`` times since its last email, or its story reached a new place. One per
        thread every ``follow_up_minutes``, so a story going viral is a few emails, not one per re-read."""
        settings = self.config.email
        if thread.pending:
            return None  # the email still waiting is rendered from the story as it is when it goes out
        before = (last_own.score or 0) + (last_own.comments or 0)
        after = (mention.engagement.score or 0) + (mention.engagement.comments or 0)
        if not (new_place or after >= settings.follow_up_growth * max(before, FOLLOW_UP_MIN_BASE)):
            return None
        return max(now, thread.latest + settings.follow_up_minutes * 60)

    def _match_new(self, mention: Mention) -> tuple[Mention, BrandMatch] | None:
        haystack = _haystack(mention)
        match = self.matcher.match(haystack)
        if match is None:
            return None
        mention.brand = match.brand
        mention.quote = quote_around(haystack, match.start, match.end)
        return mention, match

    def _store_new(self, mention: Mention, match: BrandMatch, reading: Reading, storing: _Storing, *,
                   now: datetime | None) -> int | None:
        outcome, grown = storing.outcome, storing.grown
        seen = now or utcnow()
        # Ranked outside the transaction: nothing slow may hold the store's lock.
        sighting = self.stories.find(mention, now=seen)
        recent = 0 <= (seen - mention.created_at).total_seconds() < 3600  # an old post found late is no spike
        volume = brand_volume(self.store, mention.brand, seen, pending=int(recent), settings=self.config.spikes,
                              watched_since=storing.watched_since)
        # Rates at the moment the numbers were read, as a replay of the readings computes them.
        signals = signals_from_mention(mention, now=now or mention.fetched_at, sightings=sighting.sightings,
                                       brand_spike=volume.ratio)
        scores = self.scorer.rank(mention, match, reading, signals=signals)
        with self.store.transaction(), _forgetting(storing.threads):
            mention_id = self.store.add_mention(mention, scores)
            if mention_id is None:
                return None
            fetched = to_epoch(mention.fetched_at)
            if storing.watched_since is None or fetched < storing.watched_since:
                storing.watched_since = fetched
            self._remember(mention_id, self._reading_key(mention, match), reading)
            story_id = self.stories.record(mention_id, mention, sighting, now=seen)
            # Old news found by a first look (Mention.backfill) is kept for the record and alerts nobody.
            if not mention.backfill:
                outcome.alerts += self._queue_alerts(mention_id, mention, scores, new_place=sighting.grew,
                                                     fresh=True, alone=story_id is None, story_id=story_id,
                                                     threads=storing.threads)
            if sighting.grew and not mention.backfill:
                # Seen somewhere new: the story's earlier mentions are more viral now too. Re-scored once the
                # poll is stored (``_rescore_grown``), each once with its story's last count: a story found in
                # eight feeds of one cycle re-scored its earlier mentions after each (2,217 re-scores for 500
                # new mentions in bench/bench_rss.py's first cycle).
                for other in self.stories.others(story_id, mention_id):
                    grown[other] = max(grown.get(other, 0), sighting.sightings)
        log.info("stored %s mention %s of %s: %s urgency %.0f virality %.0f%s", mention.source, mention.source_id,
                 mention.brand, scores.priority, scores.urgency, scores.virality,
                 " (backfill: no alert)" if mention.backfill else "")
        return mention_id


def _each(items: list[tuple], step: Callable[..., Any]) -> Iterator[Any]:
    """``step(*item)`` for each item, but the results that are None. One poisoned item must not cost the
    rest of the poll; its cursor still advances, so it is logged loudly instead."""
    for item in items:
        try:
            result = step(*item)
        except Exception:
            mention = item[0]
            log.exception("could not process %s %s (%s)", mention.source, mention.source_id, mention.url)
            continue
        if result is not None:
            yield result


EMPTY_THREAD = ThreadSummary(own=(), best=None, latest=None, pending=0)


@contextmanager
def _forgetting(threads: dict | None) -> Iterator[None]:
    """A mention's transaction that fails is undone: the kept threads, which counted what it queued, go too."""
    try:
        yield
    except BaseException:
        if threads is not None:
            threads.clear()
        raise


def _batches(items: list) -> Iterator[list]:
    for start in range(0, len(items), BATCH):
        yield items[start : start + BATCH]


def _haystack(mention: Mention) -> str:
    """What the matcher reads: the title and the text, one line apart."""
    return f"{mention.title}\n{mention.text}" if mention.title else mention.text


def _apply_edit(mention: Mention, update: Mention) -> bool:
    """The author's edit, as a re-read shows it: the new text is what is said now, and the text first read is
    kept in ``extra["first_text"]``. Only a re-read that says it was edited since (``extra["edited_at"]``, as
    Reddit gives it) counts; a body deleted or removed since is no edit: what was said stays."""
    extra = update.extra or {}
    edited_at = extra.get("edited_at")
    if not edited_at or edited_at == (mention.extra or {}).get("edited_at") or extra.get("gone") \
            or not update.text.strip() or update.text == mention.text:
        return False
    mention.extra = {**(mention.extra or {}), "edited_at": edited_at}
    mention.extra.setdefault("first_text", mention.text)
    mention.text = update.text
    return True


def _signals(stored: dict[str, Any]) -> Signals:
    return Signals(**{k: v for k, v in stored.items() if k in Signals._fields})

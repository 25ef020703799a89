"""A synthetic site-wide Reddit stream for the local Reddit server: all new posts or all new comments.

Ids are sequential base-36 numbers, created at a steady rate with bursts
(``rate * factor`` inside each burst window), on a clock the test drives, so
minutes of Reddit pass in a second of test. Some ids are invisible (a private
subreddit, removed as spam): neither listed nor returned by ``/api/info``, as
on Reddit. Every ``match_every``-th id names the brand.
"""

from __future__ import annotations

import bisect
from typing import Callable

from sources.reddit_stream import base36, id_number

COMPLAINT = "Acme charged me twice and support hung up on me. Still no refund. Furious."


class SyntheticStream:
    def __init__(self, *, kind: str, clock: Callable[[], float], start: float, seconds: float, rate: float,
                 bursts: tuple[tuple[float, float, float], ...] = (), first_id: str = "100000",
                 invisible_every: int = 9, match_every: int = 7, text: Callable[[int], str] | None = None):
        self.kind = kind  # "t1" comments, "t3" posts
        # The words of item n (``match_every`` still decides which name the brand); synthetic by default.
        self.text = text or (lambda n: COMPLAINT if self.matching(n) else
                             f"Just chatting about espresso grinders, number {n}.")
        self.clock = clock
        self.first = id_number(first_id)
        self.invisible_every = invisible_every
        self.match_every = match_every
        self.created: list[float] = []
        t = start
        while t < start + seconds:
            self.created.append(t)
            factor = next((f for begin, end, f in bursts if start + begin <= t < start + end), 1.0)
            t += 1 / (rate * factor)

    # -- what exists ---------------------------------------------------

    def visible(self, n: int) -> bool:
        return n % self.invisible_every != self.invisible_every - 1

    def matching(self, n: int) -> bool:
        return n % self.match_every == 0

    def fullname(self, n: int) -> str:
        return f"{self.kind}_{base36(self.first + n)}"

    def expected(self, since: float, until: float) -> set[str]:
        """Fullnames of the visible items naming the brand created in [since, until]."""
        lo, hi = bisect.bisect_left(self.created, since), bisect.bisect_right(self.created, until)
        return {self.fullname(n) for n in range(lo, hi) if self.visible(n) and self.matching(n)}

    def visible_between(self, since: float, until: float) -> int:
        lo, hi = bisect.bisect_left(self.created, since), bisect.bisect_right(self.created, until)
        return sum(1 for n in range(lo, hi) if self.visible(n))

    def _existing(self) -> int:
        """How many ids exist by now."""
        return bisect.bisect_right(self.created, self.clock())

    # -- the API -------------------------------------------------------

    def listing(self, limit: int) -> list[dict]:
        out = []
        n = self._existing() - 1
        while n >= 0 and len(out) < limit:
            if self.visible(n):
                out.append(self.thing(n))
            n -= 1
        return out

    def info(self, fullnames: list[str]) -> list[dict]:
        existing = self._existing()
        out = []
        for name in fullnames:
            if not name.startswith(self.kind + "_"):
                continue
            n = id_number(name[3:]) - self.first
            if 0 <= n < existing and self.visible(n):
                out.append(self.thing(n))
        return out

    def thing(self, n: int) -> dict:
        id = base36(self.first + n)
        sub = f"sub{n % 50}"
        text = self.text(n)
        data = {"id": id, "name": f"{self.kind}_{id}", "subreddit": sub, "subreddit_id": f"t5_{sub}",
                "author": f"user{n % 97}", "created_utc": self.created[n], "score": 1, "edited": False}
        if self.kind == "t1":
            data.update(body=text, link_id="t3_abc", parent_id="t3_abc",
                        permalink=f"/r/{sub}/comments/abc/post/{id}/")
        else:
            data.update(title=f"Question {n}", selftext=text, num_comments=0, upvote_ratio=1.0,
                        permalink=f"/r/{sub}/comments/{id}/post/", subreddit_subscribers=5000, over_18=False)
        return {"kind": self.kind, "data": data}

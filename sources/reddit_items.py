"""Reddit things (praw Submissions and Comments) turned into Mentions.

Only the fields Reddit sent are read (``vars(thing)``): touching a missing
attribute on a praw object would quietly fetch the whole object again, one
request per item. A thing missing a field we cannot do without raises
``BadItem``, so the caller skips that one item and keeps the listing.
"""

from __future__ import annotations

import functools
import logging
import math
from datetime import datetime, timezone
from typing import Any

from monitor.mention import Mention
from monitor.source import EngagementMap, SourceField

PERMALINK_BASE = "https://www.reddit.com"
# What Reddit puts in place of a body or author that is gone; not words anybody wrote.
GONE = {"[deleted]", "[removed]"}
# Reddit's clock and ours may differ a little; a creation time further ahead than this is wrong.
FUTURE_SLACK = 86400.0

log = logging.getLogger("complaint_monitor.sources.reddit")

# Reddit's own numbers, by their names in its JSON: the score and comments feed the growth signals, the
# subreddit's subscribers the reach (RedditSource.engagement; the same declaration every source makes).
ENGAGEMENT = EngagementMap(
    numbers={"score": SourceField("integer", "upvotes minus downvotes, fuzzed by Reddit"),
             "num_comments": SourceField("integer", "a post's comments"),
             "upvote_ratio": SourceField("float", "a post's share of upvotes"),
             "total_awards_received": SourceField("integer", "a post's awards"),
             "subreddit_subscribers": SourceField("integer", "the subreddit's subscribers (else looked up)")},
    score=("score",), comments=("num_comments",), reach=("subreddit_subscribers",), upvote_ratio="upvote_ratio",
    awards="total_awards_received")


class BadItem(ValueError):
    """A thing in a listing that lacks what a Mention needs."""


def field(thing: Any, name: str, default: Any = None) -> Any:
    """An attribute Reddit sent, without praw's lazy fetch of the whole object when it is absent."""
    return vars(thing).get(name, default)


def required(thing: Any, name: str) -> Any:
    value = field(thing, name)
    if value is None:
        raise BadItem(f"{field(thing, 'name', '?')} has no {name}")
    return value


def created_epoch(thing: Any) -> float:
    try:
        created = float(required(thing, "created_utc"))
    except (TypeError, ValueError) as err:
        raise BadItem(f"{field(thing, 'name', '?')} has a bad created_utc: {err}") from None
    if not math.isfinite(created):
        raise BadItem(f"{field(thing, 'name', '?')} has a bad created_utc: {created}")
    return created


def fullname(thing: Any) -> str:
    name = required(thing, "name")  # Reddit's "name" is the fullname, e.g. t3_abc
    if not isinstance(name, str) or "_" not in name:
        raise BadItem(f"not a Reddit fullname: {name!r}")
    return name


def _created(thing: Any, now: datetime) -> datetime:
    """When it was posted; a time further ahead than a day (``1e20``, a broken clock) is taken as now."""
    created = created_epoch(thing)
    if created > now.timestamp() + FUTURE_SLACK:
        _odd_field(thing, "created_utc", created, "taken as now")
        return now
    return datetime.fromtimestamp(created, timezone.utc)


def _odd_field(thing: Any, name: str, value: Any, outcome: str) -> None:
    _say_once(str(field(thing, "name", "?")), name, repr(value)[:40], outcome)


@functools.lru_cache(maxsize=4096)
def _say_once(fullname: str, name: str, value: str, outcome: str) -> None:
    """Logged once per item and field (as long as it stays among the last 4096 said), not at every growth re-read."""
    log.warning("reddit: %s has a bad %s (%s): %s", fullname, name, value, outcome)


def _author(thing: Any) -> str:
    author = field(thing, "author")  # praw turns "[deleted]" into None
    return "[deleted]" if author is None else str(author)


def _subreddit(thing: Any) -> str:
    return str(required(thing, "subreddit"))


def _words(text: Any) -> str:
    """Body text, or "" where Reddit shows a placeholder for removed or deleted content."""
    text = text if isinstance(text, str) else ""
    return "" if text.strip() in GONE else text


def _edited_at(thing: Any) -> float | None:
    edited = field(thing, "edited")  # False, or when it was last edited
    if edited is None or isinstance(edited, bool):  # True: edited, but Reddit did not say when
        return None
    return _number(thing, "edited")


def _number(thing: Any, name: str) -> float | None:
    """An optional number; one Reddit sent as a numeric string is read, anything else is left out (logged):
    a wrong optional field never costs the mention."""
    value = field(thing, name)
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    try:
        number = float(value) if isinstance(value, str) else math.nan
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        _odd_field(thing, name, value, "left out")
        return None
    _odd_field(thing, name, value, f"read as {number:g}")
    return number


def _count(thing: Any, name: str) -> int | None:
    number = _number(thing, name)
    return None if number is None else int(number)


def _gone(thing: Any, body: Any) -> str | None:
    """Why the content is gone: a moderator or Reddit removed it, or its author deleted it."""
    category = field(thing, "removed_by_category")
    if category:
        return str(category)
    if isinstance(body, str) and body.strip() in GONE:
        return body.strip()[1:-1]
    return None


def mention_from_submission(source: str, post: Any, *, now: datetime) -> Mention:
    sub = _subreddit(post)
    text = _words(field(post, "selftext"))
    parents = field(post, "crosspost_parent_list") or []
    parent = parents[0] if parents and isinstance(parents[0], dict) else {}
    if not text and parent:
        # A crosspost's own body is empty: what is said is in the original.
        text = _words(parent.get("selftext"))
    numbers = {"score": _count(post, "score"), "num_comments": _count(post, "num_comments"),
               "upvote_ratio": _number(post, "upvote_ratio"), "total_awards_received": _count(post, "total_awards_received"),
               "subreddit_subscribers": _number(post, "subreddit_subscribers")}
    return Mention(
        source=source, source_id=fullname(post), kind="post",
        url=PERMALINK_BASE + str(required(post, "permalink")),
        title=str(field(post, "title") or ""), text=text, author=_author(post), created_at=_created(post, now),
        fetched_at=now, place=f"r/{sub}", reach=ENGAGEMENT.reach_of(numbers), engagement=ENGAGEMENT.engagement(numbers),
        extra={"subreddit": sub, "link_url": field(post, "url"), "nsfw": bool(field(post, "over_18", False)),
               "quarantined": bool(field(post, "quarantine", False)),
               "crosspost_parent": field(post, "crosspost_parent"),
               "crosspost_from": parent.get("subreddit"), "edited_at": _edited_at(post),
               "gone": _gone(post, field(post, "selftext"))},
    )


def _post_url(comment: Any, permalink: str) -> str:
    """The link of the post a comment belongs to: Reddit's ``link_permalink``, else the comment's own
    permalink (``/r/sub/comments/POST/slug/COMMENT/``) without its last step."""
    link = field(comment, "link_permalink")
    if isinstance(link, str) and link.startswith(("https://", "http://")):
        return link
    return PERMALINK_BASE + permalink.rstrip("/").rsplit("/", 1)[0] + "/"


def mention_from_comment(source: str, comment: Any, *, now: datetime) -> Mention:
    sub = _subreddit(comment)
    permalink = str(required(comment, "permalink"))
    return Mention(
        source=source, source_id=fullname(comment), kind="comment",
        url=PERMALINK_BASE + permalink,
        title="", text=_words(field(comment, "body")), author=_author(comment), created_at=_created(comment, now),
        fetched_at=now, place=f"r/{sub} (comment)", engagement=ENGAGEMENT.engagement({"score": _count(comment, "score")}),
        # The post it answers: the responder sees the thread's title, and stories put it in the post's story.
        extra={"subreddit": sub, "link_id": field(comment, "link_id"), "edited_at": _edited_at(comment),
               "post_title": str(field(comment, "link_title") or ""), "post_url": _post_url(comment, permalink),
               "gone": _gone(comment, field(comment, "body"))},
    )


def mention_from_thing(source: str, thing: Any, *, now: datetime) -> Mention:
    if fullname(thing).startswith("t1_"):
        return mention_from_comment(source, thing, now=now)
    return mention_from_submission(source, thing, now=now)

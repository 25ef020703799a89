"""The RSS source's part of ``status``: per feed, what its cursor says, its ongoing failure, its mentions."""

from __future__ import annotations

from typing import Any

from monitor.source import StatusSection, StatusView


def feeds_status(view: StatusView) -> StatusSection:
    """``feeds`` (URL -> last success, next poll, disabled, moved, problem, last error, mentions in the last hour)
    and one line per feed."""
    time = view.time
    feeds: dict[str, dict[str, Any]] = {}
    for key, value in view.state.items():
        if key.startswith("feed:") and isinstance(value, dict):
            feeds[key[5:]] = {"last_success": time(value.get("last_success")), "next_poll": time(value.get("next_poll")),
                              "disabled": value.get("disabled_reason") if value.get("disabled") else None,
                              "moved_to": value.get("current_url"), "problem": value.get("last_problem")}
            if value.get("failures") or value.get("disabled"):  # the feed's own record; a failure row below wins
                feeds[key[5:]]["last_error"] = (f"{time(value.get('last_error_at'))}: {value.get('last_error')}"
                                                f" ({value.get('failures') or 1} in a row)")
    # A feed that never worked has no cursor yet; its failure row still names it.
    for subject, row in sorted(view.failures.items()):
        if subject.startswith("feed:"):
            feed = feeds.setdefault(subject[5:], {"last_success": None})
            feed["last_error"] = (f"{time(row['last_at']) or 'never'}: {row['last_error']}"
                                  f" (failing since {time(row['since']) or 'never'})")
    for url, count in view.mentions_by.items():
        feeds.setdefault(url, {"last_success": None})["mentions_last_hour"] = count
    return StatusSection(data={"feeds": feeds}, lines=[_line(url, feed) for url, feed in feeds.items()])


def _line(url: str, feed: dict[str, Any]) -> str:
    state = f"disabled: {feed['disabled']}" if feed.get("disabled") else ("failing" if feed.get("last_error") else "ok")
    moved = f"; moved to {feed['moved_to']}" if feed.get("moved_to") else ""
    problem = f"; problem: {feed['problem']}" if feed.get("problem") else ""
    return (f"  feed {url}: {state}; last success {feed.get('last_success') or 'never'};"
            f" last error {feed.get('last_error') or 'none'}; mentions last hour {feed.get('mentions_last_hour', 0)};"
            f" {'looked at again' if feed.get('disabled') else 'next poll'} {feed.get('next_poll') or 'at the next run'}"
            f"{moved}{problem}")

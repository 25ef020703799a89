"""Reddit answers that praw cannot take whole: one odd item must cost at most that item, never its page.

Two places where praw would fail a whole listing page for one item:

- decoding: the standard ``json`` module recurses, so a comment tree nested a few hundred levels
  deep raises ``RecursionError`` for the whole page. Such a page is decoded again iteratively
  (ijson), with whatever lies deeper than ``MAX_JSON_DEPTH`` left out (``""``, as Reddit writes
  "no replies"): nothing we read is nested that deep.
- building objects: praw sets every JSON key as an attribute, so a key such as ``__class__``
  fails, and it would fail the page. Each item of a list is built on its own; one that fails is
  built again from its plain fields only, and left out (logged) if even that fails.
"""

from __future__ import annotations

import logging
from typing import Any

import ijson
import prawcore
import requests
from praw.objector import Objector

log = logging.getLogger("complaint_monitor.sources.reddit")

# Listing > data > children > item > data > field > ...: what we read lies within the first ten levels.
MAX_JSON_DEPTH = 64


def shallow_json(body: bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``body`` decoded without recursion; objects and arrays deeper than ``max_depth`` become ``""``."""
    root: list[Any] = []
    stack: list[Any] = [root]
    keys: list[Any] = [None]
    skipping = 0  # open containers inside one being left out
    for _, event, value in ijson.parse(body, use_float=True):
        opens, closes = event in ("start_map", "start_array"), event in ("end_map", "end_array")
        if skipping:
            skipping += opens - closes
            continue
        if event == "map_key":
            keys[-1] = value
            continue
        if closes:
            stack.pop()
            keys.pop()
            continue
        if opens and len(stack) > max_depth:
            item, skipping = "", 1
        else:
            item = ({} if event == "start_map" else []) if opens else value
        parent = stack[-1]
        if isinstance(parent, dict):
            parent[keys[-1]] = item
        else:
            parent.append(item)
        if opens and not skipping:
            stack.append(item)
            keys.append(None)
    return root[0] if root else None


class ShallowJsonResponse(requests.Response):
    """prawcore reads every answer with ``response.json()``: this one survives JSON nested too deep."""

    def json(self, **kwargs: Any) -> Any:
        try:
            return super().json(**kwargs)
        except RecursionError:
            log.warning("reddit: an answer from %s is nested too deep to decode whole; parts deeper than %d"
                        " levels are left out", self.url, MAX_JSON_DEPTH)
            return shallow_json(self.content)


class ShallowJsonRequestor(prawcore.Requestor):
    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        response = super().request(*args, **kwargs)
        # Same object, same state; only json() differs (ShallowJsonResponse adds no attributes).
        response.__class__ = ShallowJsonResponse
        return response


class ItemByItemObjector(Objector):
    """praw's Objector, building each item of a list on its own so one odd item costs only itself."""

    def objectify(self, *, data: Any) -> Any:
        if not isinstance(data, list):
            return super().objectify(data=data)
        built = []
        for item in data:
            try:
                built.append(super().objectify(data=item))
            except Exception as err:  # noqa: BLE001 - whatever praw trips over in one item
                plain = _plain_fields(item)
                try:
                    built.append(super().objectify(data=plain))
                except Exception:  # noqa: BLE001
                    log.warning("reddit: skipped an item praw could not read (%s): %s: %s", _name(item),
                                type(err).__name__, err)
                    continue
                log.warning("reddit: %s had fields praw could not take (%s: %s); read without them", _name(item),
                            type(err).__name__, err)
        return built


def _plain_fields(item: Any) -> Any:
    """A thing with only the fields that can be attributes: no ``__class__``, no private names."""
    if not (isinstance(item, dict) and isinstance(item.get("data"), dict)):
        return item
    data = {k: v for k, v in item["data"].items() if isinstance(k, str) and k.isidentifier()
            and not k.startswith("_")}
    return {**item, "data": data}


def _name(item: Any) -> str:
    data = item.get("data") if isinstance(item, dict) else None
    return str(data.get("name", "?")) if isinstance(data, dict) else "?"

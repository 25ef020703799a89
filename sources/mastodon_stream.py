"""Mastodon's streaming API for one instance: a server-sent events connection per timeline, through Mastodon.py.

Mastodon.py keeps each connection open in its own thread and reconnects it
when it drops (``reconnect_async``); what arrives waits here until the next
poll takes it, so a poll of a streaming instance costs no request. A stream
has no replay: whatever is posted while a connection is down is lost to it,
so every connection made is counted (a server that ends a stream cleanly
calls no ``on_abort``; Mastodon.py just connects again), and the poll that
sees a new connection, statuses let go (more than ``MAX_PENDING`` waiting), or
a stream not receiving right now, reads the REST timelines from their cursors
as a polling instance does. An instance that does not accept the
stream (its health check fails, or a connection is not receiving within the
timeout: public streams kept for logged-in users answer 401) raises
``StreamRefused``, and the source polls it instead.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from mastodon import Mastodon, MastodonError, StreamListener

RECONNECT_WAIT = 5.0  # seconds between Mastodon.py's reconnection attempts
# Statuses kept per timeline between polls (a busy federated timeline while polls fail for an hour must not fill
# the memory): past it the oldest go, counted, and the next poll reads the timelines as after a break.
MAX_PENDING = 10_000


class StreamRefused(Exception):
    """The instance does not stream its public timelines to us: poll it."""


class _TimelineListener(StreamListener):
    def __init__(self, stream: "InstanceStream", timeline: str):
        self._stream, self._timeline = stream, timeline

    def on_update(self, status: Any) -> None:
        self._stream._received(self._timeline, status)

    def on_abort(self, err: Exception) -> None:
        self._stream._broke(err)

    def on_unknown_event(self, name: str, unknown_event: Any = None) -> None:
        pass  # events of newer servers (status.update, ...) are not ours to read


class InstanceStream:
    """The open streams of one instance's timelines and what they brought since the last ``take``."""

    def __init__(self, api: Mastodon, timelines: list[str], *, read_timeout: float, connect_timeout: float):
        self._api = api
        self._timelines = timelines
        self._read_timeout, self._connect_timeout = read_timeout, connect_timeout
        self._lock = threading.Lock()
        self._pending: dict[str, list[Any]] = {t: [] for t in timelines}
        self._handles: list[Any] = []
        self.connections = self._first = 0  # made since the start: each after the first followed a break that may have lost statuses
        self.last_break: str | None = None
        self.received = 0
        self.dropped = 0  # statuses let go past MAX_PENDING

    def start(self) -> "InstanceStream":
        try:
            healthy = self._api.stream_healthy()
        except (MastodonError, OSError) as err:
            raise StreamRefused(f"streaming health check failed: {type(err).__name__}: {err}") from err
        if not healthy:
            raise StreamRefused("streaming health check did not answer OK")
        for timeline in self._timelines:
            listener = _TimelineListener(self, timeline)
            options = dict(run_async=True, reconnect_async=True, reconnect_async_wait_sec=RECONNECT_WAIT,
                           timeout=self._read_timeout)
            if timeline.startswith("tag/"):
                handle = self._api.stream_hashtag(timeline[4:], listener, **options)
            else:
                handle = self._api.stream_public(listener, local=timeline == "local", **options)
            self._count_connections(handle)
            self._handles.append(handle)
        deadline = time.monotonic() + self._connect_timeout
        while not self.receiving():
            if time.monotonic() >= deadline:
                self.close()
                raise StreamRefused(f"a timeline stream was not accepted within {self._connect_timeout:g} s"
                                    " (the instance refuses it, or keeps it for logged-in users)")
            time.sleep(0.05)
        with self._lock:  # the first connections (some made before they could be counted) are no breaks
            self._first = self.connections
        return self

    def marker(self) -> tuple[int, int]:
        """Changes whenever statuses may have been missed: a new connection (after a break), or statuses let go."""
        with self._lock:
            return self.connections, self.dropped

    def receiving(self) -> bool:
        return bool(self._handles) and all(h.is_receiving() for h in self._handles)

    def take(self) -> dict[str, list[Any]]:
        """What arrived per timeline since the last take."""
        with self._lock:
            taken, self._pending = self._pending, {t: [] for t in self._timelines}
        return taken

    def close(self) -> None:
        for handle in self._handles:
            handle.close()
        self._handles = []

    def _received(self, timeline: str, status: Any) -> None:
        with self._lock:
            pending = self._pending[timeline]
            pending.append(status)
            self.received += 1
            if len(pending) > MAX_PENDING:
                del pending[0]
                self.dropped += 1

    @property
    def breaks(self) -> int:
        """Connections made after the first of each timeline's stream: breaks it recovered from."""
        return self.connections - self._first

    def _count_connections(self, handle: Any) -> None:
        # Mastodon.py's handle (re)connects through its connect_func, read afresh at each attempt.
        connect = handle.connect_func

        def counted():
            connection = connect()
            if getattr(connection, "status_code", None) == 200:
                with self._lock:
                    self.connections += 1
            return connection
        handle.connect_func = counted

    def _broke(self, err: Exception) -> None:
        with self._lock:
            self.last_break = f"{type(err).__name__}: {err}"

"""Keep messages that arrived just before their episode's bag was open, and record them.

A recorder node learns of an episode's START in one subscription's callback and
of its messages in others. The middleware stamps each message when it arrives,
but the executor hands the callbacks over in no guaranteed order across topics:
on a loaded robot a ``command`` that arrived *after* the START can be handed
over *before* it, while no bag is open. :class:`BackloggedRecorder` keeps such
messages in an :class:`ArrivalBacklog` and writes those whose arrival stamp is
at or after the new episode's ``since_ns`` into its bag as soon as it opens.

Bound and drop policy of the backlog: it holds the messages the recorder could
not take (no episode open, or after the running episode's end), at most
:data:`BACKLOG_S` of arrival time behind the newest one, at most
:data:`BACKLOG_MESSAGES` messages and :data:`BACKLOG_BYTES` bytes; past any
bound the oldest arrivals are dropped first (they belong to no episode unless a
START handed over that late, which would be a starved executor). Opening a bag
empties the backlog: what arrived before the episode's ``since_ns`` is dropped,
as it would have been had the callbacks come in order.

The symmetric case at the END is the recorder's ``close_after``: a message
that arrived before the END but is handed over after it still goes into the
closing bag, for as long as that bag stays open (the node's ``end_grace_s``).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sop_ros.core.types import EpisodeMeta
from sop_ros.storage.errors import BagError
from sop_ros.storage.recorder import EpisodeRecorder

__all__ = [
    "BACKLOG_BYTES",
    "BACKLOG_MESSAGES",
    "BACKLOG_S",
    "ArrivalBacklog",
    "BackloggedRecorder",
    "Pending",
]

# Arrival time a backlog covers behind its newest message (s): far longer than a START is
# handed over late on a busy robot, short enough that a camera stream fits in BACKLOG_BYTES.
BACKLOG_S = 5.0
# Most messages and bytes a backlog holds (5 s of four 30 Hz cameras as 500 kB raw frames fit).
BACKLOG_MESSAGES = 20_000
BACKLOG_BYTES = 64 * 1024**2


@dataclass(frozen=True)
class Pending:
    """One message waiting in the backlog, as the recorder takes it."""

    topic: str
    msgtype: str
    data: bytes | memoryview
    log_ns: int


class ArrivalBacklog:
    """The most recent messages no bag took yet, bounded in arrival time, count and bytes."""

    def __init__(
        self,
        *,
        span_s: float = BACKLOG_S,
        max_messages: int = BACKLOG_MESSAGES,
        max_bytes: int = BACKLOG_BYTES,
    ) -> None:
        if span_s < 0 or max_messages < 0 or max_bytes < 0:
            raise BagError(
                f"backlog bounds must be >= 0, got span_s={span_s}, max_messages={max_messages}, "
                f"max_bytes={max_bytes}"
            )
        self._span_ns = int(span_s * 1e9)
        self._max_messages = max_messages
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._items: deque[Pending] = deque()
        self._bytes = 0
        self._newest_ns = 0
        # Messages pushed out by a bound, or older than the episode that emptied the backlog.
        self.dropped_count = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes(self) -> int:
        """Bytes of message data held."""
        return self._bytes

    def add(self, item: Pending) -> None:
        """Keep ``item``; drop the oldest arrivals past the bounds."""
        with self._lock:
            self._items.append(item)
            self._bytes += len(item.data)
            self._newest_ns = max(self._newest_ns, item.log_ns)
            oldest_kept_ns = self._newest_ns - self._span_ns
            while self._items and (
                len(self._items) > self._max_messages
                or self._bytes > self._max_bytes
                or self._items[0].log_ns < oldest_kept_ns
            ):
                self._bytes -= len(self._items.popleft().data)
                self.dropped_count += 1

    def take_since(self, since_ns: int) -> list[Pending]:
        """Empty the backlog; return what arrived at or after ``since_ns``, in arrival order."""
        with self._lock:
            items, self._items, self._bytes = list(self._items), deque(), 0
        kept = sorted((item for item in items if item.log_ns >= since_ns), key=lambda item: item.log_ns)
        self.dropped_count += len(items) - len(kept)
        return kept


class BackloggedRecorder(EpisodeRecorder):
    """An :class:`EpisodeRecorder` whose new bags also take what arrived after ``since_ns`` but came early.

    Args:
        spool: Root of the spool directory.
        backlog: Where refused messages wait (a default :class:`ArrivalBacklog` if None).
        **kwargs: As for :class:`EpisodeRecorder`.
    """

    def __init__(self, spool: Path | str, *, backlog: ArrivalBacklog | None = None, **kwargs: Any) -> None:
        super().__init__(spool, **kwargs)
        self.backlog = backlog if backlog is not None else ArrivalBacklog()
        # Messages from the backlog that went into a bag when it opened.
        self.caught_up_count = 0
        # Why the last message from the backlog could not be written ("" if none failed).
        self.backlog_error = ""

    def write(self, topic: str, msgtype: str, data: bytes | memoryview, stamp_ns: int) -> bool:
        """As :meth:`EpisodeRecorder.write`; a message no bag takes waits in the backlog."""
        if super().write(topic, msgtype, data, stamp_ns):
            return True
        self.backlog.add(Pending(topic, msgtype, data, stamp_ns))
        return False

    def start(self, meta: EpisodeMeta, *, since_ns: int = 0) -> Path:
        """As :meth:`EpisodeRecorder.start`, then record the backlog's messages from ``since_ns`` on."""
        path = super().start(meta, since_ns=since_ns)
        for item in self.backlog.take_since(since_ns):
            try:
                written = super().write(item.topic, item.msgtype, item.data, item.log_ns)
            except BagError as err:
                # The same error the message would have met had it come in order; the bag goes on.
                self.backlog_error = str(err)
                continue
            self.caught_up_count += written
        return path

"""Record one rosbag2 bag per episode into the robot's spool directory.

The recorder takes messages as serialised CDR bytes, exactly as a raw ROS
subscription delivers them, and never deserialises them, so recording costs
one copy into the MCAP chunk. Topics become bag connections on their first
message.

Life of a bag: :meth:`EpisodeRecorder.start` opens
``recording/<episode_id>.partial/`` and writes the episode's metadata beside
the bag (for crash recovery); :meth:`~EpisodeRecorder.write` appends (leaving
out messages that arrived before the episode began, however late they are
handed over);
:meth:`~EpisodeRecorder.finish` stores the final metadata in the bag's
``custom_data``, syncs files and directory to disk and renames the bag to
``ready/<episode_id>/`` in one step. A crash leaves the ``.partial`` folder
for :func:`sop_ros.storage.recovery.recover_spool`.

Threads: one lock guards all state, so ``start``/``finish`` may come from a
different thread than ``write``. Writes are expected from one thread (the
node's recording callback); ``finish`` holds the lock while it syncs, so a
write arriving then waits (and, with no episode running, is ignored).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rosbags.interfaces import Connection
from rosbags.rosbag2 import Writer, WriterError

from sop_ros.core.durable import fsync_tree
from sop_ros.core.spool import Spool
from sop_ros.core.types import EpisodeMeta, Outcome
from sop_ros.storage.bagio import close_writer, flush_writer, open_writer
from sop_ros.storage.errors import BagError, SpoolFullError
from sop_ros.storage.segments import intervention_segments
from sop_ros.storage.typestore import INTERVENTION, deserialize, serialize, typestore

__all__ = ["ABORT_REASON_KEY", "START_META_FILE", "EpisodeRecorder"]

# Written beside a running bag so a crashed episode can be recovered with its metadata.
START_META_FILE = "sop_episode_start.json"
# custom_data key that says why an episode was aborted.
ABORT_REASON_KEY = f"{EpisodeMeta.PREFIX}abort_reason"


class EpisodeRecorder:
    """Writes episode bags into a spool directory; one episode at a time.

    Args:
        spool: Root of the spool directory (created if missing).
        quota_bytes: Most bytes that un-uploaded bags (``ready/`` + ``recording/``)
            may hold before :meth:`start` refuses a new episode.
        clock: Monotonic time source (ns) that paces flushes.
        flush_period_s: Longest time written messages stay in memory only; a
            killed process loses at most this much recording.
    """

    def __init__(
        self,
        spool: Path | str,
        *,
        quota_bytes: int,
        clock: Callable[[], int] = time.monotonic_ns,
        flush_period_s: float = 1.0,
    ) -> None:
        if quota_bytes <= 0:
            raise BagError(f"quota_bytes must be > 0, got {quota_bytes}")
        self.spool = Spool(spool).create()
        self.quota_bytes = quota_bytes
        self._clock = clock
        self._flush_period_ns = int(flush_period_s * 1e9)
        self._lock = threading.Lock()
        self._writer: Writer | None = None
        self._meta: EpisodeMeta | None = None
        self._connections: dict[str, Connection] = {}
        self._last_flush_ns = 0
        self._last_stamp_ns = 0
        # Messages logged earlier than this arrived before the running episode began.
        self._since_ns = 0
        # Once the episode has ended: messages logged later than this arrived after its END.
        self._until_ns: int | None = None
        # (log time, active) of every Intervention message of the running episode.
        self._events: list[tuple[int, bool]] = []
        self.message_count = 0
        # Messages that arrived while no episode ran (expected between episodes), or
        # were handed over late: after the next episode began, or after the END.
        self.ignored_count = 0

    @property
    def recording(self) -> bool:
        """True between :meth:`start` and :meth:`finish` / :meth:`abort`."""
        return self._writer is not None

    @property
    def episode_id(self) -> str | None:
        """Id of the running episode, None when idle."""
        return self._meta.episode_id if self._meta else None

    def start(self, meta: EpisodeMeta, *, since_ns: int = 0) -> Path:
        """Open the bag of a new episode; returns its ``.partial`` directory.

        Args:
            meta: The episode as it starts (id, robot, task, start time).
            since_ns: Earliest log time that belongs to this episode. A message
                logged earlier reached the robot before the episode began (say, the
                previous episode's hand-back, handled late by a busy executor)
                and is ignored rather than recorded into this bag. 0 keeps all.

        Raises:
            SpoolFullError: un-uploaded bags exceed the quota (nothing is deleted).
            BagError: an episode is already running, or the bag cannot be created.
        """
        with self._lock:
            if self._writer is not None:
                raise BagError(
                    f"cannot start episode {meta.episode_id}: episode {self.episode_id} is still recording"
                )
            used = self.spool.pending_bytes()
            if used > self.quota_bytes:
                raise SpoolFullError(
                    f"spool {self.spool.root} holds {used} bytes of bags not yet uploaded, over its quota "
                    f"of {self.quota_bytes} bytes; episode {meta.episode_id} is not recorded and "
                    "nothing was deleted"
                )
            path = self.spool.partial_path(meta.episode_id)
            writer = open_writer(path, bag_name=meta.episode_id)
            try:
                sidecar = path / START_META_FILE
                sidecar.write_text(json.dumps(meta.to_custom_data(), indent=1, sort_keys=True))
                fsync_tree(path)
            except OSError as err:
                writer.abort()
                raise BagError(f"cannot write {path / START_META_FILE}: {err}; bag left in place") from None
            self._writer, self._meta = writer, meta
            self._connections = {}
            self._last_flush_ns = self._clock()
            self._last_stamp_ns = 0
            self._since_ns = since_ns
            self._until_ns = None
            self._events = []
            self.message_count = 0
            return path

    def write(self, topic: str, msgtype: str, data: bytes | memoryview, stamp_ns: int) -> bool:
        """Append one serialised (CDR) message; ignored when no episode is running.

        A message logged before the running episode's ``since_ns`` (see
        :meth:`start`) is ignored as well: it arrived before the episode began;
        so is one logged after the time given to :meth:`close_after`.

        Args:
            topic: Topic name as it should appear in the bag.
            msgtype: ROS type name, e.g. ``sensor_msgs/msg/JointState``.
            data: The message's CDR bytes, as received.
            stamp_ns: Receive time (ns since the epoch), the bag's log time: when the
                message reached the robot, not when a callback got round to it.

        Returns:
            True if the message went into the bag, False if it was ignored.

        Raises:
            BagError: unknown type, a topic changing type, or a write failure (the
                bag written so far stays in place; call :meth:`abort`).
        """
        with self._lock:
            writer = self._writer
            late = self._until_ns is not None and stamp_ns > self._until_ns
            if writer is None or stamp_ns < self._since_ns or late:
                self.ignored_count += 1
                return False
            connection = self._connections.get(topic)
            if connection is None:
                connection = self._add_connection(writer, topic, msgtype)
            elif connection.msgtype != msgtype:
                raise BagError(
                    f"topic {topic!r} carries {connection.msgtype} in this bag; a {msgtype} message "
                    "was dropped"
                )
            try:
                writer.write(connection, stamp_ns, data)
                self.message_count += 1
                self._last_stamp_ns = max(self._last_stamp_ns, stamp_ns)
                if msgtype == INTERVENTION:
                    self._note_intervention(data, stamp_ns)
                now = self._clock()
                if now - self._last_flush_ns >= self._flush_period_ns:
                    flush_writer(writer)
                    self._last_flush_ns = now
            except (WriterError, OSError) as err:
                raise BagError(f"cannot write to bag {writer.path}: {err}; the bag so far is kept") from None
            return True

    def close_after(self, until_ns: int) -> None:
        """The running episode ended at log time ``until_ns``: take only what arrived by then.

        Call it when the END arrives and :meth:`finish` a little later: a message
        that reached the robot before the END but is handed over after it (a busy
        executor) still goes into the bag; one that arrived later does not.
        """
        with self._lock:
            self._until_ns = until_ns

    def write_message(self, topic: str, msg: Any, stamp_ns: int) -> None:
        """Serialise a rosbags message object and :meth:`write` it (for tools and tests)."""
        self.write(topic, msg.__msgtype__, serialize(msg), stamp_ns)

    def flush(self) -> None:
        """Push what was written so far to the OS, so a killed process does not lose it."""
        with self._lock:
            if self._writer is not None:
                flush_writer(self._writer)
                self._last_flush_ns = self._clock()

    def finish(self, meta: EpisodeMeta) -> Path:
        """Close the running episode's bag with ``meta`` and publish it to ``ready/``.

        Args:
            meta: Final metadata (outcome, policy versions, interventions, end time);
                its ``episode_id`` must be the running episode's. An ``end_ns`` of 0
                becomes the newest message stamp; empty ``interventions`` become the
                segments the recorded Intervention messages describe.

        Returns:
            The bag's directory under ``ready/``.

        Raises:
            BagError: no episode or a different one is running, or the bag cannot be
                closed or moved (it is then kept under ``recording/`` for recovery).
        """
        with self._lock:
            writer, started = self._take()
            if meta.episode_id != started.episode_id:
                self._writer, self._meta = writer, started
                raise BagError(
                    f"finish() got episode {meta.episode_id} but {started.episode_id} is recording; "
                    "it keeps recording"
                )
            return self._close_and_publish(writer, self._completed(meta).to_custom_data())

    def abort(self, reason: str) -> Path:
        """End the running episode early and keep its bag.

        The bag is closed with outcome ``aborted`` and ``reason`` in its
        metadata and published to ``ready/`` (an aborted episode still holds
        valid human corrections). If it cannot even be closed, it is moved to
        ``quarantine/`` with ``reason`` and the error.

        Returns:
            Where the bag now is.

        Raises:
            BagError: no episode is running.
        """
        with self._lock:
            writer, started = self._take()
            meta = self._completed(dataclasses.replace(started, outcome=Outcome.ABORTED))
            custom = {**meta.to_custom_data(), ABORT_REASON_KEY: reason}
            try:
                return self._close_and_publish(writer, custom)
            except BagError as err:
                return self.spool.quarantine_bag(writer.path, f"episode aborted: {reason}\n{err}")

    def _note_intervention(self, data: bytes | memoryview, stamp_ns: int) -> None:
        # A malformed one is still recorded as received; only the summary lacks it.
        with contextlib.suppress(BagError):
            self._events.append((stamp_ns, bool(deserialize(data, INTERVENTION).active)))

    def _completed(self, meta: EpisodeMeta) -> EpisodeMeta:
        """Fill what the caller left open from what was recorded."""
        end_ns = meta.end_ns or self._last_stamp_ns
        # An open segment lasts to the end of the recording, last message included.
        closing_ns = max(end_ns, self._last_stamp_ns + 1)
        segments = meta.interventions or intervention_segments(self._events, end_ns=closing_ns)
        return dataclasses.replace(meta, end_ns=end_ns, interventions=segments)

    def _take(self) -> tuple[Writer, EpisodeMeta]:
        if self._writer is None or self._meta is None:
            raise BagError("no episode is recording")
        writer, meta = self._writer, self._meta
        self._writer, self._meta = None, None
        return writer, meta

    def _close_and_publish(self, writer: Writer, custom: dict[str, str]) -> Path:
        try:
            close_writer(writer, custom)
        except BagError:
            writer.abort()
            raise
        (writer.path / START_META_FILE).unlink(missing_ok=True)
        episode_id = custom[f"{EpisodeMeta.PREFIX}episode_id"]
        return self.spool.publish(writer.path, episode_id)

    def _add_connection(self, writer: Writer, topic: str, msgtype: str) -> Connection:
        store = typestore()
        if msgtype not in store.fielddefs:
            raise BagError(f"unknown message type {msgtype!r} on topic {topic!r}; message dropped")
        try:
            connection = writer.add_connection(topic, msgtype, typestore=store)
        except WriterError as err:
            raise BagError(f"cannot add topic {topic!r} to bag {writer.path}: {err}") from None
        self._connections[topic] = connection
        return connection

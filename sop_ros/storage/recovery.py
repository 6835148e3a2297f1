"""Recover the episode bags a crash left in ``<spool>/recording/``.

A process killed mid-episode leaves ``<episode_id>.partial/`` holding an MCAP
file without its summary and footer (possibly cut inside a record) and the
episode's start metadata. :func:`recover_spool` reads the MCAP file as a
stream up to the first record that does not parse, writes the messages it
got into a new, valid bag marked ``outcome=incomplete`` in ``ready/``, and
moves the original directory, byte for byte, to ``quarantine/`` with a
``REASON.txt``. A partial with nothing recoverable goes to quarantine only.
Recovered bags are never marked complete and original bytes are never deleted.

A partial whose bag had been fully closed (the crash came between closing and
the final rename) is checked by reading every message and then published as it is.

Run it once at start-up, before the recorder starts; it is not meant to run
beside a recorder writing into the same spool.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import shutil
from pathlib import Path
from typing import NamedTuple

from mcap.records import Channel, DataEnd, Footer, Message, Schema
from mcap.stream_reader import StreamReader
from rosbags.interfaces import Connection
from rosbags.rosbag2 import Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from sop_ros.core.spool import PARTIAL_SUFFIX, Spool
from sop_ros.core.types import EpisodeMeta, Outcome
from sop_ros.storage.bagio import (
    close_writer,
    episode_meta,
    mcap_files,
    open_writer,
    read_metadata,
    validate_bag,
)
from sop_ros.storage.errors import BagError
from sop_ros.storage.recorder import START_META_FILE
from sop_ros.storage.segments import intervention_segments
from sop_ros.storage.typestore import INTERVENTION, deserialize

__all__ = ["RECOVERED_KEY", "RecoveryAction", "RecoveryReport", "recover_spool"]

# custom_data key of a recovered bag: what was salvaged and why reading stopped.
RECOVERED_KEY = f"{EpisodeMeta.PREFIX}recovered"
_RECOVERING_SUFFIX = ".recovering"


class RecoveryAction(enum.Enum):
    """What recovery did with one partial bag."""

    # The bag had been closed completely; it was published unchanged.
    PUBLISHED = "published"
    # Messages were salvaged into a new bag in ready/; the original is in quarantine/.
    RECOVERED = "recovered"
    # Nothing usable; the original is in quarantine/.
    QUARANTINED = "quarantined"
    # Recovery itself failed (e.g. the disk is full); the partial stays for the next try.
    FAILED = "failed"


class RecoveryReport(NamedTuple):
    """The outcome of recovering one ``.partial`` directory."""

    partial: Path
    action: RecoveryAction
    # The bag now in ready/, if any.
    bag: Path | None
    # Where the original bytes are kept, if moved to quarantine/.
    quarantined: Path | None
    message_count: int
    reason: str


def recover_spool(spool: Path | str) -> list[RecoveryReport]:
    """Recover every ``*.partial`` bag under ``<spool>/recording/`` (see module docstring).

    Returns:
        One report per partial bag, oldest first.
    """
    spool_ = Spool(spool).create()
    for leftover in spool_.recording.glob(f"*{_RECOVERING_SUFFIX}"):
        # A copy from an interrupted recovery; its original .partial is still there.
        shutil.rmtree(leftover)
    reports = []
    for partial in spool_.partials():
        try:
            reports.append(_recover(spool_, partial))
        except (BagError, OSError) as err:
            reason = f"recovery failed, {partial} left in place for the next try: {err}"
            reports.append(RecoveryReport(partial, RecoveryAction.FAILED, None, None, 0, reason))
    return reports


def _episode_id(partial: Path) -> str:
    return partial.name.removesuffix(PARTIAL_SUFFIX)


def _recover(spool: Spool, partial: Path) -> RecoveryReport:
    episode_id = _episode_id(partial)

    def quarantine(reason: str, *, bag: Path | None = None, count: int = 0) -> RecoveryReport:
        action = RecoveryAction.RECOVERED if bag else RecoveryAction.QUARANTINED
        moved = spool.quarantine_bag(partial, reason)
        return RecoveryReport(partial, action, bag, moved, count, reason)

    closed_error = ""
    if (partial / "metadata.yaml").exists():
        try:
            meta = validate_bag(partial)
            count = int(read_metadata(partial).get("message_count", 0))
            (partial / START_META_FILE).unlink(missing_ok=True)
            bag = spool.publish(partial, meta.episode_id)
            return RecoveryReport(partial, RecoveryAction.PUBLISHED, bag, None, count, "bag was complete")
        except BagError as err:
            closed_error = f"closed bag did not validate ({err}); "

    if (spool.ready / episode_id).exists():
        return quarantine(f"{closed_error}ready/{episode_id} exists already (recovered earlier)")
    try:
        meta = _start_meta(partial)
    except BagError as err:
        return quarantine(f"{closed_error}nothing recoverable: {err}")

    salvage = _Salvage(spool.recording / f"{episode_id}{_RECOVERING_SUFFIX}", episode_id)
    try:
        for path in mcap_files(partial):
            salvage.copy(path)
            if salvage.stop_reason:
                break
        stop = salvage.stop_reason or "the file ends without a summary"
        if salvage.count == 0:
            salvage.discard()
            return quarantine(f"{closed_error}nothing recoverable: no complete message ({stop})")
        end_ns = salvage.last_stamp_ns
        segments = intervention_segments(salvage.events, end_ns=end_ns + 1) or meta.interventions
        recovered = dataclasses.replace(
            meta, outcome=Outcome.INCOMPLETE, end_ns=end_ns, interventions=segments
        )
        note = f"{salvage.count} messages from a crashed recording; reading stopped: {stop}"
        salvage.close({**recovered.to_custom_data(), RECOVERED_KEY: note})
        bag = spool.publish(salvage.target, episode_id)
    except BaseException:
        salvage.discard()  # only the copy; the original is untouched
        raise
    reason = f"{closed_error}recovered {salvage.count} messages into {bag}; original kept here. {stop}"
    return quarantine(reason, bag=bag, count=salvage.count)


def _start_meta(partial: Path) -> EpisodeMeta:
    path = partial / START_META_FILE
    try:
        return EpisodeMeta.from_custom_data(json.loads(path.read_text()))
    except FileNotFoundError:
        if (partial / "metadata.yaml").exists():
            return episode_meta(partial)  # closed (then damaged) after the start file was removed
        raise BagError(f"no episode metadata ({START_META_FILE} missing)") from None
    except (OSError, ValueError) as err:  # InputError is a ValueError
        raise BagError(f"episode metadata {path.name} unreadable: {err}") from None


class _Salvage:
    """Copies the readable prefix of MCAP files into a new bag, created on first message."""

    def __init__(self, target: Path, bag_name: str) -> None:
        self.target = target
        self.bag_name = bag_name
        self.writer: Writer | None = None
        self.count = 0
        self.last_stamp_ns = 0
        self.events: list[tuple[int, bool]] = []
        self.stop_reason = ""
        self._schemas: dict[int, Schema] = {}
        self._channels: dict[int, Channel] = {}
        self._connections: dict[int, Connection] = {}

    def copy(self, path: Path) -> None:
        with path.open("rb") as file:
            try:
                # No record is longer than the file; a garbled length must not allocate more.
                limit = path.stat().st_size
                for record in StreamReader(file, record_size_limit=limit).records:
                    if isinstance(record, DataEnd | Footer):
                        return
                    self._take(record)
            except Exception as err:  # any parse failure ends the readable prefix
                what = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
                self.stop_reason = f"{path.name} unreadable after byte {file.tell()} ({what})"

    def _take(self, record: object) -> None:
        if isinstance(record, Schema):
            self._schemas[record.id] = record
        elif isinstance(record, Channel):
            self._channels[record.id] = record
        elif isinstance(record, Message):
            connection = self._connection(record.channel_id)
            self._writer().write(connection, record.log_time, record.data)
            self.count += 1
            self.last_stamp_ns = max(self.last_stamp_ns, record.log_time)
            if connection.msgtype == INTERVENTION:
                with contextlib.suppress(BagError):
                    self.events.append((record.log_time, bool(deserialize(record.data, INTERVENTION).active)))

    def _writer(self) -> Writer:
        if self.writer is None:
            self.writer = open_writer(self.target, bag_name=self.bag_name)
        return self.writer

    def _connection(self, channel_id: int) -> Connection:
        if channel_id in self._connections:
            return self._connections[channel_id]
        channel = self._channels.get(channel_id)
        schema = self._schemas.get(channel.schema_id) if channel else None
        if channel is None or schema is None:
            raise BagError(f"message on channel {channel_id} that has no channel or schema record")
        msgdef = schema.data.decode()
        # Hash the definition the bag carried, so the copy describes its own bytes.
        store = get_typestore(Stores.EMPTY)
        store.register(get_types_from_msg(msgdef, schema.name))
        connection = self._writer().add_connection(
            channel.topic, schema.name, msgdef=msgdef, rihs01=store.hash_rihs01(schema.name)
        )
        self._connections[channel_id] = connection
        return connection

    def close(self, custom_data: dict[str, str]) -> None:
        assert self.writer is not None
        close_writer(self.writer, custom_data)

    def discard(self) -> None:
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer.abort()
            self.writer = None
        shutil.rmtree(self.target, ignore_errors=True)

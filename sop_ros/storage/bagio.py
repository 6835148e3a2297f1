"""How sop_ros writes, opens and checks rosbag2 bags: one place for the on-disk format choices.

Format: rosbag2 metadata version 9 (what ``ros2 bag`` writes since Jazzy and
still writes in Kilted), MCAP storage, zstd-compressed MCAP chunks. Chunk
compression lives inside the MCAP file, so ``metadata.yaml`` declares no
rosbag2 compression and every MCAP reader (``ros2 bag``, the ``mcap``
package, Foxglove) reads the file directly; rosbag2 "file" compression would
wrap the whole ``.mcap`` in zstd (no MCAP reader opens it) and "message"
compression is deprecated upstream.

``metadata.yaml`` comes from robots, so it is read defensively: at most
``METADATA_MAX_BYTES``, nesting at most ``METADATA_MAX_DEPTH`` deep, and YAML
aliases are refused (rosbag2 never writes them; an "alias bomb" of a few KB
would expand to gigabytes). ``custom_data`` values must be scalars.

The functions here hold no state; the caller owns the writer it gets.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import Writer, WriterError
from rosbags.rosbag2.enums import CompressionFormat, CompressionMode, StoragePlugin
from rosbags.rosbag2.storage_mcap import McapWriter
from ruamel.yaml import YAML, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    MappingEndEvent,
    MappingStartEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)

from sop_ros.core.durable import fsync_tree
from sop_ros.core.errors import InputError
from sop_ros.core.types import EpisodeMeta
from sop_ros.storage.errors import BagError

__all__ = [
    "BAG_VERSION",
    "METADATA_MAX_BYTES",
    "METADATA_MAX_DEPTH",
    "close_writer",
    "episode_meta",
    "flush_writer",
    "mcap_files",
    "open_writer",
    "read_metadata",
    "validate_bag",
]

# rosbag2 metadata version; 9 stores QoS profiles as a YAML list (Jazzy and newer).
BAG_VERSION: Final = 9
# Largest metadata.yaml read (bytes); rosbag2 writes a few KB per topic.
METADATA_MAX_BYTES = 1 << 20
# Deepest nesting of mappings and lists in metadata.yaml (rosbag2 writes 4 levels).
METADATA_MAX_DEPTH = 16


def open_writer(path: Path, *, bag_name: str) -> Writer:
    """Create the bag directory ``path`` and return an open writer for it.

    Args:
        path: The bag directory to create.
        bag_name: Names the MCAP file ``<bag_name>_0.mcap`` as ``ros2 bag`` would,
            so the file keeps its name when the directory is renamed.

    Raises:
        BagError: ``path`` exists or cannot be created.
    """
    writer = Writer(path, version=BAG_VERSION, storage_plugin=StoragePlugin.MCAP)
    # STORAGE mode = compression done by the storage plugin: zstd MCAP chunks.
    writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    try:
        writer.open()
        storage = writer.storage
        if isinstance(storage, McapWriter):
            # The open file handle survives the rename; close() lists storage.path in metadata.yaml.
            storage.path = storage.path.rename(path / f"{bag_name}_0.mcap")
    except (WriterError, OSError) as err:
        raise BagError(f"cannot create bag {path}: {err}") from None
    return writer


def flush_writer(writer: Writer) -> None:
    """Push every message written so far into the MCAP file and the OS page cache.

    The MCAP writer buffers up to 1 MiB of messages in its open chunk; a
    killed process loses that buffer. Closing the chunk early bounds the loss
    to what arrived since the last flush. Data reaches the disk itself only
    when the OS writes it back (or :func:`close_writer` syncs it).
    """
    storage = writer.storage
    if not isinstance(storage, McapWriter):
        return
    if storage.chunk.msgs:
        storage.close_chunk()
    storage.bio.flush()


def close_writer(writer: Writer, custom_data: Mapping[str, str]) -> None:
    """Store ``custom_data``, close the bag and sync its files and directory to disk.

    Raises:
        BagError: the bag cannot be closed; its directory is left as it is.
    """
    try:
        for key, value in custom_data.items():
            writer.set_custom_data(key, value)
        writer.close()
        fsync_tree(writer.path)
    except (WriterError, OSError) as err:
        raise BagError(f"cannot close bag {writer.path}: {err}; its files are kept") from None


def mcap_files(bag_dir: Path) -> list[Path]:
    """Return the MCAP files in ``bag_dir``, in name order."""
    return sorted(p for p in bag_dir.glob("*.mcap") if p.is_file())


def read_metadata(bag_dir: Path) -> dict[str, Any]:
    """Return the ``rosbag2_bagfile_information`` mapping of ``bag_dir/metadata.yaml``.

    Raises:
        BagError: the file is missing, too large, not YAML, holds aliases or nests too deep,
            or lacks that mapping.
    """
    path = bag_dir / "metadata.yaml"
    try:
        size = path.stat().st_size
        if size > METADATA_MAX_BYTES:
            raise BagError(f"{path} has {size} bytes; metadata.yaml may have at most {METADATA_MAX_BYTES}")
        text = path.read_text()
        yaml = YAML(typ="safe")
        _check_yaml_events(path, yaml.parse(text))
        data = yaml.load(text)
    except FileNotFoundError:
        raise BagError(f"{bag_dir} is not a bag: it has no metadata.yaml") from None
    except (OSError, YAMLError, UnicodeDecodeError) as err:
        raise BagError(f"cannot read {path}: {err}") from None
    info = data.get("rosbag2_bagfile_information") if isinstance(data, dict) else None
    if not isinstance(info, dict):
        raise BagError(f"{path} lacks 'rosbag2_bagfile_information'")
    return info


def _check_yaml_events(path: Path, events: Any) -> None:
    """Refuse aliases and deep nesting before anything is built from the YAML."""
    depth = 0
    for event in events:
        if isinstance(event, AliasEvent):
            raise BagError(
                f"{path}: YAML alias *{event.anchor} refused (rosbag2 writes none; aliases can explode)"
            )
        if isinstance(event, (MappingStartEvent, SequenceStartEvent)):
            depth += 1
            if depth > METADATA_MAX_DEPTH:
                raise BagError(f"{path}: nesting deeper than {METADATA_MAX_DEPTH} levels refused")
        elif isinstance(event, (MappingEndEvent, SequenceEndEvent)):
            depth -= 1


def episode_meta(bag_dir: Path) -> EpisodeMeta:
    """Return the episode metadata stored in the bag's ``custom_data``.

    Raises:
        BagError: no ``metadata.yaml``, or its ``custom_data`` lacks or garbles episode keys,
            or holds a value that is not a scalar.
    """
    info = read_metadata(bag_dir)
    custom = info.get("custom_data") or {}
    if not isinstance(custom, dict):
        raise BagError(f"{bag_dir}: custom_data is not a mapping")
    for key, value in custom.items():
        if not isinstance(value, (str, int, float, bool)):
            raise BagError(
                f"{bag_dir}: custom_data[{str(key)[:80]!r}] is a {type(value).__name__}, not a scalar"
            )
    try:
        return EpisodeMeta.from_custom_data({str(k): str(v) for k, v in custom.items()})
    except InputError as err:
        raise BagError(f"{bag_dir}: {err}") from None


def validate_bag(bag_dir: Path | str, *, read_messages: bool = True) -> EpisodeMeta:
    """Check that ``bag_dir`` is a readable sop_ros episode bag; returns its metadata.

    Args:
        bag_dir: The bag directory.
        read_messages: Also read every message and compare the per-topic counts
            with ``metadata.yaml`` (catches truncated or corrupt MCAP files).

    Raises:
        BagError: with the path and what is wrong.
    """
    bag_dir = Path(bag_dir)
    meta = episode_meta(bag_dir)
    info = read_metadata(bag_dir)
    if info.get("storage_identifier") != "mcap":
        raise BagError(f"{bag_dir}: storage {info.get('storage_identifier')!r} is not mcap")
    try:
        with AnyReader([bag_dir]) as reader:
            if read_messages:
                counts: dict[int, int] = {c.id: 0 for c in reader.connections}
                for connection, _stamp, _data in reader.messages():
                    counts[connection.id] += 1
                for connection in reader.connections:
                    if counts[connection.id] != connection.msgcount:
                        raise BagError(
                            f"{bag_dir}: topic {connection.topic} holds {counts[connection.id]} "
                            f"messages, metadata.yaml says {connection.msgcount}"
                        )
    except BagError:
        raise
    except Exception as err:  # rosbags and mcap raise many types on broken files
        raise BagError(f"{bag_dir}: cannot read bag: {type(err).__name__}: {err}") from None
    return meta

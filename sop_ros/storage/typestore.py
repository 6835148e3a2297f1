"""The message types that episode bags hold, as a rosbags typestore.

The store is the newest ROS 2 distribution store of rosbags plus the
``sop_msgs`` types, parsed from their ``.msg`` files, looked for in this order:

1. the ament index: ``<prefix>/share/sop_msgs/msg`` of the first prefix on
   ``AMENT_PREFIX_PATH`` that registers ``sop_msgs`` (a colcon or apt install,
   after ``source install/setup.bash``);
2. ``<sys.prefix>/share/sop_msgs/msg`` (``sop_msgs`` built as a wheel into the
   virtual environment);
3. the source tree next to this package (an editable install).

The index is read as files (the layout ament defines), so this module needs
no ROS import.

:func:`typestore` builds the store once per process and returns the same
object afterwards; it is only read after that, so any thread may use it.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.typesys import Stores, TypesysError, get_types_from_msg, get_typestore
from rosbags.typesys.base import Nodetype
from rosbags.typesys.store import Typestore

from sop_ros.storage.errors import BagError

__all__ = [
    "ACTION_CHUNK",
    "COMPRESSED_IMAGE",
    "EPISODE_EVENT",
    "IMAGE",
    "INTERVENTION",
    "JOINT_STATE",
    "STRING",
    "definitions_dir",
    "deserialize",
    "header",
    "make",
    "serialize",
    "sop_msgs_dirs",
    "stamp_ns",
    "typestore",
]

# The ROS 2 distribution whose standard message definitions bags carry.
DISTRO = Stores.ROS2_KILTED

COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
IMAGE = "sensor_msgs/msg/Image"
JOINT_STATE = "sensor_msgs/msg/JointState"
ACTION_CHUNK = "sop_msgs/msg/ActionChunk"
INTERVENTION = "sop_msgs/msg/Intervention"
EPISODE_EVENT = "sop_msgs/msg/EpisodeEvent"
STRING = "std_msgs/msg/String"


# Where a prefix registers a package in the ament index (a marker file).
_AMENT_MARKER = Path("share/ament_index/resource_index/packages/sop_msgs")


def sop_msgs_dirs() -> list[Path]:
    """Return the folders searched for ``sop_msgs`` ``.msg`` files, in the order they are tried."""
    ament = [
        Path(prefix) / "share" / "sop_msgs" / "msg"
        for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)
        if prefix and (Path(prefix) / _AMENT_MARKER).is_file()
    ]
    source = Path(__file__).resolve().parents[2] / "sop_msgs" / "msg"
    return [*ament, Path(sys.prefix) / "share" / "sop_msgs" / "msg", source]


def definitions_dir() -> Path:
    """Return the folder the ``sop_msgs`` definitions are read from (the first of :func:`sop_msgs_dirs`).

    Raises:
        BagError: none of the folders holds ``.msg`` files.
    """
    folder = next((d for d in sop_msgs_dirs() if any(d.glob("*.msg"))), None)
    if folder is None:
        searched = ", ".join(str(d) for d in sop_msgs_dirs())
        raise BagError(f"no sop_msgs .msg files found (searched {searched})")
    return folder


@functools.cache
def typestore() -> Typestore:
    """Return the process-wide typestore with the ROS 2 and ``sop_msgs`` types.

    Raises:
        BagError: no folder with ``sop_msgs`` definitions exists, or one does not parse.
    """
    store = get_typestore(DISTRO)
    folder = definitions_dir()
    types = {}
    for path in sorted(folder.glob("*.msg")):
        try:
            types.update(get_types_from_msg(path.read_text(), f"sop_msgs/msg/{path.stem}"))
        except TypesysError as err:
            raise BagError(f"cannot parse message definition {path}: {err}") from None
    store.register(types)
    return store


def make(msgtype: str, **fields: Any) -> Any:
    """Return a message object of ``msgtype``; fields left out get their zero value.

    Raises:
        BagError: ``msgtype`` is not in the store.
    """
    store = typestore()
    try:
        cls = store.types[msgtype]
    except KeyError:
        raise BagError(f"unknown message type {msgtype!r}") from None
    values = {}
    # The field definitions list real fields only (a dataclass also lists constants like START).
    for name, _ in store.fielddefs[msgtype][1]:
        values[name] = fields.pop(name) if name in fields else _zero(store, msgtype, name)
    if fields:
        raise BagError(f"{msgtype} has no field(s) {sorted(fields)}")
    return cls(**values)


def _zero(store: Typestore, msgtype: str, name: str) -> Any:
    # rosbags keeps the field layout in the store's field definitions.
    kind, spec = dict(store.fielddefs[msgtype][1])[name]
    return _zero_of(kind, spec)


def _zero_of(kind: Nodetype, spec: Any) -> Any:
    if kind == Nodetype.BASE:
        return _BASE_ZERO.get(spec[0], 0)
    if kind == Nodetype.NAME:
        return make(spec)
    (subkind, subspec), length = spec
    if subkind == Nodetype.BASE and subspec[0] != "string":
        # Numeric sequences and arrays deserialise to numpy arrays; keep the same form.
        dtype = np.uint8 if subspec[0] in {"octet", "byte", "char"} else np.dtype(subspec[0])
        return np.zeros(length if kind == Nodetype.ARRAY else 0, dtype=dtype)
    if kind == Nodetype.ARRAY:
        return [_zero_of(subkind, subspec) for _ in range(length)]
    return []


_BASE_ZERO: dict[str, Any] = {"string": "", "bool": False, "float32": 0.0, "float64": 0.0}


def header(stamp: int, frame_id: str = "") -> Any:
    """Return a ``std_msgs/Header`` for ``stamp`` (ns since the epoch)."""
    time = make("builtin_interfaces/msg/Time", sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000)
    return make("std_msgs/msg/Header", stamp=time, frame_id=frame_id)


def stamp_ns(msg: Any) -> int:
    """Return the header stamp of ``msg`` in ns since the epoch."""
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def serialize(msg: Any) -> bytes:
    """Return ``msg`` as CDR bytes, exactly as rclpy would publish it."""
    return bytes(typestore().serialize_cdr(msg, msg.__msgtype__))


def deserialize(data: bytes | memoryview, msgtype: str) -> Any:
    """Return the message object that the CDR bytes ``data`` of ``msgtype`` hold.

    Raises:
        BagError: ``msgtype`` is unknown or ``data`` does not decode.
    """
    try:
        return typestore().deserialize_cdr(bytes(data), msgtype)
    except KeyError:
        raise BagError(f"unknown message type {msgtype!r}") from None
    except Exception as err:  # rosbags raises assorted errors on malformed CDR
        raise BagError(f"{len(data)} bytes do not decode as {msgtype}: {err}") from None

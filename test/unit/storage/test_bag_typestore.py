from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from sop_ros.storage import typestore as ts
from sop_ros.storage.errors import BagError

SOP_TYPES = ("ActionChunk", "Intervention", "EpisodeEvent", "PolicyStatus")


@pytest.mark.parametrize("name", SOP_TYPES)
def test_sop_types_hash_like_the_generated_ros_interfaces(name: str) -> None:
    generated = Path(sys.prefix) / "share" / "sop_msgs" / "msg" / f"{name}.json"
    if not generated.exists():
        pytest.skip("sop_msgs is not installed in this environment")
    hashes = {h["type_name"]: h["hash_string"] for h in json.loads(generated.read_text())["type_hashes"]}
    assert ts.typestore().hash_rihs01(f"sop_msgs/msg/{name}") == hashes[f"sop_msgs/msg/{name}"]


def test_falls_back_to_the_source_tree(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    store = ts.typestore.__wrapped__()
    assert all(f"sop_msgs/msg/{name}" in store.fielddefs for name in SOP_TYPES)


def test_the_ament_index_comes_first(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A colcon install: install/sop_msgs registers the package and holds its .msg files.
    source = Path(ts.__file__).resolve().parents[2] / "sop_msgs" / "msg"
    prefix = tmp_path / "install" / "sop_msgs"
    (prefix / "share" / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
    (prefix / "share" / "ament_index" / "resource_index" / "packages" / "sop_msgs").touch()
    msg_dir = prefix / "share" / "sop_msgs" / "msg"
    msg_dir.mkdir(parents=True)
    for path in source.glob("*.msg"):
        (msg_dir / path.name).write_text(path.read_text())
    unregistered = tmp_path / "other"
    (unregistered / "share" / "sop_msgs" / "msg").mkdir(parents=True)
    monkeypatch.setenv("AMENT_PREFIX_PATH", f"{unregistered}:{prefix}")
    dirs = ts.sop_msgs_dirs()
    assert dirs[0] == msg_dir and unregistered / "share" / "sop_msgs" / "msg" not in dirs
    # Only the ament copy is readable: the store is built from it.
    monkeypatch.setattr(ts, "sop_msgs_dirs", lambda: [tmp_path / "missing", *dirs[:1]])
    store = ts.typestore.__wrapped__()
    assert all(f"sop_msgs/msg/{name}" in store.fielddefs for name in SOP_TYPES)


def test_no_definitions_anywhere_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(ts, "sop_msgs_dirs", lambda: [tmp_path])
    with pytest.raises(BagError, match=re.escape(str(tmp_path))):
        ts.typestore.__wrapped__()


def test_messages_round_trip_through_cdr() -> None:
    stamp = ts.header(1_700_000_000_123_456_789)
    msg = ts.make(ts.INTERVENTION, header=stamp, active=True, action=np.ones(3, np.float32))
    back = ts.deserialize(ts.serialize(msg), ts.INTERVENTION)
    assert ts.stamp_ns(back) == 1_700_000_000_123_456_789
    assert back.active is True and back.source == "" and back.action.tolist() == [1, 1, 1]
    empty = ts.deserialize(ts.serialize(ts.make(ts.JOINT_STATE)), ts.JOINT_STATE)
    assert empty.name == [] and empty.position.size == 0


def test_bad_types_fields_and_bytes_are_reported() -> None:
    with pytest.raises(BagError, match="unknown message type"):
        ts.make("nope_msgs/msg/Nope")
    with pytest.raises(BagError, match="no field"):
        ts.make(ts.STRING, text="x")
    with pytest.raises(BagError, match="do not decode"):
        ts.deserialize(b"\x00\x01\x00\x00\xff", ts.JOINT_STATE)

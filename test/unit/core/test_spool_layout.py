"""The robot's spool: one layout, moves that never overwrite, and only committed bags ever deleted."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from sop_ros.core.errors import BagError
from sop_ros.core.spool import REASON_FILE, Spool

ROOT = Path(__file__).resolve().parents[3]
LAYOUT_NAMES = {"recording", "ready", "uploaded", REASON_FILE}


def bag(folder: Path, name: str, payload: bytes = b"mcap") -> Path:
    path = folder / name
    path.mkdir(parents=True)
    (path / f"{name}_0.mcap").write_bytes(payload)
    return path


def modules_naming_the_layout() -> set[str]:
    found = set()
    for path in sorted([*(ROOT / "sop_ros").rglob("*.py"), *(ROOT / "bench").rglob("*.py")]):
        tree = ast.parse(path.read_text(), filename=str(path))
        if any(isinstance(n, ast.Constant) and n.value in LAYOUT_NAMES for n in ast.walk(tree)):
            found.add(str(path.relative_to(ROOT)))
    return found


def test_only_one_module_defines_the_spool_layout() -> None:
    found = modules_naming_the_layout() - {"sop_ros/core/spool.py"}
    assert found == set(), "spool layout spelled outside sop_ros/core/spool.py"


def test_a_second_copy_of_an_episode_keeps_its_episode_id(tmp_path: Path) -> None:
    spool = Spool(tmp_path).create()
    first = spool.mark_uploaded(bag(spool.ready, "r1-ep.7"))
    second = spool.mark_uploaded(bag(spool.ready, "r1-ep.7"))
    assert (first.name, second.name) == ("r1-ep.7", "r1-ep.7~2")
    assert {spool.episode_id(p) for p in spool.closed_bags()} == {"r1-ep.7"}


def test_publish_never_overwrites_a_waiting_bag(tmp_path: Path) -> None:
    spool = Spool(tmp_path).create()
    waiting = bag(spool.ready, "ep", b"first")
    second = bag(spool.recording, "ep.partial", b"second")
    with pytest.raises(BagError, match="exists already, not overwriting"):
        spool.publish(second, "ep")
    assert (waiting / "ep_0.mcap").read_bytes() == b"first"
    assert (second / "ep.partial_0.mcap").read_bytes() == b"second"


def test_uploaded_twice_keeps_both_copies(tmp_path: Path) -> None:
    spool = Spool(tmp_path).create()
    first = spool.mark_uploaded(bag(spool.ready, "ep", b"first"))
    second = spool.mark_uploaded(bag(spool.ready, "ep", b"second"))
    assert (first.name, second.name) == ("ep", "ep~2")
    assert (first / "ep_0.mcap").read_bytes() == b"first"
    assert (second / "ep_0.mcap").read_bytes() == b"second"
    assert spool.ready_bags() == []


def test_quarantine_keeps_every_copy_with_its_reason(tmp_path: Path) -> None:
    spool = Spool(tmp_path).create()
    kept = [spool.quarantine_bag(bag(spool.ready, "ep"), f"reason {i}") for i in range(3)]
    assert [p.name for p in kept] == ["ep", "ep~2", "ep~3"]
    assert [(p / REASON_FILE).read_text() for p in kept] == ["reason 0\n", "reason 1\n", "reason 2\n"]
    assert all((p / "ep_0.mcap").exists() for p in kept)


def test_a_move_that_cannot_happen_keeps_the_source(tmp_path: Path) -> None:
    spool = Spool(tmp_path).create()
    not_a_bag = spool.ready / "stray.txt"
    not_a_bag.write_text("x")
    with pytest.raises(BagError, match="not a bag directory"):
        spool.quarantine_bag(not_a_bag, "why")
    with pytest.raises(BagError, match="not a bag directory"):
        spool.mark_uploaded(spool.ready / "vanished")
    assert not_a_bag.read_text() == "x" and list(spool.quarantine.iterdir()) == []


def test_ready_bags_oldest_first_and_hidden_ones_skipped(tmp_path: Path) -> None:
    spool = Spool(tmp_path).create()
    for i, name in enumerate(["c", "a", "b"]):
        os.utime(bag(spool.ready, name), ns=(i * 10**9, i * 10**9))
    bag(spool.ready, ".in-progress")
    assert [p.name for p in spool.ready_bags()] == ["c", "a", "b"]


@pytest.mark.parametrize(
    ("keep", "keep_bytes", "left"),
    [(-1, 0, ["e3", "e2", "e1", "e0"]), (2, 0, ["e3", "e2"]), (0, 0, []), (-1, 250, ["e3", "e2"])],
)
def test_pruning_deletes_only_the_oldest_uploaded_bags(
    tmp_path: Path, keep: int, keep_bytes: int, left: list[str]
) -> None:
    spool = Spool(tmp_path).create()
    for i in range(4):
        os.utime(bag(spool.uploaded, f"e{i}", b"x" * 100), ns=(i * 10**9, i * 10**9))
    waiting = bag(spool.ready, "not-uploaded", b"x" * 1000)
    spool.prune_uploaded(keep=keep, keep_bytes=keep_bytes)
    assert sorted(p.name for p in spool.uploaded.iterdir()) == sorted(left)
    assert spool.ready_bags() == [waiting]

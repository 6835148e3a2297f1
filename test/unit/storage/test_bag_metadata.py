"""metadata.yaml comes from robots: aliases, huge files, deep nesting and non-scalar values are refused."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sop_ros.storage.bagio import METADATA_MAX_BYTES, episode_meta, read_metadata
from sop_ros.storage.errors import BagError


def insert_custom(bag: Path, lines: list[str]) -> None:
    """Insert ``lines`` (unindented) as the first entries of the bag's custom_data."""
    path = bag / "metadata.yaml"
    text = path.read_text().splitlines()
    at = next(i for i, line in enumerate(text) if line.strip() == "custom_data:")
    indent = " " * (len(text[at + 1]) - len(text[at + 1].lstrip()))
    path.write_text("\n".join([*text[: at + 1], *(indent + line for line in lines), *text[at + 1 :]]) + "\n")


def test_an_alias_bomb_is_refused_before_it_expands(simple_bag: Callable[..., Path]) -> None:
    bag = simple_bag()
    bomb = ["sop.l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    bomb += [f"sop.l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 10)]
    insert_custom(bag, bomb)
    assert (bag / "metadata.yaml").stat().st_size < 4096  # 10^9 strings once expanded
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.monotonic()
    with pytest.raises(BagError, match=r"YAML alias \*l0 refused"):
        episode_meta(bag)
    assert time.monotonic() - start < 1.0
    # ru_maxrss is the peak in KiB: expanding even 10^7 strings would raise it by hundreds of MB.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before < 64 << 10


def test_a_single_alias_is_refused_too(simple_bag: Callable[..., Path]) -> None:
    bag = simple_bag()
    insert_custom(bag, ["sop.a: &a hello", "sop.b: *a"])
    with pytest.raises(BagError, match=r"YAML alias \*a refused"):
        read_metadata(bag)


def test_an_oversized_metadata_file_is_refused_unread(simple_bag: Callable[..., Path]) -> None:
    bag = simple_bag()
    insert_custom(bag, [f"sop.pad: '{'x' * METADATA_MAX_BYTES}'"])
    with pytest.raises(BagError, match=f"may have at most {METADATA_MAX_BYTES}"):
        read_metadata(bag)


def test_deep_nesting_is_refused(simple_bag: Callable[..., Path]) -> None:
    bag = simple_bag()
    insert_custom(bag, ["sop.deep: " + "[" * 40 + "]" * 40])
    with pytest.raises(BagError, match="nesting deeper than 16 levels"):
        read_metadata(bag)


def test_a_non_scalar_custom_value_is_refused(simple_bag: Callable[..., Path]) -> None:
    bag = simple_bag()
    insert_custom(bag, ["sop.list: [1, 2, 3]"])
    with pytest.raises(BagError, match=r"custom_data\['sop.list'\] is a list, not a scalar"):
        episode_meta(bag)


def test_a_sound_bag_still_reads(simple_bag: Callable[..., Path]) -> None:
    assert episode_meta(simple_bag()).episode_id == "robot_1-ep"

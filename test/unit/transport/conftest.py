"""Fixtures of the transport tests: a loopback Zenoh router (scouting off) and small real bags."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from transport_helpers import Fleet, write_bag

from sop_ros.core.types import EpisodeMeta


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    f = Fleet()
    yield f
    f.close()


@pytest.fixture
def bag_factory(tmp_path: Path) -> Callable[..., tuple[Path, EpisodeMeta]]:
    spool = tmp_path / "robot_bags"
    spool.mkdir()

    def make(robot_id: str, **kwargs) -> tuple[Path, EpisodeMeta]:
        return write_bag(spool, robot_id, **kwargs)

    return make

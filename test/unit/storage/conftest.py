"""Fixtures of the storage tests: a recorder on a temporary spool and small finished bags."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from bag_helpers import BagWriter, jpeg, make_meta

from sop_ros.core.types import Outcome
from sop_ros.storage.recorder import EpisodeRecorder


@pytest.fixture
def recorder(tmp_path: Path) -> EpisodeRecorder:
    return EpisodeRecorder(tmp_path / "spool", quota_bytes=1 << 30)


@pytest.fixture
def simple_bag(recorder: EpisodeRecorder) -> Callable[..., Path]:
    """Record a finished episode of ``steps`` control steps at 100 ms; returns the bag dir."""

    def record(steps: int = 5, episode_id: str = "robot_1-ep", outcome: Outcome = Outcome.SUCCESS) -> Path:
        bag = BagWriter(recorder)
        recorder.start(make_meta(episode_id))
        for i in range(steps):
            t = 1_000_000 + i * 100
            bag.frame("front", t, jpeg((255, 0, 0)))
            bag.joints(t + 1, [float(i), 0.0])
            bag.command(t + 2, [float(i) * 10, 1.0])
        return recorder.finish(
            make_meta(
                episode_id,
                outcome=outcome,
                policy_versions=("v0001", "v0002"),
                end_ns=2_000_000,
                interventions=(),
            )
        )

    return record

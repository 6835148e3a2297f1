"""A demo run never resumes the one before it: what that run wrote is moved aside, the caches stay."""

from __future__ import annotations

from pathlib import Path

from sop_ros.demo.run import RUN_STATE, set_aside_previous_run


def test_a_previous_runs_state_is_moved_aside_and_the_caches_stay(tmp_path: Path) -> None:
    (tmp_path / "demos").mkdir()
    (tmp_path / "base").mkdir()
    (tmp_path / "learner" / "step-00004200").mkdir(parents=True)
    (tmp_path / "store" / "bag").mkdir(parents=True)
    (tmp_path / "summary.json").write_text("{}")
    first = set_aside_previous_run(tmp_path)
    assert first is not None and first.parent == tmp_path / "earlier"
    assert (first / "learner" / "step-00004200").is_dir() and (first / "store" / "bag").is_dir()
    assert (first / "summary.json").read_text() == "{}"
    assert not any((tmp_path / name).exists() for name in RUN_STATE)
    assert (tmp_path / "demos").is_dir() and (tmp_path / "base").is_dir()
    # A second run's leftovers, with the same time stamp, go beside the first's; nothing is replaced.
    (tmp_path / "learner").mkdir()
    second = set_aside_previous_run(tmp_path)
    assert second is not None and second != first and (second / "learner").is_dir()
    assert set_aside_previous_run(tmp_path) is None  # nothing left to move

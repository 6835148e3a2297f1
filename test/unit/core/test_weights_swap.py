"""WeightsSwapper: verified in the background, swapped in only between episodes."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from sop_ros.core.errors import WeightsError
from sop_ros.core.weights_swap import WeightsSwapper, check_weights_finite


class ShadowPolicy:
    """A policy with a shadow copy; staging blocks until ``release`` is set (when ``slow``)."""

    def __init__(self, *, slow: bool = False) -> None:
        self.active_version = "v0000"
        self.staged_version: str | None = None
        self.release = threading.Event()
        if not slow:
            self.release.set()

    def stage(self, source: Path, *, version: str | None = None) -> None:
        assert self.release.wait(10.0)
        self.staged_version = version or source.stem

    def activate(self) -> float:
        if self.staged_version is None:
            raise WeightsError("no weights are staged")
        self.active_version, self.staged_version = self.staged_version, None
        return 0.1


@pytest.fixture
def weights_file(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "v0001.safetensors"
    save_file({"w": torch.zeros(3), "steps": torch.arange(2)}, str(path))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_weights_with_nan_or_inf_are_refused_naming_the_tensors(tmp_path: Path, weights_file) -> None:
    check_weights_finite(weights_file[0])
    bad = tmp_path / "bad.safetensors"
    save_file({"good": torch.ones(4), "layer.w": torch.tensor([0.0, float("nan"), float("inf")])}, str(bad))
    with pytest.raises(WeightsError, match=r"NaN or infinite values in layer\.w \(2 of 3 values\)"):
        check_weights_finite(bad)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError, match="cannot read weights"):
        check_weights_finite(garbage)
    swapper = WeightsSwapper(ShadowPolicy())
    answer = swapper.stage(bad, version="v0002", wait_s=10.0)
    assert not answer.accepted and "layer.w" in answer.message and "layer.w" in swapper.last_error
    # The error clears once good weights are staged.
    assert swapper.stage(weights_file[0], version="v0003", wait_s=10.0).accepted
    assert swapper.last_error == ""


def test_an_unexpected_failure_in_staging_is_an_answer_not_a_dead_thread(weights_file) -> None:
    class Broken(ShadowPolicy):
        def stage(self, source: Path, *, version: str | None = None) -> None:
            raise KeyError("tokenizer_config.json")

    swapper = WeightsSwapper(Broken())
    answer = swapper.stage(weights_file[0], version="v0001", wait_s=10.0)
    assert not answer.accepted and "KeyError" in answer.message
    # The swapper is free again: the next request is taken.
    assert "still staging" not in swapper.stage(weights_file[0], version="v0001", wait_s=10.0).message


def test_a_verified_file_is_staged_and_swapped_in_between_episodes(weights_file) -> None:
    path, digest = weights_file
    changes = []
    policy = ShadowPolicy()
    swapper = WeightsSwapper(policy, on_change=lambda: changes.append(policy.active_version))
    staged = swapper.stage(path, version="v0001", sha256=digest, wait_s=5.0)
    assert (staged.accepted, staged.deferred) == (True, False) and "staged v0001" in staged.message
    assert policy.active_version == "v0000"  # staging never touches the live weights
    swapped = swapper.activate("v0001")
    assert (swapped.accepted, swapped.deferred) == (True, False), swapped.message
    assert policy.active_version == "v0001" and changes[-1] == "v0001"


def test_a_file_with_the_wrong_digest_is_refused_and_nothing_is_staged(weights_file) -> None:
    path, _ = weights_file
    policy = ShadowPolicy()
    swapper = WeightsSwapper(policy)
    answer = swapper.stage(path, version="v0001", sha256="0" * 64, wait_s=5.0)
    assert not answer.accepted and "sha256" in answer.message
    assert policy.staged_version is None and "sha256" in swapper.last_error
    assert not swapper.activate("v0001").accepted


def test_during_an_episode_the_swap_waits_for_its_end(weights_file) -> None:
    path, digest = weights_file
    policy = ShadowPolicy()
    swapper = WeightsSwapper(policy)
    swapper.stage(path, version="v0001", sha256=digest, wait_s=5.0)
    swapper.episode_started()
    answer = swapper.activate("v0001")
    assert (answer.accepted, answer.deferred) == (True, True)
    assert policy.active_version == "v0000"
    swapper.episode_ended()
    assert policy.active_version == "v0001"


def test_a_slow_staging_answers_at_once_and_its_activation_waits_for_staging_and_the_episode_end(
    weights_file,
) -> None:
    path, digest = weights_file
    policy = ShadowPolicy(slow=True)
    staged = threading.Event()
    swapper = WeightsSwapper(policy, on_change=staged.set)
    swapper.episode_started()
    answer = swapper.stage(path, version="v0001", sha256=digest, wait_s=0.05)
    assert (answer.accepted, answer.deferred) == (True, True) and "in the background" in answer.message
    busy = swapper.stage(path, version="v0002", sha256=digest)
    assert not busy.accepted and "still staging v0001" in busy.message
    waiting = swapper.activate("v0001")
    assert (waiting.accepted, waiting.deferred) == (True, True) and "once staged" in waiting.message

    policy.release.set()
    assert staged.wait(5.0)
    assert (policy.staged_version, policy.active_version) == ("v0001", "v0000")  # the episode still runs
    swapper.episode_ended()
    assert policy.active_version == "v0001"


def test_an_activation_asked_for_during_staging_between_episodes_swaps_once_staged(weights_file) -> None:
    path, digest = weights_file
    policy = ShadowPolicy(slow=True)
    swapped = threading.Event()
    swapper = WeightsSwapper(policy, on_change=lambda: policy.active_version == "v0001" and swapped.set())
    swapper.stage(path, version="v0001", sha256=digest, wait_s=0.0)
    assert swapper.activate("").deferred
    assert policy.active_version == "v0000"
    policy.release.set()
    assert swapped.wait(5.0)
    assert not swapper.episode_running and policy.staged_version is None


def test_an_activation_of_another_version_than_the_staged_one_is_refused(weights_file) -> None:
    path, digest = weights_file
    swapper = WeightsSwapper(ShadowPolicy())
    assert not swapper.activate("v0001").accepted  # nothing staged
    swapper.stage(path, version="v0001", sha256=digest, wait_s=5.0)
    answer = swapper.activate("v0002")
    assert not answer.accepted and "staged is 'v0001'" in answer.message

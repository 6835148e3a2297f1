"""The cloud learner trains the policy its algorithm acts with, or a ready one it is handed."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from sop_ros.core.errors import ConfigError
from sop_ros.core.policy import PolicyConfig, make_policy
from sop_ros.learner.builder import LearnerSettings
from sop_ros.learner.service import CloudConfig, CloudLearner
from sop_ros.learner.types import TrainablePolicy

ZENOH = Path(__file__).resolve().parents[3] / "config" / "zenoh" / "test_router.json5"
POLICY = PolicyConfig(
    model="tiny", camera_names=("front",), horizon=4, denoising_steps=2, device="cpu", max_prompt_tokens=16
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def cloud(tmp_path: Path, algorithm: str, policy: TrainablePolicy | None = None) -> Iterator[CloudLearner]:
    settings = LearnerSettings(
        algorithm=algorithm,
        store_dir=str(tmp_path / "store"),
        checkpoint_dir=str(tmp_path / "ckpt"),
        log_dir="",
    )
    config = CloudConfig(listen=f"tcp/127.0.0.1:{_free_port()}", policy=POLICY, learner=settings)
    learner = CloudLearner(config, zenoh_config=ZENOH, policy=policy)
    try:
        yield learner
    finally:
        learner.close(checkpoint=False)


def test_a_recap_learner_trains_a_policy_that_prompts_with_the_indicator(tmp_path: Path) -> None:
    positive = make_policy(replace(POLICY, inference_advantage="positive"))
    with cloud(tmp_path, "recap") as recap:
        assert recap.policy.config_hash == positive.config_hash
    with cloud(tmp_path, "hg_dagger") as hg_dagger:
        assert hg_dagger.policy.config_hash == make_policy(POLICY).config_hash


def test_a_ready_policy_is_trained_as_handed_in(tmp_path: Path) -> None:
    policy = make_policy(POLICY)
    with cloud(tmp_path, "hg_dagger", policy) as learner:
        assert learner.policy is policy and learner.learner.policy is policy


def test_a_ready_policy_acting_otherwise_than_the_algorithm_trains_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="build it from policy_config_for"):
        CloudLearner(
            CloudConfig(policy=POLICY, learner=LearnerSettings(algorithm="recap", log_dir="")),
            zenoh_config=ZENOH,
            policy=make_policy(POLICY),
        )

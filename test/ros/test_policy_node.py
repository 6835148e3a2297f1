"""The policy node on a tiny π0: acts only on fresh input during episodes, swaps weights only between them."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.parameter import Parameter
from ros_helpers import FakeRobot, spinning, wait_for
from sop_msgs.msg import EpisodeEvent
from sop_msgs.srv import ActivateWeights, StageWeights

from sop_ros.core.policy import Policy, PolicyConfig, make_policy
from sop_ros.nodes.policy_node import PolicyNode

NAMES = ["ee_x", "ee_y", "gripper"]
POLICY = dict(
    camera_names=("head",),
    action_names=tuple(NAMES),
    state_names=tuple(NAMES),
    horizon=10,
    control_period_s=0.1,
    denoising_steps=3,
)


def fake_robot(context) -> FakeRobot:
    """The policy tests' robot: a grey 64 px camera, three joints."""
    return FakeRobot(
        context,
        pixels=np.full((64, 64, 3), 90, np.uint8),
        joints=NAMES,
        position=[0.1, 0.2, 0.03],
        instruction="put the can",
    )


@pytest.fixture
def weights_v1(tmp_path: Path) -> tuple[Path, str]:
    donor = make_policy(PolicyConfig(**POLICY))
    state = donor.trainable_state()
    name = next(iter(state))
    donor.load_trainable_state({**state, name: state[name] + 0.5})
    path = tmp_path / "v0001.safetensors"
    donor.save_trainable(path, version="v0001")
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def policy_node(context, *, policy: Policy | None = None, **parameters) -> PolicyNode:
    overrides = [
        Parameter(f"policy.{k}", value=list(v) if isinstance(v, tuple) else v) for k, v in POLICY.items()
    ]
    overrides += [Parameter(k, value=v) for k, v in {"replan_period_s": 0.2, **parameters}.items()]
    return PolicyNode(context=context, parameter_overrides=overrides, policy=policy)


def diagnosed_errors(robot: FakeRobot) -> list[str]:
    """The messages of every ERROR the robot's node hears on /diagnostics, as they come."""
    errors: list[str] = []
    robot.node.create_subscription(
        DiagnosticArray,
        "/diagnostics",
        lambda msg: errors.extend(s.message for s in msg.status if s.level == DiagnosticStatus.ERROR),
        10,
    )
    return errors


class BreakablePolicy:
    """A real policy whose inference can be made to fail the way no check foresees."""

    def __init__(self, policy: Policy) -> None:
        self._policy = policy
        self.broken = threading.Event()

    def __getattr__(self, name: str):
        return getattr(self._policy, name)

    def infer(self, observation):
        if self.broken.is_set():
            raise RuntimeError("device-side assert triggered")
        return self._policy.infer(observation)


@pytest.mark.slow
def test_weights_swap_only_at_the_episode_boundary(ros_context, weights_v1) -> None:
    path, digest = weights_v1
    node = policy_node(ros_context)
    robot = fake_robot(ros_context)
    with spinning(ros_context, node, robot.node):
        assert wait_for(lambda: robot.status and robot.status[-1].active_version == "v0000")
        time.sleep(1.0)
        assert robot.chunks == []  # no episode, no actions

        robot.episode(EpisodeEvent.START, "e1")
        assert wait_for(lambda: len(robot.chunks) >= 2)
        chunk = robot.chunks[-1]
        assert (chunk.horizon, chunk.action_dim, list(chunk.action_names)) == (10, 3, NAMES)
        assert chunk.infer_ms > 0

        refused = robot.call(
            StageWeights, "policy/stage", StageWeights.Request(path=str(path), sha256="0" * 64)
        )
        assert not refused.accepted and "sha256" in refused.message
        staged = robot.call(StageWeights, "policy/stage", StageWeights.Request(path=str(path), sha256=digest))
        assert staged.accepted, staged.message
        answer = robot.call(ActivateWeights, "policy/activate", ActivateWeights.Request(version="v0001"))
        assert (answer.accepted, answer.deferred) == (True, True), answer.message
        count = len(robot.chunks)
        assert wait_for(lambda: len(robot.chunks) >= count + 2)  # still acting, still on v0000
        assert {c.policy_version for c in robot.chunks} == {"v0000"}

        robot.episode(EpisodeEvent.END, "e1")
        assert wait_for(lambda: robot.status[-1].active_version == "v0001")
        assert robot.status[-1].staged_version == "" and not robot.status[-1].episode_running
        first_after = len(robot.chunks)

        robot.episode(EpisodeEvent.START, "e2")
        assert wait_for(lambda: len(robot.chunks) >= first_after + 2)
        versions = [c.policy_version for c in robot.chunks]
        assert set(versions[:first_after]) == {"v0000"} and set(versions[first_after:]) == {"v0001"}

        robot.sensing.clear()  # the cameras go quiet: the policy must stop acting
        time.sleep(3.0)  # input goes stale after 0.5 s; an inference already running may still finish
        count = len(robot.chunks)
        time.sleep(1.5)
        assert len(robot.chunks) == count
        robot.episode(EpisodeEvent.END, "e2")


@pytest.mark.slow
def test_staging_in_the_background_still_verifies_and_swaps_between_episodes(ros_context, weights_v1) -> None:
    """A stage request answered before staging ends: a bad file is still refused, a good one waits."""
    path, digest = weights_v1
    node = policy_node(ros_context, stage_answer_wait_s=0.0)
    robot = fake_robot(ros_context)
    errors = diagnosed_errors(robot)
    with spinning(ros_context, node, robot.node):
        assert wait_for(lambda: robot.status and robot.status[-1].active_version == "v0000")
        robot.episode(EpisodeEvent.START, "e1")
        assert wait_for(lambda: len(robot.chunks) >= 1)

        bad = StageWeights.Request(path=str(path), version="v0001", sha256="0" * 64)
        answer = robot.call(StageWeights, "policy/stage", bad)
        # Answered before the 4 MB file is hashed (else refused outright, should the hash win the race).
        assert "in the background" in answer.message or not answer.accepted, answer.message
        assert wait_for(lambda: any("sha256" in e for e in errors), 10.0), "the bad digest was not reported"
        assert robot.status[-1].staged_version == ""

        good = StageWeights.Request(path=str(path), version="v0001", sha256=digest)
        assert robot.call(StageWeights, "policy/stage", good).accepted
        answer = robot.call(ActivateWeights, "policy/activate", ActivateWeights.Request(version="v0001"))
        assert (answer.accepted, answer.deferred) == (True, True), answer.message
        count = len(robot.chunks)
        assert wait_for(lambda: len(robot.chunks) >= count + 2)
        assert {c.policy_version for c in robot.chunks} == {"v0000"}  # never mid-episode

        robot.episode(EpisodeEvent.END, "e1")
        assert wait_for(lambda: robot.status[-1].active_version == "v0001")


@pytest.mark.slow
def test_the_inference_worker_outlives_an_unexpected_exception(ros_context, capfd) -> None:
    """A failure no check foresaw: logged once with its traceback, ERROR while it lasts, then acting again."""
    policy = BreakablePolicy(make_policy(PolicyConfig(**POLICY)))
    broken = policy.broken
    node = policy_node(ros_context, policy=policy)
    robot = fake_robot(ros_context)
    statuses: list[DiagnosticStatus] = []
    robot.node.create_subscription(
        DiagnosticArray,
        "/diagnostics",
        lambda msg: statuses.extend(s for s in msg.status if s.name == "/policy"),
        10,
    )
    with spinning(ros_context, node, robot.node):
        assert wait_for(lambda: robot.status and robot.status[-1].active_version == "v0000")
        assert node.policy is policy
        robot.episode(EpisodeEvent.START, "e1")
        assert wait_for(lambda: len(robot.chunks) >= 1)
        broken.set()
        assert wait_for(
            lambda: (
                statuses
                and statuses[-1].level == DiagnosticStatus.ERROR
                and "RuntimeError: device-side assert triggered" in statuses[-1].message
            )
        )
        count = len(robot.chunks)
        time.sleep(1.5)
        assert len(robot.chunks) == count  # holding
        broken.clear()
        assert wait_for(lambda: len(robot.chunks) >= count + 2)  # the same worker thread recovered
        assert wait_for(
            lambda: statuses[-1].level == DiagnosticStatus.OK and statuses[-1].message == "acting"
        )
        robot.episode(EpisodeEvent.END, "e1")
    logged = capfd.readouterr().err
    assert logged.count("Traceback (most recent call last)") == 1, logged


@pytest.mark.slow
def test_a_robot_acting_without_the_advantage_indicator_refuses_recap_weights(ros_context, tmp_path) -> None:
    """Weights a RECAP learner trained reach a robot left at inference_advantage 'none': refused, said why."""
    recap = make_policy(PolicyConfig(**POLICY, inference_advantage="positive"))
    path = tmp_path / "v0001.safetensors"
    recap.save_trainable(path, version="v0001")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    node = policy_node(ros_context, stage_answer_wait_s=10.0)
    robot = fake_robot(ros_context)
    errors = diagnosed_errors(robot)
    with spinning(ros_context, node, robot.node):
        assert wait_for(lambda: robot.status and robot.status[-1].active_version == "v0000")
        request = StageWeights.Request(path=str(path), version="v0001", sha256=digest)
        answer = robot.call(StageWeights, "policy/stage", request)
        assert not answer.accepted, answer.message
        assert "trained with RECAP's advantage indicator" in answer.message, answer.message
        assert "Set policy.inference_advantage to 'positive'" in answer.message, answer.message
        assert "v0000 stays in use" in answer.message, answer.message
        activate = robot.call(ActivateWeights, "policy/activate", ActivateWeights.Request(version="v0001"))
        assert not activate.accepted, activate.message
        assert wait_for(lambda: any("advantage indicator" in e for e in errors), 10.0)
        assert robot.status[-1].active_version == "v0000" and robot.status[-1].staged_version == ""
        robot.episode(EpisodeEvent.START, "e1")
        assert wait_for(lambda: len(robot.chunks) >= 1)  # still acting, on the weights it had
        assert {c.policy_version for c in robot.chunks} == {"v0000"}
        robot.episode(EpisodeEvent.END, "e1")

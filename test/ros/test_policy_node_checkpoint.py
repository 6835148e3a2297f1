"""The policy node on a LeRobot-layout π0 checkpoint: it acts, stages a published version, and its chunk
after the swap is what the exported checkpoint gives in sop_ros and in ``transformers``."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from rclpy.parameter import Parameter
from ros_helpers import FakeRobot, spinning, wait_for
from sop_msgs.msg import EpisodeEvent
from sop_msgs.srv import ActivateWeights, StageWeights
from transformers import PI0ForConditionalGeneration

from sop_ros.core.policy import PolicyConfig, make_policy
from sop_ros.core.policy.export import export_checkpoint
from sop_ros.core.types import Observation
from sop_ros.nodes.convert import image_from_msg
from sop_ros.nodes.policy_node import PolicyNode

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "core" / "policy"))
from checkpoint_fixtures import CHUNK, write_lerobot_checkpoint, write_tokenizer

STATES = ["s0", "s1", "s2", "s3"]
ACTIONS = ("a0", "a1", "a2")
INSTRUCTION = "Put the Can in the bin"


def settings(ckpt: Path, tokenizer: Path) -> dict:
    return dict(
        model=str(ckpt),
        tokenizer=str(tokenizer),
        camera_names=("head",),
        camera_keys="observation.images.left_wrist_0_rgb",
        horizon=CHUNK,
        denoising_steps=3,
        state_names=tuple(STATES),
        action_names=ACTIONS,
        control_period_s=0.1,
        device="cpu",
    )


def fake_robot(context) -> FakeRobot:
    """A robot with a 4:3 camera (resized with padding) and the checkpoint's four state values."""
    return FakeRobot(
        context,
        pixels=np.random.default_rng(3).integers(0, 256, (21, 28, 3), dtype=np.uint8),
        joints=STATES,
        position=[0.1, -0.2, 0.3, 0.05],
        instruction=INSTRUCTION,
    )


@pytest.mark.slow
def test_a_checkpoint_policy_node_swaps_in_a_published_version_that_exports(
    ros_context, tmp_path: Path
) -> None:
    ckpt = write_lerobot_checkpoint(tmp_path / "pi0")
    tokenizer = write_tokenizer(tmp_path / "paligemma")
    config = PolicyConfig(**settings(ckpt, tokenizer))
    learner = make_policy(config)  # stands for the learner: a post-trained version, published as a file
    with torch.no_grad():
        for param in learner.trainable_parameters():
            param.add_(0.05 * torch.randn_like(param))
    published = tmp_path / "v0001.safetensors"
    learner.save_trainable(published, version="v0001")
    digest = hashlib.sha256(published.read_bytes()).hexdigest()

    overrides = [
        Parameter(f"policy.{k}", value=list(v) if isinstance(v, tuple) else v)
        for k, v in settings(ckpt, tokenizer).items()
    ]
    node = PolicyNode(
        context=ros_context, parameter_overrides=[*overrides, Parameter("replan_period_s", value=0.2)]
    )
    robot = fake_robot(ros_context)
    with spinning(ros_context, node, robot.node):
        assert wait_for(lambda: robot.status and robot.status[-1].active_version == "v0000", 60.0)
        robot.episode(EpisodeEvent.START, "e1")
        assert wait_for(lambda: len(robot.chunks) >= 1, 60.0)
        request = StageWeights.Request(path=str(published), version="v0001", sha256=digest)
        assert robot.call(StageWeights, "policy/stage", request).accepted
        answer = robot.call(ActivateWeights, "policy/activate", ActivateWeights.Request(version="v0001"))
        assert answer.accepted, answer.message
        robot.episode(EpisodeEvent.END, "e1")
        assert wait_for(lambda: robot.status[-1].active_version == "v0001", 60.0)
        before = len(robot.chunks)
        robot.episode(EpisodeEvent.START, "e2")
        assert wait_for(lambda: len(robot.chunks) > before, 60.0)
        first = robot.chunks[before]
        robot.episode(EpisodeEvent.END, "e2")
    assert first.policy_version == "v0001"
    node_actions = np.asarray(first.actions, np.float32).reshape(first.horizon, first.action_dim)

    # The episode's first chunk drew the first noise of the re-seeded generator.
    noise = torch.randn((1, CHUNK, 32), generator=torch.Generator().manual_seed(config.seed))
    observation = Observation(
        images={"head": image_from_msg(robot.jpeg)},
        state=np.asarray(robot.position, np.float32),
        instruction=INSTRUCTION,
        stamp_ns=0,
    )
    np.testing.assert_allclose(
        learner.infer_batch([observation], noise=noise)[0].actions, node_actions, atol=1e-5
    )
    out = export_checkpoint(learner, tmp_path / "exported", version="v0001", weights_file=str(published))
    exported = make_policy(PolicyConfig(**{**settings(out, tokenizer), "tokenizer": ""}))
    np.testing.assert_allclose(
        exported.infer_batch([observation], noise=noise)[0].actions, node_actions, atol=1e-5
    )
    hf = PI0ForConditionalGeneration.from_pretrained(out / "transformers", local_files_only=True).eval()
    prompt = exported._prompt(INSTRUCTION, None)
    inputs = exported._encoder.observations(
        [observation.images], [observation.state], [prompt], exported.norm_stats
    )
    normalised = hf.sample_actions(**inputs, noise=noise, num_steps=3)[0, :, :3].numpy()
    stats = exported.norm_stats
    np.testing.assert_allclose(normalised * stats.action_std + stats.action_mean, node_actions, atol=1e-5)

"""sop_ros against LeRobot itself: a LeRobot-made π0 loads and acts the same; post-trained, it goes back.

Needs a separate venv with LeRobot 0.6.1 (Python 3.12, its own torch and
transformers): ``make lerobot-venv`` builds it at ``.venv-lerobot`` (about
5 GB, several minutes), or point ``SOP_LEROBOT_PYTHON`` at one. Without it
these tests are skipped. The LeRobot half runs in a subprocess
(``test/crosscheck/lerobot_side.py``); this half runs sop_ros, its learner and
``transformers`` in this interpreter, fp32 on the CPU.

Set ``SOP_CROSSCHECK_REPORT=path.json`` to write the measured differences.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import PI0ForConditionalGeneration

from sop_ros.core.policy import Pi0Policy, PolicyConfig
from sop_ros.core.policy.export import export_checkpoint
from sop_ros.core.types import EpisodeMeta, InterventionSegment, Observation, Outcome
from sop_ros.learner.algorithms import make_algorithm
from sop_ros.learner.buffers import OfflineBuffer, ReplayBuffers
from sop_ros.learner.loop import Learner, LearnerConfig
from sop_ros.learner.sampler import TaskBalancedSampler
from sop_ros.storage.episodes import Episode

ROOT = Path(__file__).resolve().parents[4]
LEROBOT_SIDE = ROOT / "test" / "crosscheck" / "lerobot_side.py"
PYTHON = Path(os.environ.get("SOP_LEROBOT_PYTHON", ROOT / ".venv-lerobot" / "bin" / "python"))
CAMERAS = ("base_0_rgb", "left_wrist_0_rgb")
STATES = tuple(f"s{i}" for i in range(6))
ACTIONS = tuple(f"a{i}" for i in range(5))
CHUNK = 8

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not PYTHON.exists(), reason=f"no LeRobot venv at {PYTHON} (make lerobot-venv)"),
]
REPORT: dict[str, object] = {}


def _lerobot(*args: str) -> None:
    subprocess.run([str(PYTHON), str(LEROBOT_SIDE), *args], check=True, timeout=1800)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    work = tmp_path_factory.mktemp("lerobot")
    _lerobot("make", str(work))
    yield work
    if path := os.environ.get("SOP_CROSSCHECK_REPORT"):
        Path(path).write_text(json.dumps(REPORT, indent=2) + "\n")


def _config(ckpt: Path, work: Path, **overrides) -> PolicyConfig:
    values = dict(
        model=str(ckpt),
        tokenizer=str(work / "paligemma_tokenizer"),
        camera_names=CAMERAS,
        horizon=CHUNK,
        denoising_steps=3,
        state_names=STATES,
        action_names=ACTIONS,
        device="cpu",
        dtype="float32",
    )
    values.update(overrides)
    return PolicyConfig(**values)


def _observation(work: Path) -> Observation:
    data = dict(np.load(work / "observation.npz"))
    return Observation(
        images={name: data[name] for name in CAMERAS},
        state=data["state"],
        instruction=(work / "instruction.txt").read_text(),
        stamp_ns=0,
    )


def _compare(policy: Pi0Policy, work: Path, reference: dict[str, np.ndarray], prefix: str) -> None:
    observation = _observation(work)
    inputs = policy._encoder.observations(
        [observation.images],
        [observation.state],
        [policy._prompt(observation.instruction, None)],
        policy.norm_stats,
    )
    per_image = policy._encoder._layout.tokens_per_image
    text = slice(3 * per_image, None)
    np.testing.assert_array_equal(inputs["attention_mask"][0, text].numpy(), reference["token_mask"][0])
    mask = reference["token_mask"][0].astype(bool)
    np.testing.assert_array_equal(inputs["input_ids"][0, text].numpy()[mask], reference["tokens"][0][mask])
    state_diff = float(np.abs(inputs["state"][0, :6].numpy() - reference["state_normalised"][0]).max())
    image_diff = float(np.abs(inputs["pixel_values"][0, :2].numpy() - reference["images"][0, :2]).max())
    np.testing.assert_array_equal(inputs["pixel_attention_mask"].numpy(), reference["image_masks"])
    noise = torch.from_numpy(np.load(work / "noise.npy"))
    chunk = policy.infer_batch([observation], noise=noise)[0].actions
    scale = float(np.abs(reference["chunk"]).max())
    chunk_diff = float(np.abs(chunk - reference["chunk"][0]).max())
    first = policy.infer_batch([observation], noise=torch.from_numpy(reference["select_noise"]))[0].actions[0]
    select_diff = float(np.abs(first - reference["select_action"][0]).max())
    REPORT[prefix] = {
        "tokens_equal": True,
        "normalised_state_max_abs_diff": state_diff,
        "image_tensor_max_abs_diff": image_diff,
        "chunk_max_abs_diff": chunk_diff,
        "action_scale": scale,
        "chunk_diff_relative_to_scale": chunk_diff / scale,
        "select_action_max_abs_diff": select_diff,
    }
    assert state_diff < 1e-6 and image_diff < 1e-6
    assert chunk_diff <= 1e-4 * scale and select_diff <= 1e-4 * scale


def test_a_lerobot_made_pi0_acts_the_same_in_sop_ros(work: Path) -> None:
    policy = Pi0Policy(_config(work / "lerobot_pi0", work))
    _compare(policy, work, dict(np.load(work / "lerobot_outputs.npz")), "lerobot_checkpoint")


def _episode(work: Path, seed: int, human: tuple[int, ...]) -> Episode:
    import cv2

    rng = np.random.default_rng(seed)
    base = _observation(work)
    steps = 12
    states = (base.state + 0.05 * np.arange(steps)[:, None] * rng.normal(size=6)).astype(np.float32)
    actions = (states[:, :5] * 0.3 + 0.1).astype(np.float32)
    frames = {
        name: [cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes()] * steps
        for name, image in base.images.items()
    }
    is_human = np.zeros(steps, bool)
    is_human[list(human)] = True
    meta = EpisodeMeta(
        episode_id=f"robot0-pick-{seed}",
        robot_id="robot0",
        task="pick",
        instruction=base.instruction,
        outcome=Outcome.SUCCESS,
        policy_versions=("v0000",),
        interventions=(InterventionSegment(start_ns=0, end_ns=1),) if human else (),
    )
    return Episode(
        path=work / "episodes" / str(seed),
        meta=meta,
        action_names=ACTIONS,
        state_names=STATES,
        stamps_ns=np.arange(steps, dtype=np.int64) * 50_000_000,
        states=states,
        actions=actions,
        is_human=is_human,
        frames=frames,
        horizon=CHUNK,
    )


def test_post_trained_with_hg_dagger_it_exports_and_loads_back_in_lerobot_and_transformers(
    work: Path,
) -> None:
    ckpt = work / "lerobot_pi0"
    # The learner: HG-DAgger on a demonstration and an intervened-on episode, publishing versions.
    policy = Pi0Policy(_config(ckpt, work))
    before = {name: t.clone() for name, t in policy.trainable_state().items()}
    algorithm = make_algorithm("hg_dagger", policy)
    buffers = ReplayBuffers(
        offline={"pick": OfflineBuffer("pick", [_episode(work, 1, ())])},
        select_online=algorithm.select_online,
    )
    buffers.add_online(_episode(work, 2, (3, 4, 5, 6)))
    published: list[Path] = []
    learner = Learner(
        policy=policy,
        algorithm=algorithm,
        buffers=buffers,
        sampler=TaskBalancedSampler(),
        load_episode=lambda path: None,
        publish=lambda path, manifest: published.append(Path(path)),
        checkpoint_dir=work / "learner",
        config=LearnerConfig(
            batch_size=2, publish_every_steps=3, checkpoint_every_steps=10_000, progress_bar=False
        ),
    )
    learner.start()
    learner.run(3)
    assert published, "the learner published no version"
    moved = max(float((t - before[n]).abs().max()) for n, t in policy.trainable_state().items())
    assert moved > 0
    del learner, policy, algorithm, buffers
    # A robot's policy stages and activates the published version, as the policy node does.
    robot = Pi0Policy(_config(ckpt, work))
    robot.stage(published[-1])
    robot.activate()
    observation = _observation(work)
    noise = torch.from_numpy(np.load(work / "noise.npy"))
    robot_chunk = robot.infer_batch([observation], noise=noise)[0].actions
    inputs = robot._encoder.observations(
        [observation.images],
        [observation.state],
        [robot._prompt(observation.instruction, None)],
        robot.norm_stats,
    )
    robot_normalised = robot.model.sample_actions(**inputs, noise=noise, num_steps=3)[0, :, :5].numpy()
    out = export_checkpoint(
        robot, work / "exported", version=robot.active_version, weights_file=str(published[-1])
    )
    del robot
    # LeRobot loads the export and, for the same observation and noise, gives the robot's chunk.
    _lerobot("run", str(out), str(work), str(work / "exported_outputs.npz"))
    lerobot = dict(np.load(work / "exported_outputs.npz"))
    scale = float(np.abs(lerobot["chunk"]).max())
    lerobot_diff = float(np.abs(lerobot["chunk"][0] - robot_chunk).max())
    # transformers loads the export's transformers/ folder and samples the same normalised chunk.
    hf = PI0ForConditionalGeneration.from_pretrained(out / "transformers", local_files_only=True).eval()
    hf_normalised = hf.sample_actions(**inputs, noise=noise, num_steps=3)[0, :, :5].numpy()
    hf_diff = float(np.abs(hf_normalised - robot_normalised).max())
    REPORT["post_trained"] = {
        "published_version": published[-1].name,
        "largest_weight_change": moved,
        "lerobot_chunk_max_abs_diff": lerobot_diff,
        "action_scale": scale,
        "transformers_normalised_chunk_max_abs_diff": hf_diff,
    }
    assert lerobot_diff <= 1e-4 * scale
    assert hf_diff <= 1e-5  # the same network and inputs; float32 rounding only
    del hf
    _compare(Pi0Policy(_config(out, work, tokenizer="")), work, lerobot, "exported_checkpoint")


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v", "-s"]))

"""Run the learner on whatever device torch finds (CUDA on a GPU machine): tiny π0, both algorithms.

Usage: python test/unit/learner/gpu_check.py OUT_DIR [STEPS]. Needs no OpenCV or ROS: the
episodes are in memory. Prints one JSON line per algorithm (step time, loss first/last, devices).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from sop_ros.core.policy import PolicyConfig, make_policy
from sop_ros.core.types import EpisodeMeta, Outcome
from sop_ros.learner import (
    Learner,
    LearnerConfig,
    OfflineBuffer,
    ReplayBuffers,
    TaskBalancedSampler,
    init_distributed,
    make_algorithm,
)

CAMERAS, STATE, ACTION, HORIZON = ("front", "wrist"), 6, 4, 8


class MemoryEpisode:
    """An episode held as decoded arrays (the learner only needs the EpisodeLike surface)."""

    def __init__(self, task: str, seed: int, human: bool, outcome: Outcome) -> None:
        rng = np.random.default_rng(seed)
        steps = 40
        start, direction = rng.normal(size=STATE), rng.normal(size=STATE)
        self.states = (start + 0.02 * np.arange(steps)[:, None] * direction).astype(np.float32)
        self.actions = (0.5 * self.states[:, :ACTION]).astype(np.float32)
        self.is_human = np.zeros(steps, bool)
        if human:
            self.is_human[10:20] = True
        self.frames = rng.integers(0, 255, size=(len(CAMERAS), 1, 64, 64, 3), dtype=np.uint8)
        self.cameras = CAMERAS
        self.meta = EpisodeMeta(
            episode_id=f"{task}-{seed}", robot_id="r", task=task, instruction=f"do {task}", outcome=outcome,
            policy_versions=("v0001",),
        )  # fmt: skip

    def __len__(self) -> int:
        return len(self.states)

    def action_chunk(self, step: int) -> np.ndarray:
        return self.actions[np.minimum(np.arange(step, step + HORIZON), len(self) - 1)]

    def image(self, camera: str, step: int) -> np.ndarray:
        return self.frames[CAMERAS.index(camera), 0]


def main() -> None:
    out = Path(sys.argv[1])
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    dist = init_distributed()
    for name in ("hg_dagger", "recap"):
        torch.manual_seed(0)
        policy = make_policy(
            PolicyConfig(
                model="tiny",
                camera_names=CAMERAS,
                horizon=HORIZON,
                image_size_px=64,
                action_names=tuple(f"a{i}" for i in range(ACTION)),
                state_names=tuple(f"s{i}" for i in range(STATE)),
            )
        )
        algorithm = make_algorithm(name, policy, dist=dist)
        tasks = ("pick", "place", "fold")
        offline = {
            t: OfflineBuffer(
                t, [MemoryEpisode(t, i, False, Outcome.SUCCESS)], select=algorithm.select_offline
            )
            for i, t in enumerate(tasks)
        }
        published = []
        learner = Learner(
            policy=policy,
            algorithm=algorithm,
            buffers=ReplayBuffers(offline=offline, select_online=algorithm.select_online),
            sampler=TaskBalancedSampler(rank=dist.rank),
            load_episode=lambda path: None,
            publish=lambda path, manifest, sink=published: sink.append(manifest.version),
            checkpoint_dir=out / name,
            config=LearnerConfig(
                batch_size=32, publish_every_steps=10, checkpoint_every_steps=steps, progress_bar=False
            ),
            dist=dist,
        )
        learner.start()
        for i, task in enumerate(tasks):
            for j in range(3):
                learner.buffers.add_online(
                    MemoryEpisode(task, 100 + 10 * i + j, True, Outcome(("success", "failure")[j % 2]))
                )
        losses, times = [], []
        for _ in range(steps):
            if dist.device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            losses.append(learner.train_step().stats["loss"])
            if dist.device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - started)
        resumed_version = learner.version
        learner.close()
        value_device = str(next(algorithm.value_net.parameters()).device) if name == "recap" else None
        report = {
            "algorithm": name,
            "device": torch.cuda.get_device_name() if dist.device.type == "cuda" else "cpu",
            "policy_device": str(policy.device),
            "policy_dtype": str(policy.dtype),
            "value_net_device": value_device,
            "step_ms_median": 1000 * float(np.median(times[3:])),
            "samples_per_s": 32 / float(np.median(times[3:])),
            "loss_first5": float(np.mean(losses[:5])),
            "loss_last5": float(np.mean(losses[-5:])),
            "published": published,
            "version": resumed_version,
        }
        print(json.dumps(report), flush=True)
        (out / f"{name}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main()

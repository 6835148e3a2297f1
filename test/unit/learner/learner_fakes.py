"""Small in-memory collaborators for learner tests: episodes, a bag-like store and a tiny policy."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from sop_ros.core.types import EpisodeMeta, Outcome
from sop_ros.core.weights import TensorSpec

STATE_DIM = 3
ACTION_DIM = 2
HORIZON = 4
IMAGE_SIDE = 8


@dataclass
class FakeEpisode:
    meta: EpisodeMeta
    states: np.ndarray
    actions: np.ndarray
    is_human: np.ndarray
    frames: np.ndarray  # (steps, H, W, 3) uint8, one camera

    def __len__(self) -> int:
        return len(self.states)

    def images_at(self, step: int) -> Mapping[str, np.ndarray]:
        return {"front": self.frames[step]}


def make_episode(
    task: str = "pick",
    steps: int = 6,
    *,
    human: Sequence[int] = (),
    outcome: Outcome = Outcome.SUCCESS,
    seed: int = 0,
    episode_id: str | None = None,
    version: str = "v0001",
    interventions: int | None = None,
) -> FakeEpisode:
    """An episode whose actions are a fixed linear function of state plus image brightness."""
    rng = np.random.default_rng(seed)
    states = rng.normal(size=(steps, STATE_DIM)).astype(np.float32)
    frames = rng.integers(0, 255, size=(steps, IMAGE_SIDE, IMAGE_SIDE, 3), dtype=np.uint8)
    brightness = frames.mean(axis=(1, 2, 3)) / 255.0
    base = states[:, :ACTION_DIM] * 0.5 + brightness[:, None]
    actions = np.repeat(base[:, None, :], HORIZON, axis=1).astype(np.float32)
    is_human = np.zeros(steps, dtype=bool)
    is_human[list(human)] = True
    from sop_ros.core.types import InterventionSegment

    count = (1 if len(human) else 0) if interventions is None else interventions
    meta = EpisodeMeta(
        episode_id=episode_id or f"robot0-{task}-{seed}",
        robot_id="robot0",
        task=task,
        instruction=f"do {task}",
        outcome=outcome,
        policy_versions=(version,),
        interventions=tuple(InterventionSegment(start_ns=0, end_ns=1) for _ in range(count)),
    )
    return FakeEpisode(meta=meta, states=states, actions=actions, is_human=is_human, frames=frames)


def write_bag(store: Path, episode: FakeEpisode) -> Path:
    """Store an episode as ``<store>/<task>/<robot>/<id>/`` with a metadata.yaml, as the ingest does."""
    meta = episode.meta
    path = store / meta.task / meta.robot_id / meta.episode_id
    path.mkdir(parents=True)
    (path / "metadata.yaml").write_text("rosbag2_bagfile_information: {}\n")
    np.savez(
        path / "data.npz",
        states=episode.states,
        actions=episode.actions,
        is_human=episode.is_human,
        frames=episode.frames,
    )
    (path / "meta.json").write_text(json.dumps(meta.to_custom_data()))
    with (store / "index.jsonl").open("a") as index:
        index.write(json.dumps({"path": str(path.relative_to(store))}) + "\n")
    return path


def load_bag(path: Path) -> FakeEpisode:
    data = np.load(path / "data.npz")
    meta = EpisodeMeta.from_custom_data(json.loads((path / "meta.json").read_text()))
    return FakeEpisode(
        meta=meta,
        states=data["states"],
        actions=data["actions"],
        is_human=data["is_human"],
        frames=data["frames"],
    )


class _TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.frozen = nn.Linear(STATE_DIM, STATE_DIM)
        self.frozen.requires_grad_(False)
        self.net = nn.Sequential(nn.Linear(STATE_DIM + 2, 32), nn.Tanh(), nn.Linear(32, HORIZON * ACTION_DIM))

    def forward(self, state, extra):
        return self.net(torch.cat([self.frozen(state), extra], dim=1)).view(-1, HORIZON, ACTION_DIM)


class TinyPolicy:
    """A small MLP with Pi0Policy's training interface: predicts the chunk from state, image and indicator."""

    base_model_id = "tiny"
    config_hash = "0" * 64

    def __init__(self, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.model = _TinyNet()
        self.state_mean = np.zeros(STATE_DIM, dtype=np.float32)
        self.seen_indicators: list[bool | None] = []

    def collate(self, samples):
        self.seen_indicators.extend(s.advantage for s in samples)
        state = torch.from_numpy(np.stack([s.state for s in samples]) - self.state_mean)
        bright = torch.tensor([[float(np.mean(s.images["front"])) / 255.0] for s in samples])
        indicator = torch.tensor(
            [[0.0 if s.advantage is None else (1.0 if s.advantage else -1.0)] for s in samples]
        )
        actions = torch.from_numpy(np.stack([s.actions for s in samples]))
        return {"state": state, "extra": torch.cat([bright, indicator], dim=1), "actions": actions}

    def loss(self, batch, *, module=None):
        pred = (module or self.model)(batch["state"], batch["extra"])
        return ((pred - batch["actions"]) ** 2).mean(dim=(1, 2))

    def trainable_parameters(self):
        return list(self.model.net.parameters())

    def trainable_state(self):
        return {k: v.detach() for k, v in self.model.net.state_dict().items()}

    def load_trainable_state(self, state):
        self.model.net.load_state_dict(dict(state))

    def trainable_specs(self):
        return tuple(
            TensorSpec(name=k, dtype="F32", shape=tuple(v.shape))
            for k, v in sorted(self.trainable_state().items())
        )

    def save_trainable(self, path: Path, *, version: str | None = None) -> None:
        tensors = {k: v.contiguous() for k, v in self.trainable_state().items()}
        save_file(tensors, str(path), metadata={"state_mean": json.dumps(self.state_mean.tolist())})

    def load_trainable(self, path: Path) -> None:
        with safe_open(str(path), "pt") as f:
            self.state_mean = np.array(json.loads(f.metadata()["state_mean"]), dtype=np.float32)
            self.load_trainable_state({k: f.get_tensor(k) for k in f.keys()})  # noqa: SIM118

    def set_norm_stats(self, states, actions):
        self.state_mean = states.mean(axis=0).astype(np.float32)

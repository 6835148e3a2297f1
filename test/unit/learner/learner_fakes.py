"""Small in-memory collaborators for learner tests: episodes, a bag-like store and a tiny policy."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from sop_ros.core.types import EpisodeMeta, InterventionSegment, Outcome
from sop_ros.core.weights import TensorSpec
from sop_ros.storage.episodes import Episode

STATE_DIM = 3
ACTION_DIM = 2
HORIZON = 4
IMAGE_SIDE = 8


def _jpeg(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return data.tobytes()


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
) -> Episode:
    """An episode whose commands are a fixed function of state plus image brightness (flat, one level)."""
    rng = np.random.default_rng(seed)
    # A slow straight-line motion, so a chunk of future commands follows from the present state.
    states = (
        rng.normal(size=STATE_DIM) + 0.05 * np.arange(steps)[:, None] * rng.normal(size=STATE_DIM)
    ).astype(np.float32)
    levels = np.full(steps, rng.integers(0, 255))
    images = [np.full((IMAGE_SIDE, IMAGE_SIDE, 3), level, dtype=np.uint8) for level in levels]
    actions = (states[:, :ACTION_DIM] * 0.5 + levels[:, None] / 255.0).astype(np.float32)
    is_human = np.zeros(steps, dtype=bool)
    is_human[list(human)] = True
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
    return Episode(
        path=Path("/nonexistent"),
        meta=meta,
        action_names=tuple(f"a{i}" for i in range(ACTION_DIM)),
        state_names=tuple(f"s{i}" for i in range(STATE_DIM)),
        stamps_ns=np.arange(steps, dtype=np.int64) * 20_000_000,
        states=states,
        actions=actions,
        is_human=is_human,
        frames={"front": [_jpeg(image) for image in images]},
        horizon=HORIZON,
    )


def write_bag(store: Path, episode: Episode) -> Path:
    """Store an episode as ``<store>/<task>/<robot>/<id>/`` with a metadata.yaml, as the ingest does."""
    meta = episode.meta
    path = store / meta.task / meta.robot_id / meta.episode_id
    path.mkdir(parents=True)
    (path / "metadata.yaml").write_text("rosbag2_bagfile_information: {}\n")
    jpegs = episode.frames["front"]
    np.savez(
        path / "data.npz",
        states=episode.states,
        actions=episode.actions,
        is_human=episode.is_human,
        frames=np.frombuffer(b"".join(jpegs), np.uint8),
        frame_ends=np.cumsum([len(j) for j in jpegs]),
    )
    (path / "meta.json").write_text(json.dumps(meta.to_custom_data()))
    with (store / "index.jsonl").open("a") as index:
        index.write(json.dumps({"path": str(path.relative_to(store))}) + "\n")
    return path


def load_bag(path: Path) -> Episode:
    data = np.load(path / "data.npz")
    blob, ends = data["frames"].tobytes(), data["frame_ends"]
    starts = np.concatenate(([0], ends[:-1]))
    meta = EpisodeMeta.from_custom_data(json.loads((path / "meta.json").read_text()))
    steps = len(data["states"])
    return Episode(
        path=path,
        meta=meta,
        action_names=tuple(f"a{i}" for i in range(ACTION_DIM)),
        state_names=tuple(f"s{i}" for i in range(STATE_DIM)),
        stamps_ns=np.arange(steps, dtype=np.int64),
        states=data["states"],
        actions=data["actions"],
        is_human=data["is_human"],
        frames={"front": [blob[a:b] for a, b in zip(starts, ends, strict=True)]},
        horizon=HORIZON,
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

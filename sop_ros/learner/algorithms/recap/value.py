"""RECAP's value function: a small network of its own, separate from the policy.

Why separate: it works with any policy (it needs no hook into π0's features),
costs a few milliseconds per batch, never enters the published weights, and
its training cannot disturb the policy's. It sees what the policy sees at a
step: every camera (downsampled to ``image_size``, a two-layer CNN per image,
averaged over cameras), the state (layer-normalised), and the task (a hashed
embedding, stable across processes). It predicts the task-normalised return
in [−1, 0].

Threads: belongs to the training thread.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sop_ros.learner.types import TrainingSample

__all__ = ["ValueNet"]


class ValueNet(nn.Module):
    """V(s): images + state + task -> normalised return."""

    def __init__(
        self,
        *,
        state_dim: int,
        image_size: int = 32,
        width: int = 32,
        hidden: int = 128,
        task_buckets: int = 64,
    ) -> None:
        super().__init__()
        self.state_dim = state_dim
        self.image_size = image_size
        self.task_buckets = task_buckets
        self.encoder = nn.Sequential(
            nn.Conv2d(3, width // 2, 5, stride=2, padding=2),
            nn.GELU(),
            nn.Conv2d(width // 2, width, 3, stride=2, padding=1),
            nn.GELU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.state_norm = nn.LayerNorm(state_dim)
        self.task_embedding = nn.Embedding(task_buckets, 16)
        self.head = nn.Sequential(
            nn.Linear(width + state_dim + 16, hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, 1),
        )

    def task_ids(self, tasks: Sequence[str]) -> torch.Tensor:
        """Bucket of each task name (crc32, so every process agrees)."""
        return torch.tensor([zlib.crc32(t.encode()) % self.task_buckets for t in tasks], dtype=torch.long)

    def inputs(self, samples: Sequence[TrainingSample], device: torch.device) -> tuple[torch.Tensor, ...]:
        """Tensors for :meth:`forward` from decoded samples (images resized on ``device``)."""
        cameras = sorted(samples[0].images)
        # Per camera: (batch, H, W, 3) uint8 moved as bytes, then resized as one batch.
        images = torch.stack(
            [_resize(np.stack([s.images[c] for s in samples]), self.image_size, device) for c in cameras],
            dim=1,
        )
        states = torch.from_numpy(np.stack([s.state for s in samples])).float().to(device)
        return images, states, self.task_ids([s.task for s in samples]).to(device)

    def forward(self, images: torch.Tensor, states: torch.Tensor, tasks: torch.Tensor) -> torch.Tensor:
        """Predicted normalised return, shape (batch,)."""
        batch, cameras = images.shape[:2]
        features = self.encoder(images.flatten(0, 1)).view(batch, cameras, -1).mean(dim=1)
        x = torch.cat((features, self.state_norm(states), self.task_embedding(tasks)), dim=1)
        return self.head(x).squeeze(1)


def _resize(images: np.ndarray, size: int, device: torch.device) -> torch.Tensor:
    """(batch, H, W, 3) uint8 -> (batch, 3, size, size) float in [-0.5, 0.5]."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float() / 255.0 - 0.5
    return F.interpolate(x, size=(size, size), mode="area")

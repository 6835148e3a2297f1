"""What the learner trains on and the interfaces its collaborators must offer.

The learner sees an episode through :class:`EpisodeLike` and a policy through
:class:`TrainablePolicy`; both are structural protocols, so the storage
layer's episodes and any policy with these methods plug in, and tests hand in
small in-memory ones. Everything here is immutable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np
import torch

from sop_ros.core.policy.protocol import Policy
from sop_ros.core.types import EpisodeMeta, Outcome

__all__ = [
    "EpisodeLike",
    "SampleRef",
    "TrainablePolicy",
    "TrainingSample",
]


class SampleRef(NamedTuple):
    """Where one training sample lives: task, buffer, episode index in that buffer, step."""

    task: str
    online: bool
    episode: int
    step: int


@dataclass(frozen=True, kw_only=True)
class TrainingSample:
    """One step of one episode, decoded, as a policy's ``collate`` receives it."""

    ref: SampleRef
    # Camera name -> RGB image, uint8, (height, width, 3).
    images: Mapping[str, np.ndarray]
    # Proprioceptive state at the step, float32 (state_dim,).
    state: np.ndarray
    instruction: str
    # The action chunk executed from this step, float32 (horizon, action_dim).
    actions: np.ndarray
    # True when a human produced the actions (an intervention).
    is_human: bool
    # Steps from this one to the episode's end, this one included (>= 1).
    steps_to_end: int
    outcome: Outcome
    # RECAP's advantage indicator: True "positive", False "negative", None no indicator in the prompt.
    advantage: bool | None = None

    @property
    def task(self) -> str:
        """Task the sample belongs to."""
        return self.ref.task


@runtime_checkable
class EpisodeLike(Protocol):
    """A recorded episode (:class:`sop_ros.storage.Episode`), frames compressed until :meth:`image`."""

    # Read-only members, so a frozen dataclass (like Episode) is one.
    @property
    def meta(self) -> EpisodeMeta:
        """What the robot recorded about the episode."""
        ...

    @property
    def states(self) -> np.ndarray:
        """Measured state at each step, float32 (steps, state_dim)."""
        ...

    @property
    def actions(self) -> np.ndarray:
        """Executed command of each step, float32 (steps, action_dim)."""
        ...

    @property
    def is_human(self) -> np.ndarray:
        """True where a human produced the step's command, bool (steps,)."""
        ...

    @property
    def cameras(self) -> tuple[str, ...]:
        """Camera names the episode holds frames of."""
        ...

    def __len__(self) -> int:
        """Number of steps."""
        ...

    def action_chunk(self, step: int) -> np.ndarray:
        """Commands executed from ``step`` on, float32 (horizon, action_dim); the last row repeats."""
        ...

    def image(self, camera: str, step: int) -> np.ndarray:
        """Decode the frame ``camera`` showed at ``step``: RGB uint8 (H, W, 3)."""
        ...


class TrainablePolicy(Policy, Protocol):
    """What the learner needs from a policy: :class:`~sop_ros.core.policy.Policy` and training.

    ``base_model_id`` and ``config_hash`` go into every manifest; the weights calls checkpoint,
    resume and publish.
    """

    # The network; the learner wraps it in DDP when several processes train.
    model: torch.nn.Module

    def collate(self, samples: Sequence[TrainingSample]) -> Any:
        """Turn samples into one model input batch on the policy's device."""
        ...

    def loss(self, batch: Any, *, module: torch.nn.Module | None = None) -> torch.Tensor:
        """Per-sample training loss, shape (batch,), computed by ``module`` (default :attr:`model`)."""
        ...

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """The parameters the optimizer updates (and that get published)."""
        ...

    def set_norm_stats(self, states: np.ndarray, actions: np.ndarray) -> Any:
        """Fit state/action normalisation to (steps, state_dim) and (rows, action_dim) data."""
        ...

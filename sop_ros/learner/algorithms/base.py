"""The interface every post-training algorithm implements, and the policy step they share.

An algorithm owns the optimizer over the policy's trainable parameters (and
any model of its own, such as RECAP's value network), decides which steps of
an episode are worth training on, and turns a batch of samples into one
optimisation step.

An update of a small policy is launch-bound on a GPU (thousands of small
kernels); on one CUDA device the policy step is captured once as a CUDA graph
and replayed (:class:`~sop_ros.core.policy.graphs.GraphedCall`), which needs
batches of one shape: the learner's fixed batch size and padded prompts give that.

Threads: an algorithm belongs to the training thread.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from sop_ros.core.config import setting
from sop_ros.core.errors import ConfigError
from sop_ros.core.policy.graphs import GraphedCall
from sop_ros.learner.distributed import DistContext
from sop_ros.learner.types import EpisodeLike, TrainablePolicy, TrainingSample

__all__ = ["Algorithm", "OptimizerConfig", "UpdateResult"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class OptimizerConfig:
    """AdamW over the trainable parameters only."""

    lr: float = setting(5e-4, "AdamW learning rate", low=0.0)
    weight_decay: float = setting(0.0, "AdamW weight decay", low=0.0)
    grad_clip_norm: float = setting(1.0, "clip the gradient's global norm to this (0 = no clipping)", low=0.0)
    warmup_steps: int = setting(
        100,
        "raise the learning rate linearly from lr/warmup_steps to lr over this many updates "
        "(a fresh AdamW moves every weight by about lr at its first updates; 0 = no warmup)",
        low=0,
    )
    cuda_graph: bool = setting(
        True,
        "on one CUDA device, replay each update (forward, backward, clipping, AdamW) as one CUDA graph",
    )


@dataclass(frozen=True, kw_only=True)
class UpdateResult:
    """What one optimisation step reports."""

    # Scalars to log, by name (mean policy loss is "loss").
    stats: dict[str, float]
    # Policy loss of each sample, in batch order (feeds the sampler's windows).
    sample_losses: np.ndarray = field(default_factory=lambda: np.zeros(0))


class Algorithm(abc.ABC):
    """Base class: holds the policy, its optimizer and the shared policy-gradient step."""

    name: ClassVar[str]
    # The advantage indicator the trained policy is prompted with when it acts ("none": no
    # indicator); the policy config follows it (see ``policy_config_for``).
    inference_advantage: ClassVar[str] = "none"

    def __init__(self, policy: TrainablePolicy, config: OptimizerConfig, *, dist: DistContext | None = None):
        self.policy = policy
        self.config = config
        self.dist = dist or DistContext()
        params = list(policy.trainable_parameters())
        if not params:
            raise ConfigError(f"{type(policy).__name__} has no trainable parameter")
        self._params = params
        # Where the policy trains; an algorithm's own models go there too.
        self.device = params[0].device
        # DDP over the policy's network: its forward (inside policy.loss) averages gradients across ranks.
        self._module = self.dist.wrap(policy.model)
        # DDP's gradient hooks synchronise with other processes: no graph across ranks.
        graphed = config.cuda_graph and self.device.type == "cuda" and not self.dist.active
        # One fused kernel; capturable keeps its step counts on the GPU, as capture needs.
        fused: dict[str, Any] = {"fused": True, "capturable": True} if graphed else {}
        self.optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, **fused)
        # Policy updates taken so far (the warmup's clock; kept in checkpoints).
        self.updates = 0
        self._graphed_step = GraphedCall(self._step_on) if graphed else None

    def select_offline(self, episode: EpisodeLike) -> np.ndarray:
        """Steps of an offline demonstration to train on (all, unless an algorithm says otherwise)."""
        return np.arange(len(episode), dtype=np.int32)

    @abc.abstractmethod
    def select_online(self, episode: EpisodeLike) -> np.ndarray:
        """Steps of an uploaded episode to train on."""

    @abc.abstractmethod
    def update(self, samples: Sequence[TrainingSample]) -> UpdateResult:
        """Run one optimisation step on ``samples``."""

    def _policy_step(self, samples: Sequence[TrainingSample]) -> tuple[np.ndarray, float]:
        """One AdamW step on the mean policy loss; returns (per-sample losses, grad norm)."""
        self.policy.model.train()
        self._warm_up()
        batch = self.policy.collate(samples)
        # A captured graph keeps the learning rate it was captured with: warmup updates run eagerly.
        if self._graphed_step is None or self.updates < self.config.warmup_steps:
            losses, grad_norm = self._step_on(**batch)
        else:
            try:
                losses, grad_norm = self._graphed_step(**batch)
            except RuntimeError as err:  # an op the capture cannot record: stay eager from here on
                _log.warning("the update cannot run as a CUDA graph (%s); training eagerly", err)
                self._graphed_step = None
                torch.cuda.synchronize(self.device)
                losses, grad_norm = self._step_on(**batch)
        if losses.ndim != 1 or losses.shape[0] != len(samples):
            raise ConfigError(f"policy loss must have shape ({len(samples)},), got {tuple(losses.shape)}")
        self.updates += 1
        # The one wait for the GPU per update: the sampler needs every sample's loss.
        return losses.float().cpu().numpy(), float(grad_norm)

    def _warm_up(self) -> None:
        """Set the learning rate of the coming update (the full lr once the warmup is over)."""
        warmup = self.config.warmup_steps
        if not warmup or self.updates > warmup:
            return
        lr = self.config.lr * min(1.0, (self.updates + 1) / warmup)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def _step_on(self, **batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss, backward, clipping and AdamW on one collated batch, with no wait for the GPU."""
        losses = self.policy.loss(batch, module=self._module)
        self.optimizer.zero_grad(set_to_none=True)
        losses.mean().backward()
        grad_norm = _clip(self._params, self.config.grad_clip_norm)
        self.optimizer.step()
        return losses.detach(), grad_norm

    def state_dict(self) -> dict[str, Any]:
        """Optimizer state and anything else an algorithm needs to resume."""
        return {"optimizer": self.optimizer.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        self.optimizer.load_state_dict(state["optimizer"])
        # A checkpoint from before the count was kept: its optimizer is warm already.
        self.updates = int(state.get("updates", self.config.warmup_steps + 1))
        if self._graphed_step is not None:
            self._graphed_step.reset()  # the graph holds the replaced state tensors' addresses


def _clip(params: list[nn.Parameter], max_norm: float) -> torch.Tensor:
    """Clip the gradients' global norm in place (when ``max_norm`` > 0); return the norm before."""
    if max_norm > 0:
        return torch.nn.utils.clip_grad_norm_(params, max_norm)
    norms = [p.grad.detach().norm() for p in params if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros(())

"""RECAP: a policy conditioned on a binarised advantage indicator learned from episode outcomes.

Each step: (1) the value network predicts the task-normalised return of every
sample and takes one regression step toward the Monte Carlo return; (2) the
advantage A = R − V(s) of each autonomous sample is compared with its task's
threshold (the (1 − positive_fraction) percentile of the task's recent
advantages; 0 until enough are seen) and human corrections are always
positive; (3) the indicator goes into the sample (and so into the prompt),
dropped with probability ``indicator_dropout`` so the policy also learns
without it; (4) one policy step on the flow-matching loss. At inference the
robot always asks for "positive".

Episodes whose outcome is unknown contribute only their human steps online;
offline demonstrations without an outcome count as successes.

Threads: belongs to the training thread.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sop_ros.core.types import Outcome
from sop_ros.learner.algorithms.base import Algorithm, UpdateResult
from sop_ros.learner.algorithms.recap.config import RecapConfig
from sop_ros.learner.algorithms.recap.returns import (
    advantage_threshold,
    indicator_labels,
    return_scale,
    sample_return,
)
from sop_ros.learner.algorithms.recap.value import ValueNet
from sop_ros.learner.distributed import DistContext
from sop_ros.learner.types import EpisodeLike, TrainablePolicy, TrainingSample

__all__ = ["Recap", "episode_success"]


def episode_success(outcome: Outcome, *, online: bool) -> bool | None:
    """Whether a step's episode counts as a success; None when no reward can be given."""
    if outcome is Outcome.SUCCESS:
        return True
    if outcome is Outcome.FAILURE:
        return False
    return None if online else True


class Recap(Algorithm):
    """Advantage-conditioned policy improvement with a separate value network."""

    name = "recap"
    inference_advantage = "positive"

    def __init__(
        self, policy: TrainablePolicy, config: RecapConfig | None = None, *, dist: DistContext | None = None
    ) -> None:
        self.config: RecapConfig = config or RecapConfig()
        super().__init__(policy, self.config, dist=dist)
        self._rng = np.random.default_rng(self.config.seed + self.dist.rank)
        # Largest |R_0| seen per task: the return normaliser (rebuilt when episodes are re-indexed).
        self.return_scales: dict[str, float] = {}
        self._advantages: dict[str, deque[float]] = {}
        self.value_net: ValueNet | None = None
        self._value: torch.nn.Module | None = None
        self.value_optimizer: torch.optim.Optimizer | None = None

    def _note_scale(self, episode: EpisodeLike, *, online: bool) -> bool | None:
        success = episode_success(episode.meta.outcome, online=online)
        if success is not None:
            scale = return_scale(len(episode), success=success, failure_penalty=self.config.failure_penalty)
            task = episode.meta.task
            self.return_scales[task] = max(self.return_scales.get(task, 1.0), scale)
        return success

    def select_offline(self, episode: EpisodeLike) -> np.ndarray:
        """Every step; the episode's return also widens its task's normaliser."""
        self._note_scale(episode, online=False)
        return np.arange(len(episode), dtype=np.int32)

    def select_online(self, episode: EpisodeLike) -> np.ndarray:
        """Every step of an episode with an outcome, only the human ones otherwise."""
        if self._note_scale(episode, online=True) is None:
            return np.flatnonzero(np.asarray(episode.is_human, dtype=bool)).astype(np.int32)
        return np.arange(len(episode), dtype=np.int32)

    def _ensure_value_net(self, state_dim: int) -> ValueNet:
        if self.value_net is None:
            cfg = self.config
            self.value_net = ValueNet(
                state_dim=state_dim, image_size=cfg.value_image_size, hidden=cfg.value_hidden
            ).to(self.device)
            # Same initial weights on every rank: DDP broadcasts rank 0's at wrap time.
            self._value = self.dist.wrap(self.value_net)
            self.value_optimizer = torch.optim.AdamW(self.value_net.parameters(), lr=cfg.value_lr)
        return self.value_net

    def normalised_return(self, sample: TrainingSample) -> float | None:
        """R_t / task scale for a sample, or None when its episode has no outcome."""
        success = episode_success(sample.outcome, online=sample.ref.online)
        if success is None:
            return None
        raw = sample_return(sample.steps_to_end, success=success, failure_penalty=self.config.failure_penalty)
        return raw / self.return_scales.get(sample.task, max(1.0, -raw))

    def threshold(self, task: str) -> float:
        """Current advantage threshold of ``task``."""
        window = self._advantages.get(task)
        if not window or len(window) < self.config.threshold_min_samples:
            return 0.0
        return advantage_threshold(np.fromiter(window, float), self.config.positive_fraction)

    def _value_step(self, samples: Sequence[TrainingSample]) -> tuple[np.ndarray, np.ndarray, float]:
        """Regress V toward the returns; return (returns, values before the step, value loss)."""
        net = self._ensure_value_net(int(samples[0].state.shape[0]))
        assert self._value is not None and self.value_optimizer is not None
        returns = [self.normalised_return(s) for s in samples]
        known = torch.tensor([r is not None for r in returns], device=self.device)
        target = torch.tensor([r if r is not None else 0.0 for r in returns], device=self.device)
        net.train()
        values = self._value(*net.inputs(samples, self.device))
        # Every rank must run backward (DDP), so a batch with no known return trains on zero loss.
        loss = F.mse_loss(values[known], target[known]) if bool(known.any()) else values.sum() * 0.0
        self.value_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.value_optimizer.step()
        out_returns = np.array([np.nan if r is None else r for r in returns])
        return out_returns, values.detach().float().cpu().numpy(), float(loss.detach())

    def label(self, samples: Sequence[TrainingSample], returns: np.ndarray, values: np.ndarray) -> list[bool]:
        """Binarised indicator per sample, against thresholds from before this batch.

        The batch's autonomous advantages then join their tasks' windows.
        """
        advantages = np.nan_to_num(returns - values, nan=-np.inf)
        thresholds = np.array([self.threshold(s.task) for s in samples])
        labels = indicator_labels(advantages, thresholds, np.array([s.is_human for s in samples]))
        for sample, advantage in zip(samples, advantages, strict=True):
            if np.isfinite(advantage) and not sample.is_human:
                self._window(sample.task).append(float(advantage))
        return [bool(x) for x in labels]

    def _window(self, task: str) -> deque[float]:
        return self._advantages.setdefault(task, deque(maxlen=self.config.threshold_window))

    def update(self, samples: Sequence[TrainingSample]) -> UpdateResult:
        """Value step, labelling, then one policy step on the indicator-conditioned batch."""
        returns, values, value_loss = self._value_step(samples)
        labels = self.label(samples, returns, values)
        dropped = self._rng.random(len(samples)) < self.config.indicator_dropout
        conditioned = [
            replace(s, advantage=None if drop else label)
            for s, label, drop in zip(samples, labels, dropped, strict=True)
        ]
        values_np, grad_norm = self._policy_step(conditioned)
        stats = {
            "loss": float(values_np.mean()),
            "grad_norm": grad_norm,
            "value_loss": value_loss,
            "positive_fraction": float(np.mean(labels)),
        }
        for task in sorted({s.task for s in samples}):
            stats[f"threshold/{task}"] = self.threshold(task)
        return UpdateResult(stats=stats, sample_losses=values_np)

    def state_dict(self) -> dict[str, Any]:
        """Policy optimizer, value network and its optimizer, thresholds' windows, dropout RNG."""
        state = super().state_dict()
        state["advantages"] = {task: list(w) for task, w in self._advantages.items()}
        state["rng"] = self._rng.bit_generator.state
        if self.value_net is not None and self.value_optimizer is not None:
            state["value_state_dim"] = self.value_net.state_dim
            state["value_net"] = self.value_net.state_dict()
            state["value_optimizer"] = self.value_optimizer.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (rebuilding the value network if it was saved)."""
        super().load_state_dict(state)
        self._advantages = {}
        for task, values in state["advantages"].items():
            self._window(task).extend(values)
        self._rng.bit_generator.state = state["rng"]
        if "value_net" in state:
            net = self._ensure_value_net(int(state["value_state_dim"]))
            net.load_state_dict(state["value_net"])
            assert self.value_optimizer is not None
            self.value_optimizer.load_state_dict(state["value_optimizer"])

"""Task-balanced, loss-driven sampling of online and offline steps.

Every batch gives each task with data an equal share; the remainder of an
uneven split goes one sample each to tasks in round-robin order, rotating
from batch to batch. Inside a task, sliding-window mean losses over the last
W online and W offline samples (l_on, l_off) set the chance of drawing an
online step: p_on = α·l_on / (α·l_on + l_off), clipped to [p_min, p_max].
A task with only one kind of data draws only that kind.

Threads: a sampler belongs to the training thread; it is not thread-safe.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from sop_ros.core.config import check_ranges, setting
from sop_ros.core.errors import ConfigError
from sop_ros.learner.buffers import ReplayBuffers
from sop_ros.learner.types import SampleRef

__all__ = ["SamplerConfig", "TaskBalancedSampler"]

SAMPLER_STATE_SCHEMA = 1


@dataclass(frozen=True, kw_only=True)
class SamplerConfig:
    """How batches are split between tasks and between online and offline data."""

    window_size: int = setting(200, "samples in each sliding loss window (W)", low=1)
    alpha: float = setting(2.0, "boost of the online loss in p_on (α > 1 favours online data)", low=1.0)
    p_on_min: float = setting(0.2, "smallest chance of drawing an online step", low=0.0, high=1.0)
    p_on_max: float = setting(0.8, "largest chance of drawing an online step", low=0.0, high=1.0)
    p_on_default: float = setting(
        0.5, "chance of drawing an online step before both windows hold a loss", low=0.0, high=1.0
    )
    seed: int = setting(0, "seed of the sampling RNG (each rank adds its rank)", low=0)

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.p_on_min > self.p_on_max:
            raise ConfigError(f"p_on_min ({self.p_on_min}) must be <= p_on_max ({self.p_on_max})")


class TaskBalancedSampler:
    """Draws batches of :class:`SampleRef` from :class:`ReplayBuffers`."""

    def __init__(self, config: SamplerConfig | None = None, *, rank: int = 0) -> None:
        self.config = config or SamplerConfig()
        self._rng = np.random.default_rng(self.config.seed + rank)
        self._windows: dict[tuple[str, bool], deque[float]] = {}
        # Index (into the sorted task list) of the first task to get a remainder sample.
        self._rotation = 0

    def _window(self, task: str, online: bool) -> deque[float]:
        key = (task, online)
        if key not in self._windows:
            self._windows[key] = deque(maxlen=self.config.window_size)
        return self._windows[key]

    def mean_loss(self, task: str, online: bool) -> float | None:
        """Mean of the loss window of ``task`` on one side, or None while it is empty."""
        window = self._windows.get((task, online))
        return sum(window) / len(window) if window else None

    def p_on(self, task: str, buffers: ReplayBuffers | None = None) -> float:
        """Chance that a sample of ``task`` is drawn from its online buffer.

        With ``buffers`` given, a task lacking one kind of data gets 0 or 1.
        """
        if buffers is not None:
            has_on, has_off = buffers.online_steps(task) > 0, buffers.offline_steps(task) > 0
            if not has_on:
                return 0.0
            if not has_off:
                return 1.0
        cfg = self.config
        l_on, l_off = self.mean_loss(task, True), self.mean_loss(task, False)
        if l_on is None or l_off is None or cfg.alpha * l_on + l_off <= 0.0:
            p = cfg.p_on_default
        else:
            p = cfg.alpha * l_on / (cfg.alpha * l_on + l_off)
        return min(max(p, cfg.p_on_min), cfg.p_on_max)

    def task_shares(self, tasks: list[str], batch_size: int) -> dict[str, int]:
        """Split ``batch_size`` equally over ``tasks``; advances the remainder rotation."""
        if not tasks:
            raise ConfigError("no task has any data to sample")
        base, remainder = divmod(batch_size, len(tasks))
        shares = dict.fromkeys(tasks, base)
        for i in range(remainder):
            shares[tasks[(self._rotation + i) % len(tasks)]] += 1
        self._rotation = (self._rotation + remainder) % len(tasks)
        return shares

    def sample(self, buffers: ReplayBuffers, batch_size: int) -> list[SampleRef]:
        """Draw one batch: equal task shares, each split online/offline by :meth:`p_on`."""
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        refs: list[SampleRef] = []
        for task, share in self.task_shares(buffers.tasks(), batch_size).items():
            if share == 0:
                continue
            n_on = int(self._rng.binomial(share, self.p_on(task, buffers)))
            if n_on:
                refs += buffers.buffer(task, True).sample_refs(n_on, self._rng)
            if share - n_on:
                refs += buffers.buffer(task, False).sample_refs(share - n_on, self._rng)
        return refs

    def update_losses(self, refs: list[SampleRef], losses: Any) -> None:
        """Feed per-sample losses (same order as ``refs``) into the sliding windows."""
        values = np.asarray(losses, dtype=np.float64).reshape(-1)
        if len(values) != len(refs):
            raise ConfigError(f"{len(refs)} samples but {len(values)} losses")
        for ref, loss in zip(refs, values, strict=True):
            if math.isfinite(loss):
                self._window(ref.task, ref.online).append(float(loss))

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume sampling exactly (JSON-serialisable)."""
        return {
            "schema": SAMPLER_STATE_SCHEMA,
            "rng": self._rng.bit_generator.state,
            "rotation": self._rotation,
            "windows": [[task, online, list(w)] for (task, online), w in sorted(self._windows.items())],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output; the window size of this config applies."""
        if state.get("schema") != SAMPLER_STATE_SCHEMA:
            raise ConfigError(
                f"sampler state schema {state.get('schema')!r}, expected {SAMPLER_STATE_SCHEMA}"
            )
        self._rng.bit_generator.state = state["rng"]
        self._rotation = int(state["rotation"])
        self._windows = {}
        for task, online, values in state["windows"]:
            self._window(task, bool(online)).extend(float(v) for v in values)

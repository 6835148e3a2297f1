"""RECAP's pure arithmetic: rewards, returns, advantages and the binarised indicator.

Reward is −1 for every step until the episode ends; an episode that fails
also pays ``failure_penalty`` on its last step. Returns are undiscounted, so
R_t is minus the steps left (minus the penalty on failure), and dividing by
the task's largest |R_0| puts every task's returns in [−1, 0).
"""

from __future__ import annotations

import numpy as np

from sop_ros.core.errors import ConfigError

__all__ = [
    "advantage_threshold",
    "indicator_labels",
    "mc_advantages",
    "n_step_advantages",
    "return_scale",
    "returns_to_go",
    "sample_return",
    "step_rewards",
]


def step_rewards(num_steps: int, *, success: bool, failure_penalty: float) -> np.ndarray:
    """Rewards of an episode of ``num_steps`` steps: −1 each, −penalty more on a failed last step."""
    if num_steps < 1:
        raise ConfigError(f"an episode needs at least one step, got {num_steps}")
    rewards = np.full(num_steps, -1.0)
    if not success:
        rewards[-1] -= failure_penalty
    return rewards


def returns_to_go(rewards: np.ndarray) -> np.ndarray:
    """Undiscounted return from each step to the end: R_t = Σ_{k≥t} r_k."""
    return np.cumsum(np.asarray(rewards, dtype=np.float64)[::-1])[::-1].copy()


def sample_return(steps_to_end: int, *, success: bool, failure_penalty: float) -> float:
    """R_t of one step, knowing only how many steps remain (this one included)."""
    if steps_to_end < 1:
        raise ConfigError(f"steps_to_end must be >= 1, got {steps_to_end}")
    return -float(steps_to_end) - (0.0 if success else failure_penalty)


def return_scale(num_steps: int, *, success: bool, failure_penalty: float) -> float:
    """|R_0| of an episode: the normaliser it asks of its task."""
    return -sample_return(num_steps, success=success, failure_penalty=failure_penalty)


def mc_advantages(returns: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Monte Carlo advantages A_t = R_t − V(s_t)."""
    return np.asarray(returns, dtype=np.float64) - np.asarray(values, dtype=np.float64)


def n_step_advantages(rewards: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """n-step advantages A_t = Σ_{k=t}^{t+n−1} r_k + V(s_{t+n}) − V(s_t), with V = 0 past the end.

    Rewards and values must be in the same units (both raw or both normalised).
    """
    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    rewards = np.asarray(rewards, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    steps = len(rewards)
    if len(values) != steps:
        raise ConfigError(f"{steps} rewards but {len(values)} values")
    padded = np.concatenate((np.cumsum(rewards[::-1])[::-1], [0.0]))
    ahead = np.minimum(np.arange(steps) + n, steps)
    bootstrap = np.concatenate((values, [0.0]))[ahead]
    return padded[:steps] - padded[ahead] + bootstrap - values


def advantage_threshold(advantages: np.ndarray, positive_fraction: float) -> float:
    """The advantage above which a ``positive_fraction`` of ``advantages`` lie."""
    if not 0.0 < positive_fraction < 1.0:
        raise ConfigError(f"positive_fraction must be in (0, 1), got {positive_fraction}")
    if len(advantages) == 0:
        raise ConfigError("cannot set a threshold from no advantages")
    return float(np.quantile(np.asarray(advantages, dtype=np.float64), 1.0 - positive_fraction))


def indicator_labels(
    advantages: np.ndarray, threshold: float | np.ndarray, is_human: np.ndarray
) -> np.ndarray:
    """Binarised indicator: positive where A > threshold (scalar or per sample), always for human steps."""
    return (np.asarray(advantages) > threshold) | np.asarray(is_human, dtype=bool)

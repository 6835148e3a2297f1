from __future__ import annotations

import numpy as np
import pytest

from sop_ros.core.errors import ConfigError
from sop_ros.learner.algorithms.recap.returns import (
    advantage_threshold,
    indicator_labels,
    mc_advantages,
    n_step_advantages,
    return_scale,
    returns_to_go,
    sample_return,
    step_rewards,
)

# A hand-made 4-step episode: the robot succeeds at the end of step 3.
SUCCESS_REWARDS = [-1.0, -1.0, -1.0, -1.0]
# The same length, failed, with a penalty of 10.
FAILURE_REWARDS = [-1.0, -1.0, -1.0, -11.0]


def test_rewards_and_returns_of_a_hand_made_episode():
    np.testing.assert_array_equal(step_rewards(4, success=True, failure_penalty=10), SUCCESS_REWARDS)
    np.testing.assert_array_equal(step_rewards(4, success=False, failure_penalty=10), FAILURE_REWARDS)
    np.testing.assert_array_equal(returns_to_go(SUCCESS_REWARDS), [-4, -3, -2, -1])
    np.testing.assert_array_equal(returns_to_go(FAILURE_REWARDS), [-14, -13, -12, -11])
    # The per-sample form agrees with the episode form.
    assert [sample_return(k, success=False, failure_penalty=10) for k in (4, 3, 2, 1)] == [-14, -13, -12, -11]
    assert return_scale(4, success=False, failure_penalty=10) == 14
    assert return_scale(4, success=True, failure_penalty=10) == 4


def test_advantages_monte_carlo_and_n_step():
    returns = returns_to_go(SUCCESS_REWARDS) / 4  # normalised: [-1, -0.75, -0.5, -0.25]
    values = np.array([-0.9, -0.8, -0.4, -0.25])
    np.testing.assert_allclose(mc_advantages(returns, values), [-0.1, 0.05, -0.1, 0.0])
    rewards = np.array(SUCCESS_REWARDS) / 4
    # A_t = r_t + r_{t+1} + V(s_{t+2}) - V(s_t); past the end V = 0.
    np.testing.assert_allclose(
        n_step_advantages(rewards, values, 2),
        [-0.5 - 0.4 + 0.9, -0.5 - 0.25 + 0.8, -0.5 + 0.4, -0.25 + 0.25],
    )
    # n longer than the episode is the Monte Carlo advantage.
    np.testing.assert_allclose(n_step_advantages(rewards, values, 10), mc_advantages(returns, values))


def test_threshold_and_labels_with_human_steps_always_positive():
    advantages = np.array([-0.4, -0.2, 0.0, 0.1, 0.3])
    threshold = advantage_threshold(advantages, positive_fraction=0.4)
    # 60th percentile at position 0.6 × 4 = 2.4: 0.0 + 0.4 × (0.1 − 0.0)
    assert threshold == pytest.approx(0.04)
    labels = indicator_labels(advantages, threshold, is_human=[True, False, False, False, False])
    assert labels.tolist() == [True, False, False, True, True]


def test_bad_inputs_are_refused():
    with pytest.raises(ConfigError):
        step_rewards(0, success=True, failure_penalty=1)
    with pytest.raises(ConfigError):
        advantage_threshold(np.array([1.0]), positive_fraction=1.0)
    with pytest.raises(ConfigError):
        n_step_advantages(np.zeros(3), np.zeros(2), 1)

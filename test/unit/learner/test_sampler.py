from __future__ import annotations

import numpy as np
import pytest
from learner_fakes import make_episode

from sop_ros.core.errors import ConfigError
from sop_ros.learner.buffers import OfflineBuffer, ReplayBuffers
from sop_ros.learner.sampler import SamplerConfig, TaskBalancedSampler
from sop_ros.learner.types import SampleRef


def _buffers(online_tasks=("a", "b", "c"), offline_tasks=("a", "b", "c")) -> ReplayBuffers:
    offline = {t: OfflineBuffer(t, [make_episode(t, seed=i)]) for i, t in enumerate(offline_tasks)}
    buffers = ReplayBuffers(offline=offline)
    for i, task in enumerate(online_tasks):
        buffers.add_online(make_episode(task, seed=10 + i))
    return buffers


def _feed(sampler: TaskBalancedSampler, task: str, online: bool, losses: list[float]) -> None:
    sampler.update_losses([SampleRef(task, online, 0, 0)] * len(losses), losses)


def test_every_task_gets_an_equal_share_and_the_remainder_rotates():
    sampler = TaskBalancedSampler(SamplerConfig(seed=1))
    buffers = _buffers()
    counts = []
    for _ in range(3):
        refs = sampler.sample(buffers, 10)
        counts.append([sum(r.task == t for r in refs) for t in ("a", "b", "c")])
    assert counts == [[4, 3, 3], [3, 4, 3], [3, 3, 4]]


def test_p_on_follows_the_formula_and_its_clip():
    sampler = TaskBalancedSampler(SamplerConfig(alpha=2.0, p_on_min=0.1, p_on_max=0.9, p_on_default=0.4))
    assert sampler.p_on("a") == 0.4  # no loss known yet
    _feed(sampler, "a", True, [1.0])
    assert sampler.p_on("a") == 0.4  # still no offline loss
    _feed(sampler, "a", False, [1.0])
    assert sampler.p_on("a") == pytest.approx(2 / 3)
    _feed(sampler, "a", True, [199.0])  # window mean 100 -> 200/201, clipped
    assert sampler.p_on("a") == 0.9
    _feed(sampler, "b", True, [0.0])
    _feed(sampler, "b", False, [5.0])
    assert sampler.p_on("b") == 0.1


def test_rising_online_loss_draws_more_online_samples():
    sampler = TaskBalancedSampler(
        SamplerConfig(window_size=20, alpha=2.0, p_on_min=0.05, p_on_max=0.95, seed=3)
    )
    buffers = _buffers(online_tasks=("a",), offline_tasks=("a",))
    _feed(sampler, "a", True, [0.1] * 5)
    _feed(sampler, "a", False, [1.0] * 5)
    low = sampler.p_on("a", buffers)
    low_share = np.mean([r.online for r in sampler.sample(buffers, 4000)])
    _feed(sampler, "a", True, [3.0] * 20)
    high = sampler.p_on("a", buffers)
    high_share = np.mean([r.online for r in sampler.sample(buffers, 4000)])
    assert low == pytest.approx(0.2 / 1.2) and high == pytest.approx(6 / 7)
    assert abs(low_share - low) < 0.03 and abs(high_share - high) < 0.03


def test_window_keeps_only_the_last_w_losses():
    sampler = TaskBalancedSampler(SamplerConfig(window_size=2))
    _feed(sampler, "a", True, [100.0, 1.0, 3.0])
    assert sampler.mean_loss("a", True) == 2.0
    assert sampler.mean_loss("a", False) is None


def test_task_with_one_kind_of_data_draws_only_that_kind():
    sampler = TaskBalancedSampler()
    buffers = _buffers(online_tasks=("a",), offline_tasks=("b",))
    refs = sampler.sample(buffers, 50)
    assert {(r.task, r.online) for r in refs} == {("a", True), ("b", False)}
    assert sampler.p_on("a", buffers) == 1.0 and sampler.p_on("b", buffers) == 0.0


def test_state_round_trip_resumes_the_same_draws():
    sampler = TaskBalancedSampler(SamplerConfig(seed=5))
    buffers = _buffers()
    sampler.sample(buffers, 7)
    _feed(sampler, "a", True, [0.5, 0.7])
    state = sampler.state_dict()
    restored = TaskBalancedSampler(SamplerConfig(seed=99))
    restored.load_state_dict(state)
    assert restored.sample(buffers, 11) == sampler.sample(buffers, 11)
    assert restored.mean_loss("a", True) == pytest.approx(0.6)


def test_ranks_draw_different_batches():
    buffers = _buffers()
    rank0 = TaskBalancedSampler(SamplerConfig(seed=0), rank=0)
    rank1 = TaskBalancedSampler(SamplerConfig(seed=0), rank=1)
    assert rank0.sample(buffers, 30) != rank1.sample(buffers, 30)


def test_bad_configs_and_inputs_are_refused():
    with pytest.raises(ConfigError, match="p_on_min"):
        SamplerConfig(p_on_min=0.9, p_on_max=0.1)
    with pytest.raises(ConfigError, match="alpha"):
        SamplerConfig(alpha=0.5)
    with pytest.raises(ConfigError, match="no task"):
        TaskBalancedSampler().sample(ReplayBuffers(), 4)
    with pytest.raises(ConfigError, match="2 samples but 1 losses"):
        TaskBalancedSampler().update_losses([SampleRef("a", True, 0, 0)] * 2, [1.0])

from __future__ import annotations

import numpy as np
import pytest
import torch
from learner_fakes import TinyPolicy, make_episode

from sop_ros.core.errors import ConfigError
from sop_ros.core.types import Outcome
from sop_ros.learner.algorithms import make_algorithm
from sop_ros.learner.algorithms.hg_dagger import HGDaggerConfig, select_hg_dagger_steps
from sop_ros.learner.algorithms.recap import RecapConfig
from sop_ros.learner.buffers import make_sample
from sop_ros.learner.types import SampleRef


def _samples(episodes, online=True):
    return [
        make_sample(ep, SampleRef(ep.meta.task, online, i, step))
        for i, ep in enumerate(episodes)
        for step in range(len(ep))
    ]


def test_registry_names_the_valid_algorithms_on_a_typo():
    with pytest.raises(ConfigError, match=r"unknown algorithm 'hg_dagge'; choose one of: hg_dagger, recap"):
        make_algorithm("hg_dagge")
    with pytest.raises(ConfigError, match="takes a RecapConfig"):
        make_algorithm("recap", TinyPolicy(), config=HGDaggerConfig())


def test_hg_dagger_keeps_human_steps_and_optionally_clean_successful_autonomous_ones():
    is_human = np.array([0, 0, 0, 0, 1, 1, 0, 0], dtype=bool)
    human_only = select_hg_dagger_steps(
        is_human, success=True, use_successful_autonomous=False, skip_before_intervention_steps=2
    )
    assert human_only.tolist() == [4, 5]
    with_autonomous = select_hg_dagger_steps(
        is_human, success=True, use_successful_autonomous=True, skip_before_intervention_steps=2
    )
    assert with_autonomous.tolist() == [0, 1, 4, 5, 6, 7]  # 2 and 3 led into the takeover
    failed = select_hg_dagger_steps(
        is_human, success=False, use_successful_autonomous=True, skip_before_intervention_steps=2
    )
    assert failed.tolist() == [4, 5]


def test_hg_dagger_lowers_the_imitation_loss_and_trains_only_trainable_params():
    policy = TinyPolicy()
    frozen = policy.model.frozen.weight.clone()
    algorithm = make_algorithm("hg_dagger", policy, config=HGDaggerConfig(lr=1e-2))
    samples = _samples([make_episode(seed=s, human=(1,)) for s in range(4)])
    first = algorithm.update(samples)
    for _ in range(60):
        last = algorithm.update(samples)
    assert last.stats["loss"] < 0.3 * first.stats["loss"]
    assert first.sample_losses.shape == (len(samples),)
    assert first.stats["human_fraction"] == pytest.approx(4 / 24)
    assert torch.equal(policy.model.frozen.weight, frozen)


def test_recap_labels_human_steps_positive_and_drops_the_indicator_at_the_stated_rate():
    policy = TinyPolicy()
    algorithm = make_algorithm(
        "recap", policy, config=RecapConfig(indicator_dropout=0.25, seed=1, value_image_size=16)
    )
    episodes = [
        make_episode(seed=s, human=(0,), outcome=Outcome.FAILURE if s % 2 else Outcome.SUCCESS)
        for s in range(8)
    ]
    for ep in episodes:
        algorithm.select_online(ep)
    samples = _samples(episodes)
    for _ in range(20):
        policy.seen_indicators.clear()
        result = algorithm.update(samples)
    seen = policy.seen_indicators
    assert 0.1 < sum(s is None for s in seen) / len(seen) < 0.4
    labels = algorithm.label(samples, np.full(len(samples), -5.0), np.zeros(len(samples)))
    assert [lab for s, lab in zip(samples, labels, strict=True) if s.is_human] == [True] * 8
    assert not any(lab for s, lab in zip(samples, labels, strict=True) if not s.is_human)
    assert {"loss", "value_loss", "positive_fraction", "threshold/pick"} <= set(result.stats)


def test_recap_value_net_learns_the_normalised_returns():
    algorithm = make_algorithm(
        "recap", TinyPolicy(), config=RecapConfig(failure_penalty=6.0, value_lr=3e-3, value_image_size=16)
    )
    episodes = [make_episode(seed=s, outcome=Outcome.FAILURE if s % 2 else Outcome.SUCCESS) for s in range(4)]
    for ep in episodes:
        algorithm.select_online(ep)
    assert algorithm.return_scales == {"pick": 12.0}  # 6 steps + a penalty of 6
    samples = _samples(episodes)
    assert algorithm.normalised_return(samples[6]) == -1.0  # first step of a failed episode
    assert algorithm.normalised_return(samples[5]) == pytest.approx(-1 / 12)  # last step of a success
    first = algorithm.update(samples).stats["value_loss"]
    for _ in range(60):
        last = algorithm.update(samples).stats["value_loss"]
    assert last < 0.2 * first


def test_recap_threshold_turns_into_a_percentile_after_enough_samples():
    algorithm = make_algorithm(
        "recap", TinyPolicy(), config=RecapConfig(threshold_min_samples=4, positive_fraction=0.5)
    )
    samples = _samples([make_episode(steps=4)])
    assert algorithm.threshold("pick") == 0.0
    algorithm.label(samples, np.array([-0.4, -0.3, -0.2, -0.1]), np.zeros(4))
    assert algorithm.threshold("pick") == pytest.approx(-0.25)


def test_recap_trains_only_human_steps_of_episodes_without_an_outcome():
    algorithm = make_algorithm("recap", TinyPolicy())
    unknown = make_episode(human=(2, 3), outcome=Outcome.UNKNOWN)
    assert algorithm.select_online(unknown).tolist() == [2, 3]
    assert algorithm.select_offline(unknown).tolist() == list(range(6))


def test_recap_state_round_trip_restores_value_net_and_thresholds():
    algorithm = make_algorithm("recap", TinyPolicy(), config=RecapConfig(threshold_min_samples=2))
    episode = make_episode()
    algorithm.select_online(episode)
    samples = _samples([episode])
    algorithm.update(samples)
    algorithm.update(samples)
    restored = make_algorithm("recap", TinyPolicy(), config=RecapConfig(threshold_min_samples=2))
    restored.load_state_dict(algorithm.state_dict())
    assert restored.threshold("pick") == algorithm.threshold("pick")
    for a, b in zip(algorithm.value_net.parameters(), restored.value_net.parameters(), strict=True):
        assert torch.equal(a, b)

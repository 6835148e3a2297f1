from __future__ import annotations

from dataclasses import replace

import pytest
from learner_fakes import TinyPolicy, load_bag, make_episode, write_bag

from sop_ros.core.config import config_from_flat
from sop_ros.core.errors import ConfigError
from sop_ros.core.policy import PolicyConfig
from sop_ros.learner.algorithms import policy_config_for
from sop_ros.learner.algorithms.recap import Recap
from sop_ros.learner.builder import LearnerSettings, build_learner


def test_settings_take_the_dotted_parameter_names():
    settings = config_from_flat(
        LearnerSettings, {"algorithm": "recap", "sampler.alpha": 3, "recap.positive_fraction": 0.4}
    )
    assert (settings.algorithm, settings.sampler.alpha, settings.recap.positive_fraction) == (
        "recap",
        3.0,
        0.4,
    )
    with pytest.raises(ConfigError, match="algorithm must be one of hg_dagger, recap"):
        config_from_flat(LearnerSettings, {"algorithm": "dagger"})
    with pytest.raises(ConfigError, match=r"alpha must be >= 1\.0"):
        config_from_flat(LearnerSettings, {"sampler.alpha": 0.5})


def test_build_learner_wires_the_chosen_algorithm_offline_data_and_store(tmp_path):
    write_bag(tmp_path / "demos", make_episode("pick", seed=1, episode_id="demo"))
    write_bag(tmp_path / "store", make_episode("place", human=(1,), seed=2, episode_id="up"))
    settings = config_from_flat(
        LearnerSettings,
        {
            "algorithm": "recap",
            "store_dir": str(tmp_path / "store"),
            "offline_dir": str(tmp_path / "demos"),
            "checkpoint_dir": str(tmp_path / "ckpt"),
            "log_dir": "",
            "loop.batch_size": 4,
            "loop.progress_bar": False,
            "recap.value_image_size": 16,
        },
    )
    learner = build_learner(
        settings, TinyPolicy(), publish=lambda path, manifest: None, load_episode=load_bag
    )
    learner.start()
    learner.run(2)
    learner.close()
    assert isinstance(learner.algorithm, Recap)
    assert learner.buffers.tasks() == ["pick", "place"] and learner.step == 2


def test_build_learner_needs_a_loader_for_a_policy_without_camera_config(tmp_path):
    with pytest.raises(ConfigError, match="pass load_episode"):
        build_learner(LearnerSettings(), TinyPolicy(), publish=lambda path, manifest: None)


def test_the_algorithm_decides_the_advantage_indicator_its_policy_acts_with():
    plain = PolicyConfig(model="tiny")
    assert policy_config_for("hg_dagger", plain) == plain
    assert policy_config_for("recap", plain) == replace(plain, inference_advantage="positive")
    negative = replace(plain, inference_advantage="negative")
    assert policy_config_for("recap", negative) == negative  # asked for on purpose: kept
    with pytest.raises(ConfigError, match="'hg_dagger' trains without the advantage indicator"):
        policy_config_for("hg_dagger", negative)
    with pytest.raises(ConfigError, match="unknown algorithm 'dagger'"):
        policy_config_for("dagger", plain)


def test_build_learner_refuses_a_policy_acting_otherwise_than_the_algorithm_trains(tmp_path):
    policy = TinyPolicy()
    policy.config = PolicyConfig(model="tiny")  # left at "none", as a RECAP learner must not be
    settings = LearnerSettings(algorithm="recap", log_dir="", checkpoint_dir=str(tmp_path / "ckpt"))
    with pytest.raises(ConfigError, match="inference_advantage 'positive', but this one acts with 'none'"):
        build_learner(settings, policy, publish=lambda path, manifest: None, load_episode=load_bag)

from __future__ import annotations

import pytest
from learner_fakes import TinyPolicy, load_bag, make_episode, write_bag

from sop_ros.core.config import config_from_flat
from sop_ros.core.errors import ConfigError
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

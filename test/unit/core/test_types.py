from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from sop_ros.core.errors import ConfigError, InputError, UnsafeInputError
from sop_ros.core.types import (
    ActionChunk,
    EpisodeMeta,
    InterventionSegment,
    Observation,
    Outcome,
    format_version,
    new_episode_id,
    parse_version,
)


def test_action_chunk_checks_shape_and_is_read_only() -> None:
    chunk = ActionChunk(actions=np.zeros((4, 2)), action_names=("a", "b"), control_period_s=0.1)
    assert (chunk.horizon, chunk.action_dim, chunk.actions.dtype) == (4, 2, np.float32)
    with pytest.raises(ValueError):
        chunk.actions[0, 0] = 1.0
    with pytest.raises(InputError, match="3 dimensions but 2 names"):
        ActionChunk(actions=np.zeros((4, 3)), action_names=("a", "b"), control_period_s=0.1)
    with pytest.raises(InputError, match="control_period_s"):
        ActionChunk(actions=np.zeros((4, 2)), action_names=("a", "b"), control_period_s=0.0)


def test_observation_copies_inputs() -> None:
    image = np.zeros((8, 8, 3), np.uint8)
    obs = Observation(images={"head": image}, state=[1.0, 2.0], instruction="go")
    image[0, 0, 0] = 255
    assert obs.images["head"][0, 0, 0] == 0
    assert obs.state.dtype == np.float32
    with pytest.raises(InputError, match="RGB"):
        Observation(images={"head": np.zeros((8, 8, 1), np.uint8)}, state=[0.0], instruction="go")


def test_episode_meta_round_trips_through_custom_data() -> None:
    meta = EpisodeMeta(
        episode_id="r1-x",
        robot_id="r1",
        task="laundry_fold",
        instruction="fold the towel",
        outcome=Outcome.SUCCESS,
        policy_versions=("v0001", "v0002"),
        start_ns=10,
        end_ns=5_000_000_010,
        interventions=(InterventionSegment(start_ns=100, end_ns=1_000_000_100),),
    )
    data = meta.to_custom_data()
    assert all(isinstance(v, str) for v in data.values())
    assert data["sop.intervention_count"] == "1" and data["sop.intervention_s"] == "1.000"
    assert EpisodeMeta.from_custom_data(data) == meta


def test_episode_meta_names_the_missing_key() -> None:
    data = EpisodeMeta(episode_id="e", robot_id="r", task="t", instruction="i").to_custom_data()
    del data["sop.task"]
    with pytest.raises(InputError, match=r"sop\.task"):
        EpisodeMeta.from_custom_data(data)


def test_versions_and_episode_ids() -> None:
    assert format_version(7) == "v0007" and parse_version("v0007") == 7
    with pytest.raises(InputError):
        parse_version("7")
    now = datetime(2026, 11, 25, 3, 4, 5, tzinfo=UTC)
    first, second = new_episode_id("g1-a", now=now), new_episode_id("g1-a", now=now)
    assert first.startswith("g1-a-20261125T030405-") and first != second


def test_bad_runtime_input_is_an_input_error_not_a_config_error() -> None:
    # Callers refuse one message or bag on InputError; a ConfigError means the settings are wrong.
    assert issubclass(UnsafeInputError, InputError) and not issubclass(InputError, ConfigError)
    with pytest.raises(InputError) as caught:
        EpisodeMeta.from_custom_data({"sop.episode_id": "e"})
    assert not isinstance(caught.value, ConfigError)

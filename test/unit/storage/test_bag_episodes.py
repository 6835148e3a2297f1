from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from bag_helpers import BagWriter, jpeg, make_meta
from ruamel.yaml import YAML

from sop_ros.core.types import InterventionSegment, Outcome
from sop_ros.storage import typestore as ts
from sop_ros.storage.bagio import mcap_files, validate_bag
from sop_ros.storage.episodes import load_episode
from sop_ros.storage.errors import BagError
from sop_ros.storage.recorder import EpisodeRecorder
from sop_ros.storage.segments import intervention_segments

T0 = 1_700_000_000_000_000_000
RED, GREEN, BLUE, WHITE, BLACK = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)
SEGMENTS = (
    InterventionSegment(start_ns=T0 + 250, end_ns=T0 + 410),
    InterventionSegment(start_ns=T0 + 550, end_ns=T0 + 700),
)


def record_scene(
    recorder: EpisodeRecorder,
    *,
    interventions: tuple[InterventionSegment, ...] = SEGMENTS,
    with_intervention_topic: bool = True,
) -> Path:
    """Hand-made stamps (offsets from T0) whose alignment the tests work out by hand."""
    meta = make_meta("ep-scene", start_ns=T0)
    recorder.start(meta)
    bag = BagWriter(recorder)
    events: list[tuple[int, Callable[[], None]]] = [
        (90, lambda: bag.frame("front", T0 + 90, jpeg(RED))),
        (95, lambda: bag.joints(T0 + 95, [1.0, 1.5])),
        (100, lambda: bag.command(T0 + 100, [10.0, 0.0])),
        (150, lambda: bag.frame("wrist", T0 + 150, jpeg(WHITE))),
        (200, lambda: bag.joints(T0 + 200, [2.0, 2.5])),
        (200, lambda: bag.command(T0 + 200, [20.0, 0.0])),
        (250, lambda: bag.frame("front", T0 + 250, jpeg(GREEN))),
        (300, lambda: bag.command(T0 + 300, [30.0, 0.0])),
        (390, lambda: bag.frame("wrist", T0 + 390, jpeg(BLACK))),
        (400, lambda: bag.command(T0 + 400, [40.0, 0.0])),
        (420, lambda: bag.frame("front", T0 + 420, jpeg(BLUE))),
        (450, lambda: bag.joints(T0 + 450, [3.0, 3.5])),
        (500, lambda: bag.command(T0 + 500, [50.0, 0.0])),
        (600, lambda: bag.command(T0 + 600, [60.0, 0.0])),
    ]
    if with_intervention_topic:
        events += [
            (250, lambda: bag.intervention(T0 + 250, True)),
            (280, lambda: bag.intervention(T0 + 280, True)),
            (410, lambda: bag.intervention(T0 + 410, False)),
            (550, lambda: bag.intervention(T0 + 550, True)),
        ]
    for _offset, write in sorted(events, key=lambda e: e[0]):
        write()
    final = make_meta(
        "ep-scene", start_ns=T0, end_ns=T0 + 700, outcome=Outcome.FAILURE, interventions=interventions
    )
    return recorder.finish(final)


def test_steps_align_inputs_at_or_before_each_command(recorder: EpisodeRecorder) -> None:
    episode = load_episode(record_scene(recorder), cameras=["front", "wrist"], horizon=3)

    # The command at 100 comes before any wrist frame: dropped. Five steps remain.
    assert len(episode) == 5
    assert list(episode.stamps_ns - T0) == [200, 300, 400, 500, 600]
    assert episode.actions[:, 0].tolist() == [20, 30, 40, 50, 60]
    # joint_states at 200 counts for the command at 200 ("at or before").
    assert episode.states[:, 0].tolist() == [2, 2, 2, 3, 3]
    assert episode.action_names == ("j0", "j1") and episode.state_names == ("j0", "j1")
    colours = {RED: "red", GREEN: "green", BLUE: "blue", WHITE: "white", BLACK: "black"}

    def seen(camera: str) -> list[str]:
        out = []
        for step in range(len(episode)):
            pixel = tuple(int(v) for v in episode.image(camera, step)[8, 8])
            out.append(next(name for c, name in colours.items() if np.abs(np.subtract(c, pixel)).max() < 8))
        return out

    assert seen("front") == ["red", "green", "green", "blue", "blue"]
    assert seen("wrist") == ["white", "white", "black", "black", "black"]
    assert isinstance(episode.frames["front"][0], bytes)  # kept compressed

    assert episode.is_human.tolist() == [False, True, True, False, True]
    assert episode.instruction == make_meta().instruction
    assert episode.outcome is Outcome.FAILURE


def test_action_chunks_pad_by_repeating_the_last_command(recorder: EpisodeRecorder) -> None:
    episode = load_episode(record_scene(recorder), cameras=["front"], horizon=3)
    # Only the front camera: the command at 100 already has a frame and a joint state.
    assert len(episode) == 6
    assert episode.action_chunk(0)[:, 0].tolist() == [10, 20, 30]
    assert episode.chunk_valid(0).tolist() == [True, True, True]
    assert episode.action_chunk(4)[:, 0].tolist() == [50, 60, 60]
    assert episode.chunk_valid(4).tolist() == [True, True, False]
    assert episode.action_chunk(5)[:, 0].tolist() == [60, 60, 60]
    assert episode.chunk_valid(5).tolist() == [True, False, False]
    with pytest.raises(IndexError):
        episode.action_chunk(6)

    step = episode.step(4)
    assert (step.index, step.length, step.stamp_ns - T0, step.is_human) == (4, 6, 500, False)
    assert step.action_chunk[:, 0].tolist() == [50, 60, 60] and step.chunk_valid.tolist() == [1, 1, 0]
    assert step.state.tolist() == [3.0, 3.5] and step.instruction == episode.instruction
    assert step.jpegs["front"] == jpeg(BLUE) and step.outcome is Outcome.FAILURE


def test_segments_come_from_metadata_when_the_topic_was_not_recorded(recorder: EpisodeRecorder) -> None:
    bag = record_scene(recorder, with_intervention_topic=False)
    episode = load_episode(bag, cameras=["front", "wrist"], horizon=2)
    assert episode.is_human.tolist() == [False, True, True, False, True]


def test_segments_disagreeing_with_metadata_are_a_bad_bag(recorder: EpisodeRecorder) -> None:
    bag = record_scene(recorder, interventions=SEGMENTS[:1])
    with pytest.raises(BagError, match="1 intervention segment"):
        load_episode(bag, cameras=["front"], horizon=2)


def test_intervention_segments_from_events() -> None:
    events = [(5, True), (1, True), (3, False), (4, False), (7, True)]
    assert intervention_segments(events, end_ns=10) == (
        InterventionSegment(start_ns=1, end_ns=3),
        InterventionSegment(start_ns=5, end_ns=10),
    )


def test_missing_topic_names_the_bag_and_the_topic(simple_bag: Callable[..., Path]) -> None:
    bag = simple_bag()
    with pytest.raises(BagError) as err:
        load_episode(bag, cameras=["front", "side"], horizon=2)
    assert str(bag) in str(err.value) and "camera/side/image_raw/compressed" in str(err.value)


def test_bad_metadata_is_a_bag_error(simple_bag: Callable[..., Path], tmp_path: Path) -> None:
    with pytest.raises(BagError, match=r"no metadata\.yaml"):
        validate_bag(tmp_path)
    bag = simple_bag()
    yaml = YAML(typ="safe")
    path = bag / "metadata.yaml"
    data = yaml.load(path.read_text())
    del data["rosbag2_bagfile_information"]["custom_data"]["sop.task"]
    with path.open("w") as file:
        yaml.dump(data, file)
    with pytest.raises(BagError, match=r"sop\.task"):
        validate_bag(bag)
    with pytest.raises(BagError, match=r"sop\.task"):
        load_episode(bag, cameras=["front"], horizon=2)


def test_validate_returns_metadata_and_catches_truncated_files(simple_bag: Callable[..., Path]) -> None:
    bag = simple_bag(steps=50)
    meta = validate_bag(bag)
    assert meta.episode_id == "robot_1-ep" and meta.policy_versions == ("v0001", "v0002")
    (mcap,) = mcap_files(bag)
    data = mcap.read_bytes()
    mcap.write_bytes(data[: len(data) // 2])
    with pytest.raises(BagError, match=re.escape(str(bag))):
        validate_bag(bag)
    with pytest.raises(BagError, match=re.escape(str(bag))):
        load_episode(bag, cameras=["front"], horizon=2)


def test_undecodable_frame_is_a_bag_error(recorder: EpisodeRecorder) -> None:
    recorder.start(make_meta())
    bag = BagWriter(recorder)
    bag.frame("front", 1, b"not a jpeg")
    bag.joints(1, [0.0])
    bag.command(2, [0.0])
    episode = load_episode(recorder.finish(make_meta()), cameras=["front"], horizon=1)
    with pytest.raises(BagError, match="do not decode"):
        episode.image("front", 0)


def test_ambiguous_topics_are_a_bag_error(recorder: EpisodeRecorder) -> None:
    recorder.start(make_meta())
    BagWriter(recorder).command(1, [0.0])
    recorder.write_message("/robot_2/command", ts.make(ts.JOINT_STATE, name=["j0"]), 2)
    with pytest.raises(BagError, match="ambiguous"):
        load_episode(recorder.finish(make_meta()), cameras=[], horizon=1)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "mono8"])
def test_raw_image_cameras_load_like_compressed_ones(recorder: EpisodeRecorder, encoding: str) -> None:
    recorder.start(make_meta())
    rgb = np.zeros((6, 10, 3), np.uint8)
    rgb[:, :, 0] = 200  # red
    pixels = {"rgb8": rgb, "bgr8": rgb[:, :, ::-1], "mono8": rgb[:, :, :1]}[encoding]
    step = pixels.shape[1] * pixels.shape[2] + 2  # rows padded, as drivers may do
    data = np.zeros((6, step), np.uint8)
    data[:, : step - 2] = pixels.reshape(6, -1)
    image = ts.make(ts.IMAGE, height=6, width=10, encoding=encoding, step=step, data=data.reshape(-1))
    recorder.write_message("/robot_1/camera/front/image_raw", image, 1)
    bag = BagWriter(recorder)
    bag.joints(1, [0.0])
    bag.command(2, [0.0])
    episode = load_episode(recorder.finish(make_meta()), cameras=["front"], horizon=1)
    decoded = episode.image("front", 0)
    assert decoded.shape == (6, 10, 3)
    expected = (200, 200, 200) if encoding == "mono8" else (200, 0, 0)
    assert np.abs(decoded[3, 5].astype(int) - expected).max() < 10

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from bag_helpers import NS, BagWriter, jpeg, make_meta
from mcap.reader import make_reader
from mcap.stream_reader import StreamReader
from mcap_ros2.decoder import DecoderFactory
from rosbags.highlevel import AnyReader
from ruamel.yaml import YAML

from sop_ros.core import topics
from sop_ros.core.types import EpisodeMeta, InterventionSegment, Outcome
from sop_ros.storage import typestore as ts
from sop_ros.storage.bagio import mcap_files, validate_bag
from sop_ros.storage.errors import BagError, SpoolFullError
from sop_ros.storage.recorder import ABORT_REASON_KEY, EpisodeRecorder


def info(bag: Path) -> dict:
    return YAML(typ="safe").load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]


def test_finished_bag_lands_in_ready_with_final_metadata(recorder: EpisodeRecorder) -> None:
    meta = make_meta("robot_1-a")
    partial = recorder.start(meta)
    assert partial == recorder.spool.recording / "robot_1-a.partial"
    BagWriter(recorder).command(5_000, [1.0, 2.0])
    final = make_meta(
        "robot_1-a",
        outcome=Outcome.SUCCESS,
        policy_versions=("v0003", "v0004"),
        end_ns=9_000,
        interventions=(InterventionSegment(start_ns=2_000, end_ns=3_000),),
    )
    bag = recorder.finish(final)

    assert bag == recorder.spool.ready / "robot_1-a"
    assert not partial.exists()
    assert sorted(p.name for p in bag.iterdir()) == ["metadata.yaml", "robot_1-a_0.mcap"]
    meta_yaml = info(bag)
    assert meta_yaml["version"] == 9
    assert meta_yaml["storage_identifier"] == "mcap"
    assert meta_yaml["compression_mode"] == ""  # compression is inside the MCAP chunks
    assert EpisodeMeta.from_custom_data(meta_yaml["custom_data"]) == final
    assert not recorder.recording


def test_bag_reads_back_with_rosbags_and_with_the_mcap_ros2_decoder(recorder: EpisodeRecorder) -> None:
    recorder.start(make_meta())
    bag = BagWriter(recorder)
    for i in range(20):
        bag.frame("front", 1_000 + i, jpeg((0, 255, 0)))
        bag.joints(1_000 + i, [i, -i])
        bag.command(1_000 + i, [2 * i, 0])
    bag.intervention(1_005, True)
    chunk = ts.make(
        ts.ACTION_CHUNK,
        header=ts.header(1_010),
        policy_version="v0007",
        action_names=["j0", "j1"],
        horizon=2,
        action_dim=2,
        actions=np.arange(4, dtype=np.float32),
        control_period=0.1,
    )
    recorder.write_message(NS + topics.ACTION_CHUNK, chunk, 1_010)
    recorder.write_message(NS + topics.INSTRUCTION, ts.make(ts.STRING, data="stack"), 1_000)
    path = recorder.finish(make_meta())

    expected = Counter(
        {
            NS + topics.camera_topic("front"): 20,
            NS + topics.JOINT_STATES: 20,
            NS + topics.COMMAND: 20,
            NS + topics.INTERVENTION: 1,
            NS + topics.ACTION_CHUNK: 1,
            NS + topics.INSTRUCTION: 1,
        }
    )
    with AnyReader([path]) as reader:
        got = Counter()
        for connection, _stamp, raw in reader.messages():
            msg = reader.deserialize(raw, connection.msgtype)
            got[connection.topic] += 1
            if connection.msgtype == ts.ACTION_CHUNK:
                assert msg.policy_version == "v0007"
                assert list(msg.actions) == [0, 1, 2, 3]
    assert got == expected

    (mcap_file,) = mcap_files(path)
    with mcap_file.open("rb") as file:
        reader = make_reader(file, decoder_factories=[DecoderFactory()])
        summary = reader.get_summary()
        assert {c.compression for c in summary.chunk_indexes} == {"zstd"}
        got = Counter()
        for _schema, channel, _message, decoded in reader.iter_decoded_messages():
            got[channel.topic] += 1
            if channel.topic == NS + topics.INTERVENTION:
                assert decoded.active is True and decoded.source == "joystick"
            if channel.topic == NS + topics.camera_topic("front"):
                assert bytes(decoded.data) == jpeg((0, 255, 0))
        # rosbag2 keeps its metadata (custom_data included) inside the MCAP too.
        (record,) = list(reader.iter_metadata())
        assert "sop.episode_id" in record.metadata["serialized_metadata"]
    assert got == expected
    assert info(path)["message_count"] == sum(expected.values())


def test_raw_bytes_are_written_untouched(recorder: EpisodeRecorder) -> None:
    recorder.start(make_meta())
    msg = ts.make(ts.JOINT_STATE, header=ts.header(7), name=["a"], position=np.array([0.5]))
    raw = ts.serialize(msg)
    recorder.write("/x/command", ts.JOINT_STATE, memoryview(raw), 7)
    path = recorder.finish(make_meta())
    with AnyReader([path]) as reader:
        ((_conn, stamp, data),) = list(reader.messages())
    assert (stamp, data) == (7, raw)


def test_topics_appear_only_once_written(recorder: EpisodeRecorder) -> None:
    recorder.start(make_meta())
    BagWriter(recorder).command(1, [0.0])
    path = recorder.finish(make_meta())
    names = [t["topic_metadata"]["name"] for t in info(path)["topics_with_message_count"]]
    assert names == [NS + topics.COMMAND]


def test_start_refused_over_quota_and_nothing_deleted(tmp_path: Path) -> None:
    recorder = EpisodeRecorder(tmp_path / "spool", quota_bytes=10_000)
    waiting = recorder.spool.ready / "old-episode"
    waiting.mkdir()
    (waiting / "old_0.mcap").write_bytes(b"x" * 20_000)
    with pytest.raises(SpoolFullError) as err:
        recorder.start(make_meta())
    text = str(err.value)
    assert "20000" in text and "10000" in text and "nothing was deleted" in text
    assert isinstance(err.value, BagError)
    assert (waiting / "old_0.mcap").stat().st_size == 20_000
    assert not recorder.recording
    assert list(recorder.spool.recording.iterdir()) == []

    # Once the uploader has moved the bag away, recording resumes.
    waiting.rename(recorder.spool.uploaded / "old-episode")
    recorder.start(make_meta())
    assert recorder.recording


def test_misuse_is_refused_without_losing_the_running_bag(recorder: EpisodeRecorder) -> None:
    with pytest.raises(BagError, match="no episode"):
        recorder.finish(make_meta())
    recorder.write("/x/command", ts.JOINT_STATE, b"ignored", 1)
    assert recorder.ignored_count == 1

    recorder.start(make_meta("ep-1"))
    with pytest.raises(BagError, match="still recording"):
        recorder.start(make_meta("ep-2"))
    with pytest.raises(BagError, match="keeps recording"):
        recorder.finish(make_meta("ep-2"))
    BagWriter(recorder).command(1, [0.0])
    with pytest.raises(BagError, match="carries sensor_msgs/msg/JointState"):
        recorder.write(NS + topics.COMMAND, ts.STRING, ts.serialize(ts.make(ts.STRING, data="x")), 2)
    with pytest.raises(BagError, match="unknown message type"):
        recorder.write("/other", "nope_msgs/msg/Nope", b"", 3)
    path = recorder.finish(make_meta("ep-1"))
    assert info(path)["message_count"] == 1


def test_abort_keeps_the_bag_marked_aborted(recorder: EpisodeRecorder) -> None:
    recorder.start(make_meta())
    BagWriter(recorder).command(1_234, [0.0])
    path = recorder.abort("operator pressed stop")
    custom = info(path)["custom_data"]
    assert path.parent == recorder.spool.ready
    assert custom[ABORT_REASON_KEY] == "operator pressed stop"
    meta = EpisodeMeta.from_custom_data(custom)
    assert meta.outcome is Outcome.ABORTED and meta.end_ns == 1_234


def test_flush_bounds_what_a_crash_can_lose(tmp_path: Path) -> None:
    now = [0]
    recorder = EpisodeRecorder(tmp_path, quota_bytes=1 << 30, clock=lambda: now[0], flush_period_s=0.5)
    partial = recorder.start(make_meta())
    sidecar = json.loads((partial / "sop_episode_start.json").read_text())
    assert sidecar["sop.episode_id"] == make_meta().episode_id
    bag = BagWriter(recorder)

    def messages_on_disk() -> int:
        (path,) = mcap_files(partial)
        count = 0
        with path.open("rb") as file:
            try:
                for record in StreamReader(file).records:
                    count += type(record).__name__ == "Message"
            except Exception:
                pass  # no footer yet: the stream ends mid-file
        return count

    bag.command(1, [0.0])
    assert messages_on_disk() == 0  # still in the open chunk
    now[0] = 600_000_000
    bag.command(2, [0.0])
    assert messages_on_disk() == 2
    bag.command(3, [0.0])
    recorder.flush()
    assert messages_on_disk() == 3
    recorder.finish(make_meta())


def test_finish_fills_end_and_segments_from_what_was_recorded(recorder: EpisodeRecorder) -> None:
    recorder.start(make_meta())
    bag = BagWriter(recorder)
    bag.command(100, [0.0])
    bag.intervention(150, True)
    bag.intervention(180, False)
    bag.intervention(200, True)
    bag.command(250, [0.0])
    meta = EpisodeMeta.from_custom_data(info(recorder.finish(make_meta()))["custom_data"])
    assert meta.end_ns == 250
    # The second segment is still open at the end: it covers the last command.
    assert meta.interventions == (
        InterventionSegment(start_ns=150, end_ns=180),
        InterventionSegment(start_ns=200, end_ns=251),
    )


def test_messages_that_arrived_before_the_episode_began_stay_out_of_its_bag(
    recorder: EpisodeRecorder,
) -> None:
    # A busy executor hands over the previous episode's last teleop command and hand-back
    # (arrived at 150 and 160) only after the START that arrived at 200.
    recorder.start(make_meta(start_ns=200), since_ns=200)
    bag = BagWriter(recorder)
    bag.command(210, [0.0])
    bag.intervention(150, True)
    bag.intervention(160, False)
    bag.intervention(300, True)
    bag.command(350, [0.0])
    path = recorder.finish(make_meta(start_ns=200, end_ns=400))
    assert recorder.ignored_count == 2
    assert info(path)["message_count"] == 3
    # One segment, the one that happened in this episode; the open one lasts to the end.
    meta = EpisodeMeta.from_custom_data(info(path)["custom_data"])
    assert meta.interventions == (InterventionSegment(start_ns=300, end_ns=400),)


def test_messages_that_arrived_before_the_end_but_came_late_still_go_into_the_bag(
    recorder: EpisodeRecorder,
) -> None:
    recorder.start(make_meta())
    bag = BagWriter(recorder)
    bag.command(100, [0.0])
    recorder.close_after(200)  # the END arrived at 200
    bag.command(190, [0.0])  # arrived before the END, handed over after it: kept
    bag.command(210, [0.0])  # arrived after the END: not this episode's
    path = recorder.finish(make_meta(end_ns=200))
    assert info(path)["message_count"] == 2
    assert recorder.ignored_count == 1


def test_finish_from_another_thread_while_writes_continue(recorder: EpisodeRecorder) -> None:
    recorder.start(make_meta())
    bag = BagWriter(recorder)
    stop = threading.Event()
    errors: list[BaseException] = []

    def keep_writing() -> None:
        stamp = 0
        try:
            while not stop.is_set():
                stamp += 1
                bag.command(stamp, [float(stamp)])
        except BaseException as err:
            errors.append(err)

    def wait_for(condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 10
        while not condition() and time.monotonic() < deadline and writer.is_alive():
            time.sleep(0.001)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    wait_for(lambda: recorder.message_count >= 200)
    path = recorder.finish(make_meta())
    wait_for(lambda: recorder.ignored_count >= 10)
    stop.set()
    writer.join(timeout=10)
    assert errors == []
    assert validate_bag(path).episode_id == make_meta().episode_id
    assert info(path)["message_count"] >= 200

"""Messages handed over before their episode's START (no bag open yet) still go into its bag."""

from __future__ import annotations

from pathlib import Path

import pytest
from bag_helpers import NS, BagWriter, make_meta
from rosbags.highlevel import AnyReader

from sop_ros.core import topics
from sop_ros.storage import typestore as ts
from sop_ros.storage.backlog import ArrivalBacklog, BackloggedRecorder, Pending
from sop_ros.storage.errors import BagError


@pytest.fixture
def recorder(tmp_path: Path) -> BackloggedRecorder:
    return BackloggedRecorder(tmp_path / "spool", quota_bytes=1 << 30)


def command_stamps(bag: Path) -> list[int]:
    with AnyReader([bag], default_typestore=ts.typestore()) as reader:
        connections = [c for c in reader.connections if c.topic == NS + topics.COMMAND]
        return sorted(log_ns for _, log_ns, _ in reader.messages(connections=connections))


def test_a_command_handed_over_before_the_start_goes_into_the_new_bag(recorder: BackloggedRecorder) -> None:
    bag = BagWriter(recorder)
    # Callback order on a busy robot: the previous episode's last command (arrived at 150),
    # then a command that arrived at 210, *after* the START (arrived at 200), whose own
    # callback only runs now.
    bag.command(150, [0.0])
    bag.command(210, [1.0])
    assert not recorder.recording and len(recorder.backlog) == 2
    recorder.start(make_meta(start_ns=200), since_ns=200)
    assert recorder.caught_up_count == 1
    bag.command(220, [2.0])
    path = recorder.finish(make_meta(start_ns=200, end_ns=300))
    assert command_stamps(path) == [210, 220]
    assert len(recorder.backlog) == 0
    assert recorder.backlog.dropped_count == 1  # the one from before the START, as if in order


def test_messages_after_an_end_wait_for_the_next_start_even_while_the_bag_closes(
    recorder: BackloggedRecorder,
) -> None:
    bag = BagWriter(recorder)
    recorder.start(make_meta("robot_1-a"), since_ns=100)
    bag.command(110, [0.0])
    recorder.close_after(200)  # END arrived at 200; the bag stays open for its grace time
    bag.command(190, [0.0])  # arrived before the END, handed over after it: this bag
    bag.command(260, [0.0])  # arrived after the next START (250), handed over before it
    first = recorder.finish(make_meta("robot_1-a", end_ns=200))
    recorder.start(make_meta("robot_1-b", start_ns=250), since_ns=250)
    bag.command(270, [0.0])
    second = recorder.finish(make_meta("robot_1-b", start_ns=250, end_ns=300))
    assert command_stamps(first) == [110, 190]
    assert command_stamps(second) == [260, 270]


def test_the_backlog_is_bounded_in_arrival_time_count_and_bytes() -> None:
    def item(log_ns: int, size: int = 10) -> Pending:
        return Pending("/t", ts.JOINT_STATE, b"x" * size, log_ns)

    by_time = ArrivalBacklog(span_s=1.0)
    for log_ns in (0, 500_000_000, 1_000_000_000, 1_600_000_000):
        by_time.add(item(log_ns))
    # The newest arrived at 1.6 s: what arrived before 0.6 s is dropped, oldest first.
    assert [p.log_ns for p in by_time.take_since(0)] == [1_000_000_000, 1_600_000_000]
    assert by_time.dropped_count == 2

    by_count = ArrivalBacklog(max_messages=3)
    for log_ns in range(5):
        by_count.add(item(log_ns))
    assert [p.log_ns for p in by_count.take_since(0)] == [2, 3, 4]

    by_bytes = ArrivalBacklog(max_bytes=25)
    for log_ns in range(4):
        by_bytes.add(item(log_ns))
    assert len(by_bytes) == 2 and by_bytes.bytes == 20
    assert by_bytes.dropped_count == 2

    with pytest.raises(BagError, match="max_messages=-1"):
        ArrivalBacklog(max_messages=-1)


def test_a_backlogged_message_the_bag_refuses_is_reported_and_the_bag_goes_on(
    recorder: BackloggedRecorder,
) -> None:
    recorder.write(NS + "odd", "no_pkg/msg/Nothing", b"\x00\x01\x00\x00", 210)
    BagWriter(recorder).command(215, [0.0])
    recorder.start(make_meta(start_ns=200), since_ns=200)
    assert "no_pkg/msg/Nothing" in recorder.backlog_error
    assert recorder.caught_up_count == 1
    path = recorder.finish(make_meta(start_ns=200, end_ns=300))
    assert command_stamps(path) == [215]

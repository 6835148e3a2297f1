"""Message conversions on hand-built messages; nothing spins."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image, JointState
from sop_msgs.msg import EpisodeEvent

from sop_ros.core.errors import InputError, UnsafeInputError
from sop_ros.core.types import ActionChunk, EpisodeEventKind, Outcome
from sop_ros.nodes import convert


def test_chunk_round_trip_and_trajectory() -> None:
    chunk = ActionChunk(
        actions=np.arange(6, dtype=np.float32).reshape(3, 2),
        action_names=("j1", "j2"),
        control_period_s=0.05,
        policy_version="v0002",
        stamp_ns=1_500_000_000,
        infer_ms=3.5,
    )
    msg = convert.chunk_to_msg(chunk)
    assert (msg.horizon, msg.action_dim, msg.header.stamp.sec, msg.header.stamp.nanosec) == (
        3,
        2,
        1,
        500_000_000,
    )
    back = convert.chunk_from_msg(msg)
    assert np.array_equal(back.actions, chunk.actions) and back.stamp_ns == chunk.stamp_ns
    traj = convert.chunk_to_trajectory(chunk)
    assert traj.joint_names == ["j1", "j2"] and len(traj.points) == 3
    assert traj.points[2].positions.tolist() == [4.0, 5.0]
    assert traj.points[2].time_from_start.nanosec == 150_000_000
    msg.actions = msg.actions[:-1]
    with pytest.raises(InputError, match="5 values, not horizon 3"):
        convert.chunk_from_msg(msg)


def test_joint_positions_pick_names_in_order() -> None:
    msg = JointState(name=["b", "a", "c"], position=[2.0, 1.0, 3.0])
    assert convert.joint_positions(msg, ("a", "c")).tolist() == [1.0, 3.0]
    with pytest.raises(UnsafeInputError, match="lacks d"):
        convert.joint_positions(msg, ("a", "d"))
    msg.position = [2.0, float("nan"), float("inf")]
    with pytest.raises(UnsafeInputError, match="not finite: a=nan, c=inf"):
        convert.joint_positions(msg, ("a", "c"))


def test_images_decode_to_rgb() -> None:
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[..., 0] = 200  # red
    raw = Image(height=4, width=6, encoding="bgr8", step=18, data=rgb[..., ::-1].tobytes())
    assert np.array_equal(convert.image_from_msg(raw), rgb)
    _, jpeg = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]))
    decoded = convert.image_from_msg(CompressedImage(format="jpeg", data=jpeg.tobytes()))
    assert decoded.shape == (4, 6, 3) and abs(int(decoded[0, 0, 0]) - 200) < 10
    with pytest.raises(UnsafeInputError, match="cannot be decoded"):
        convert.image_from_msg(CompressedImage(format="jpeg", data=b"not a jpeg"))
    with pytest.raises(UnsafeInputError, match="encoding '16UC1'"):
        convert.image_from_msg(Image(height=1, width=1, encoding="16UC1", step=2, data=b"\0\0"))


def test_images_that_are_not_colour_or_not_whole_are_refused() -> None:
    # A 16-bit depth PNG, labelled as image_transport labels it, and unlabelled.
    _, depth = cv2.imencode(".png", np.full((4, 6), 1000, np.uint16))
    with pytest.raises(UnsafeInputError, match="16uc1 image is not a colour"):
        convert.image_from_msg(CompressedImage(format="16UC1; png compressed", data=depth.tobytes()))
    with pytest.raises(UnsafeInputError, match="uint16 pixels"):
        convert.image_from_msg(CompressedImage(format="png", data=depth.tobytes()))
    with pytest.raises(UnsafeInputError, match="empty format"):
        convert.image_from_msg(CompressedImage(format="", data=depth.tobytes()))
    _, png = cv2.imencode(".png", np.full((4, 6, 3), 7, np.uint8))
    labelled = CompressedImage(format="bgr8; png compressed bgr8", data=png.tobytes())
    assert convert.image_from_msg(labelled).shape == (4, 6, 3)
    short = Image(height=4, width=6, encoding="rgb8", step=18, data=bytes(18 * 3))
    with pytest.raises(UnsafeInputError, match="54 bytes, not step 18 × height 4"):
        convert.image_from_msg(short)


def test_event_enums_map_both_ways() -> None:
    for kind in EpisodeEventKind:
        assert convert.event_kind_from_msg(convert.event_kind_to_msg(kind)) is kind
    assert convert.outcome_to_msg(Outcome.SUCCESS) == EpisodeEvent.OUTCOME_SUCCESS
    assert convert.outcome_to_msg(Outcome.ABORTED) == EpisodeEvent.OUTCOME_UNKNOWN
    assert convert.outcome_from_msg(EpisodeEvent.OUTCOME_FAILURE) is Outcome.FAILURE


def test_received_ns_is_the_arrival_not_the_late_callback() -> None:
    # Arrived 0.5 s before the callback ran: the log time is the arrival, on the node's clock.
    assert convert.received_ns(9_500, now_ns=10_000, wall_now_ns=10_000) == 9_500
    # Simulated node clock: the wait measured on system time comes off the node's time.
    assert convert.received_ns(1_700_000_000_000, now_ns=42_000, wall_now_ns=1_700_000_000_300) == 41_700
    # No arrival stamp from the middleware, or one from the future: the callback's time.
    assert convert.received_ns(0, now_ns=10_000, wall_now_ns=10_000) == 10_000
    assert convert.received_ns(10_200, now_ns=10_000, wall_now_ns=10_000) == 10_000

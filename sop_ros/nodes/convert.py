"""Pure conversions between ROS messages and sop_ros core types.

No node state, no side effects: every function here is tested on hand-built
messages without spinning anything.
"""

from __future__ import annotations

import cv2
import numpy as np
from builtin_interfaces.msg import Duration, Time
from sensor_msgs.msg import CompressedImage, Image, JointState
from sop_msgs.msg import ActionChunk as ActionChunkMsg
from sop_msgs.msg import EpisodeEvent as EpisodeEventMsg
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from sop_ros.core.errors import InputError
from sop_ros.core.guards import check_compressed_format, check_decoded_image, rgb_from_raw, select_joints
from sop_ros.core.types import ActionChunk, EpisodeEventKind, Outcome

__all__ = [
    "chunk_from_msg",
    "chunk_to_msg",
    "chunk_to_trajectory",
    "event_kind_from_msg",
    "event_kind_to_msg",
    "image_from_msg",
    "joint_positions",
    "ns_to_stamp",
    "outcome_from_msg",
    "outcome_to_msg",
    "received_ns",
    "stamp_to_ns",
]

_KINDS = {
    EpisodeEventKind.START: EpisodeEventMsg.START,
    EpisodeEventKind.END: EpisodeEventMsg.END,
    EpisodeEventKind.ABORT: EpisodeEventMsg.ABORT,
}
_OUTCOMES = {
    Outcome.UNKNOWN: EpisodeEventMsg.OUTCOME_UNKNOWN,
    Outcome.SUCCESS: EpisodeEventMsg.OUTCOME_SUCCESS,
    Outcome.FAILURE: EpisodeEventMsg.OUTCOME_FAILURE,
}


def stamp_to_ns(stamp: Time) -> int:
    """Convert ROS time to ns since the epoch."""
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def ns_to_stamp(stamp_ns: int) -> Time:
    """Convert ns since the epoch to ROS time."""
    return Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)


def received_ns(received_timestamp_ns: int, *, now_ns: int, wall_now_ns: int) -> int:
    """When a message reached this process, on the node's clock.

    A callback on a busy executor runs long after its message arrived (half a
    second on a loaded two-core robot), so ``now`` in the callback is late.
    The middleware stamps each message on arrival (``MessageInfo``'s
    ``received_timestamp``, system time; the stamp ``ros2 bag record`` logs
    since Jazzy). The wait it measured is taken off the node's clock, which
    may run simulated time.

    Args:
        received_timestamp_ns: The middleware's arrival stamp, ns since the epoch
            (0 from a middleware that does not stamp arrivals).
        now_ns: The node clock's time now.
        wall_now_ns: System time now (the clock of ``received_timestamp_ns``).
    """
    if received_timestamp_ns <= 0:
        return now_ns
    return now_ns - max(0, wall_now_ns - received_timestamp_ns)


def chunk_to_msg(chunk: ActionChunk) -> ActionChunkMsg:
    """Core chunk -> ``sop_msgs/ActionChunk``."""
    msg = ActionChunkMsg(
        policy_version=chunk.policy_version,
        action_names=list(chunk.action_names),
        horizon=chunk.horizon,
        action_dim=chunk.action_dim,
        actions=chunk.actions.ravel().tolist(),
        control_period=chunk.control_period_s,
        infer_ms=float(chunk.infer_ms),
    )
    msg.header.stamp = ns_to_stamp(chunk.stamp_ns)
    return msg


def chunk_from_msg(msg: ActionChunkMsg) -> ActionChunk:
    """``sop_msgs/ActionChunk`` -> core chunk; raises InputError if the sizes disagree."""
    actions = np.asarray(msg.actions, dtype=np.float32)
    if actions.size != msg.horizon * msg.action_dim:
        raise InputError(
            f"ActionChunk carries {actions.size} values, not horizon {msg.horizon} × dim {msg.action_dim}"
        )
    return ActionChunk(
        actions=actions.reshape(msg.horizon, msg.action_dim),
        action_names=tuple(msg.action_names),
        control_period_s=msg.control_period,
        policy_version=msg.policy_version,
        stamp_ns=stamp_to_ns(msg.header.stamp),
        infer_ms=msg.infer_ms,
    )


def chunk_to_trajectory(chunk: ActionChunk) -> JointTrajectory:
    """A joint-space chunk as a ``JointTrajectory`` for a stock joint_trajectory_controller."""
    traj = JointTrajectory(joint_names=list(chunk.action_names))
    traj.header.stamp = ns_to_stamp(chunk.stamp_ns)
    period_ns = round(chunk.control_period_s * 1e9)
    for step, row in enumerate(chunk.actions):
        offset_ns = (step + 1) * period_ns
        traj.points.append(
            JointTrajectoryPoint(
                positions=row.astype(float).tolist(),
                time_from_start=Duration(sec=offset_ns // 1_000_000_000, nanosec=offset_ns % 1_000_000_000),
            )
        )
    return traj


def joint_positions(msg: JointState, names: tuple[str, ...]) -> np.ndarray:
    """Positions of ``names`` in that order (float32).

    Raises:
        UnsafeInputError: names and positions differ in count, a joint is missing or
            named twice, or a position is NaN or infinite (a driver glitch).
    """
    return select_joints(list(msg.name), list(msg.position), names).astype(np.float32)


def image_from_msg(msg: Image | CompressedImage, what: str = "image") -> np.ndarray:
    """``Image`` (rgb8/bgr8/rgba8/bgra8/mono8) or colour JPEG/PNG ``CompressedImage`` -> uint8 RGB (H, W, 3).

    Raises:
        UnsafeInputError: a non-colour encoding or format (a depth image), sizes that
            disagree with the data, or data that does not decode to an 8-bit image.
    """
    if isinstance(msg, CompressedImage):
        check_compressed_format(what, msg.format)
        decoded = check_decoded_image(
            f"{what} ({msg.format!r}, {len(msg.data)} bytes)",
            cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_UNCHANGED),
        )
        if decoded.ndim == 2:
            return cv2.cvtColor(decoded, cv2.COLOR_GRAY2RGB)
        code = cv2.COLOR_BGRA2RGB if decoded.shape[2] == 4 else cv2.COLOR_BGR2RGB
        return cv2.cvtColor(decoded, code)
    return rgb_from_raw(what, msg.encoding, msg.height, msg.width, msg.step, bytes(msg.data))


def event_kind_to_msg(kind: EpisodeEventKind) -> int:
    """Core event kind -> ``EpisodeEvent.kind``."""
    return _KINDS[kind]


def event_kind_from_msg(kind: int) -> EpisodeEventKind:
    """``EpisodeEvent.kind`` -> core event kind."""
    for core, value in _KINDS.items():
        if value == kind:
            return core
    raise InputError(f"unknown EpisodeEvent kind {kind}")


def outcome_to_msg(outcome: Outcome) -> int:
    """Core outcome -> ``EpisodeEvent.outcome`` (aborted and incomplete map to UNKNOWN)."""
    return _OUTCOMES.get(outcome, EpisodeEventMsg.OUTCOME_UNKNOWN)


def outcome_from_msg(outcome: int) -> Outcome:
    """``EpisodeEvent.outcome`` -> core outcome."""
    for core, value in _OUTCOMES.items():
        if value == outcome:
            return core
    raise InputError(f"unknown EpisodeEvent outcome {outcome}")

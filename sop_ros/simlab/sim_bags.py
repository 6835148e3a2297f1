"""Simulated episodes written as the recorder node writes robot episodes.

One bag per episode through :class:`~sop_ros.storage.EpisodeRecorder`, with
the robot's topics, types and metadata: camera JPEGs, joint states, executed
commands (``frame_id`` says who produced each: ``human`` or ``policy``),
``Intervention`` messages where the operator takes over and hands back,
episode events, and the intervention segments in the bag's metadata. The
learner loads these bags with the same code as fleet bags.

Runs on the calling thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from sop_ros.core import topics
from sop_ros.core.types import EpisodeMeta, InterventionSegment, Outcome
from sop_ros.sim import ACTION_NAMES, SimObservation
from sop_ros.storage import EpisodeRecorder, intervention_segments
from sop_ros.storage.typestore import (
    COMPRESSED_IMAGE,
    EPISODE_EVENT,
    INTERVENTION,
    JOINT_STATE,
    header,
    make,
    serialize,
)

__all__ = ["SimStep", "intervention_segments_of", "record_sim_episode"]

JPEG_QUALITY = 90


@dataclass(frozen=True, kw_only=True)
class SimStep:
    """One control step: what the robot saw, what it executed and who decided it."""

    obs: SimObservation
    # Executed target (ACTION_NAMES order), float32.
    action: np.ndarray
    # True when the human operator produced the action.
    human: bool
    # True once the task is done (after this step).
    success: bool


def intervention_segments_of(
    steps: Sequence[SimStep], *, start_ns: int, period_ns: int
) -> tuple[InterventionSegment, ...]:
    """Spans of consecutive human steps, from the first human command to the next policy one."""
    events = [(_command_ns(start_ns, i, period_ns), step.human) for i, step in enumerate(steps)]
    return intervention_segments(events, end_ns=start_ns + len(steps) * period_ns)


def record_sim_episode(
    recorder: EpisodeRecorder,
    meta: EpisodeMeta,
    steps: Sequence[SimStep],
    *,
    period_ns: int,
    namespace: str,
) -> Path:
    """Write ``steps`` as one finished bag starting at ``meta.start_ns``; return the bag directory.

    ``meta.end_ns`` and ``meta.interventions`` are filled in from the steps.
    """
    start_ns = meta.start_ns
    end_ns = start_ns + len(steps) * period_ns
    meta = replace(
        meta,
        end_ns=end_ns,
        interventions=intervention_segments_of(steps, start_ns=start_ns, period_ns=period_ns),
    )
    recorder.start(meta)

    def write(topic: str, msg, stamp: int) -> None:
        recorder.write(f"{namespace}/{topic}", msg.__msgtype__, serialize(msg), stamp)

    names = list(ACTION_NAMES)
    version = meta.policy_versions[-1] if meta.policy_versions else ""
    write(topics.EPISODE_EVENTS, _event(meta, 0, start_ns, version), start_ns)
    human = False
    for i, step in enumerate(steps):
        stamp = start_ns + i * period_ns
        for camera, image in step.obs.images.items():
            jpeg = cv2.imencode(
                ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
            )[1]
            msg = make(COMPRESSED_IMAGE, header=header(stamp), format="jpeg", data=jpeg.reshape(-1))
            write(topics.camera_topic(camera), msg, stamp)
        position = np.asarray(step.obs.state, dtype=float)
        write(
            topics.JOINT_STATES, make(JOINT_STATE, header=header(stamp), name=names, position=position), stamp
        )
        # The command follows the observation it answers, as on a robot.
        command_ns = _command_ns(start_ns, i, period_ns)
        action = np.asarray(step.action, dtype=np.float32)
        if step.human != human:
            human = step.human
            write(topics.INTERVENTION, _intervention(command_ns, human, action), command_ns)
        source = "human" if step.human else "policy"
        command = make(
            JOINT_STATE, header=header(command_ns, source), name=names, position=action.astype(float)
        )
        write(topics.COMMAND, command, command_ns)
    if human:
        write(topics.INTERVENTION, _intervention(end_ns, False, None), end_ns)
    write(topics.EPISODE_EVENTS, _event(meta, 1, end_ns, version), end_ns)
    return recorder.finish(meta)


def _command_ns(start_ns: int, step: int, period_ns: int) -> int:
    return start_ns + step * period_ns + period_ns // 2


def _intervention(stamp: int, active: bool, action: np.ndarray | None):
    return make(
        INTERVENTION,
        header=header(stamp),
        active=active,
        source="joystick",
        action=action if active and action is not None else np.zeros(0, np.float32),
    )


def _event(meta: EpisodeMeta, kind: int, stamp: int, version: str):
    return make(
        EPISODE_EVENT,
        header=header(stamp),
        kind=kind,
        episode_id=meta.episode_id,
        robot_id=meta.robot_id,
        task=meta.task,
        instruction=meta.instruction,
        outcome=1 if kind == 1 and meta.outcome is Outcome.SUCCESS else 0,
        policy_version=version,
    )

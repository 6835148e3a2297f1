"""Helpers for the storage tests: hand-made messages with hand-picked stamps."""

from __future__ import annotations

import cv2
import numpy as np

from sop_ros.core import topics
from sop_ros.core.types import EpisodeMeta
from sop_ros.storage import typestore as ts
from sop_ros.storage.recorder import EpisodeRecorder

NS = "/robot_1/"


def jpeg(rgb: tuple[int, int, int], size: int = 16) -> bytes:
    """A JPEG of one flat colour (given as RGB)."""
    image = np.empty((size, size, 3), np.uint8)
    image[:] = rgb[::-1]  # OpenCV encodes BGR
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return data.tobytes()


def make_meta(episode_id: str = "robot_1-ep", **kw: object) -> EpisodeMeta:
    fields: dict[str, object] = {
        "episode_id": episode_id,
        "robot_id": "robot_1",
        "task": "stack",
        "instruction": "stack the red cube on the blue one",
        "start_ns": 1_000,
    }
    fields.update(kw)
    return EpisodeMeta(**fields)  # type: ignore[arg-type]


class BagWriter:
    """Writes typed messages through a recorder as a ROS node would (CDR bytes)."""

    def __init__(self, recorder: EpisodeRecorder) -> None:
        self.recorder = recorder

    def frame(self, camera: str, stamp: int, data: bytes) -> None:
        msg = ts.make(
            ts.COMPRESSED_IMAGE, header=ts.header(stamp), format="jpeg", data=np.frombuffer(data, np.uint8)
        )
        self.recorder.write(NS + topics.camera_topic(camera), ts.COMPRESSED_IMAGE, ts.serialize(msg), stamp)

    def joints(self, stamp: int, position: list[float], topic: str = topics.JOINT_STATES) -> None:
        names = [f"j{i}" for i in range(len(position))]
        msg = ts.make(ts.JOINT_STATE, header=ts.header(stamp), name=names, position=np.array(position))
        self.recorder.write(NS + topic, ts.JOINT_STATE, ts.serialize(msg), stamp)

    def command(self, stamp: int, position: list[float]) -> None:
        self.joints(stamp, position, topic=topics.COMMAND)

    def intervention(self, stamp: int, active: bool) -> None:
        msg = ts.make(ts.INTERVENTION, header=ts.header(stamp), active=active, source="joystick")
        self.recorder.write(NS + topics.INTERVENTION, ts.INTERVENTION, ts.serialize(msg), stamp)


__all__ = ["NS", "BagWriter", "jpeg", "make_meta"]

"""Turn an episode bag into aligned control steps for training.

One step per ``command`` message (the action the robot executed). For step t:

- observation: the newest frame of every camera and the newest
  ``joint_states`` position logged at or before the command (bag log time, i.e.
  what the robot had received when it acted); leading commands that come
  before the first frame of some camera or the first joint state are dropped;
- executed action chunk: commands t .. t+H-1, the last one repeated past the end;
- ``is_human``: the command falls inside an intervention segment ``[start, end)``.

All times are bag log times (the recorder's receive stamps). Images stay JPEG
``bytes`` and are decoded on demand, so an :class:`Episode` costs about the
size of its compressed frames. A camera recorded as raw ``sensor_msgs/Image``
(no ``.../compressed`` topic) is JPEG-encoded (quality 95, lossy) while
loading, for the same reason. Episodes are immutable after loading; any
thread may read them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.interfaces import Connection

from sop_ros.core import topics
from sop_ros.core.types import EpisodeMeta, InterventionSegment, Outcome
from sop_ros.storage.bagio import episode_meta
from sop_ros.storage.errors import BagError
from sop_ros.storage.segments import intervention_segments
from sop_ros.storage.typestore import COMPRESSED_IMAGE, IMAGE, INTERVENTION, JOINT_STATE

__all__ = [
    "Episode",
    "Step",
    "decode_jpeg",
    "intervention_segments",
    "load_episode",
]

# Largest disagreement (s) tolerated between the intervention segments in a
# bag's metadata and the ones its Intervention messages describe.
SEGMENT_TOLERANCE_S = 1.0


def decode_jpeg(data: bytes) -> np.ndarray:
    """Decode compressed image bytes into an RGB uint8 array (H, W, 3).

    Raises:
        BagError: the bytes are not a decodable image.
    """
    rgb = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB)
    if rgb is None:
        raise BagError(f"{len(data)} bytes of compressed image do not decode")
    return rgb


@dataclass(frozen=True, eq=False)
class Step:
    """Everything one training sample needs from one control step."""

    episode_id: str
    task: str
    instruction: str
    outcome: Outcome
    # Position of the step in its episode, and the episode's number of steps.
    index: int
    length: int
    stamp_ns: int
    # Measured joint positions, float32 (S,).
    state: np.ndarray
    # Executed actions of this and the next H-1 steps, float32 (H, A); last row repeated.
    action_chunk: np.ndarray
    # False on the padded rows of action_chunk, bool (H,).
    chunk_valid: np.ndarray
    # True if the human held control at this step.
    is_human: bool
    # Camera name -> JPEG bytes of the frame seen; decode with :func:`decode_jpeg`.
    jpegs: Mapping[str, bytes]


@dataclass(frozen=True, eq=False)
class Episode:
    """One episode as aligned control steps; arrays have one row per step."""

    path: Path
    meta: EpisodeMeta
    # Names of the action dimensions (the command's joint names).
    action_names: tuple[str, ...]
    # Names of the state dimensions (the joint_states names).
    state_names: tuple[str, ...]
    # Log time of each step's command (ns since the epoch), int64 (T,).
    stamps_ns: np.ndarray
    # Measured joint positions seen at each step, float32 (T, S).
    states: np.ndarray
    # Executed command of each step, float32 (T, A).
    actions: np.ndarray
    # True where the human held control, bool (T,).
    is_human: np.ndarray
    # Camera name -> JPEG bytes of the frame each step saw (frames shared between steps).
    frames: Mapping[str, Sequence[bytes]]
    # Length of executed action chunks (steps).
    horizon: int
    # Intervention segments the flags came from.
    interventions: tuple[InterventionSegment, ...] = field(default=())

    def __len__(self) -> int:
        return int(self.stamps_ns.shape[0])

    @property
    def instruction(self) -> str:
        """The task instruction given to the policy."""
        return self.meta.instruction

    @property
    def outcome(self) -> Outcome:
        """How the episode ended."""
        return self.meta.outcome

    @property
    def cameras(self) -> tuple[str, ...]:
        """Camera names, in load order."""
        return tuple(self.frames)

    def chunk_indices(self, step: int) -> np.ndarray:
        """Return the command rows of the chunk starting at ``step`` (last row repeated)."""
        self._check_step(step)
        return np.minimum(np.arange(step, step + self.horizon), len(self) - 1)

    def action_chunk(self, step: int) -> np.ndarray:
        """Return the executed actions of steps ``step .. step+H-1``, float32 (H, A)."""
        chunk: np.ndarray = self.actions[self.chunk_indices(step)]
        return chunk

    def chunk_valid(self, step: int) -> np.ndarray:
        """Return which rows of :meth:`action_chunk` are real (False where padded), bool (H,)."""
        self._check_step(step)
        return np.arange(step, step + self.horizon) < len(self)

    def step(self, index: int) -> Step:
        """Return step ``index`` as one training sample (images still compressed)."""
        return Step(
            episode_id=self.meta.episode_id,
            task=self.meta.task,
            instruction=self.meta.instruction,
            outcome=self.meta.outcome,
            index=index,
            length=len(self),
            stamp_ns=int(self.stamps_ns[index]),
            state=self.states[index],
            action_chunk=self.action_chunk(index),
            chunk_valid=self.chunk_valid(index),
            is_human=bool(self.is_human[index]),
            jpegs={camera: frames[index] for camera, frames in self.frames.items()},
        )

    def image(self, camera: str, step: int) -> np.ndarray:
        """Decode the frame ``camera`` showed at ``step``: RGB uint8 (H, W, 3)."""
        self._check_step(step)
        try:
            data = self.frames[camera][step]
        except KeyError:
            raise BagError(f"{self.path}: no camera {camera!r}; it has {list(self.frames)}") from None
        return decode_jpeg(data)

    def _check_step(self, step: int) -> None:
        if not 0 <= step < len(self):
            raise IndexError(f"step {step} outside episode {self.meta.episode_id} of {len(self)} steps")


def load_episode(bag_dir: Path | str, *, cameras: Sequence[str], horizon: int) -> Episode:
    """Decode a bag into aligned control steps (see the module docstring).

    Args:
        bag_dir: The bag directory.
        cameras: Camera names to load: ``camera/<name>/image_raw/compressed`` topics,
            else raw ``camera/<name>/image_raw`` ones.
        horizon: Length H of executed action chunks.

    Raises:
        BagError: the bag is unreadable, lacks a needed topic or has inconsistent metadata.
    """
    bag_dir = Path(bag_dir)
    if horizon < 1:
        raise BagError(f"horizon must be >= 1, got {horizon}")
    meta = episode_meta(bag_dir)
    try:
        return _load(bag_dir, meta, tuple(cameras), horizon)
    except BagError:
        raise
    except Exception as err:  # rosbags and mcap raise many types on broken files
        raise BagError(f"{bag_dir}: cannot read bag: {type(err).__name__}: {err}") from None


@dataclass
class _Recorded:
    """The messages of one bag that steps are built from, in log order per topic."""

    cmd_stamps: list[int] = field(default_factory=list)
    cmd_values: list[np.ndarray] = field(default_factory=list)
    state_stamps: list[int] = field(default_factory=list)
    state_values: list[np.ndarray] = field(default_factory=list)
    frame_stamps: dict[str, list[int]] = field(default_factory=dict)
    frame_data: dict[str, list[bytes]] = field(default_factory=dict)
    # (log time, active) of every Intervention message.
    events: list[tuple[int, bool]] = field(default_factory=list)
    action_names: tuple[str, ...] | None = None
    state_names: tuple[str, ...] | None = None
    has_intervention_topic: bool = False
    last_stamp: int = 0


def _read(bag_dir: Path, cameras: tuple[str, ...]) -> _Recorded:
    out = _Recorded(frame_stamps={c: [] for c in cameras}, frame_data={c: [] for c in cameras})
    with AnyReader([bag_dir]) as reader:
        conns = reader.connections
        command = _find(bag_dir, conns, topics.COMMAND, JOINT_STATE)
        joints = _find(bag_dir, conns, topics.JOINT_STATES, JOINT_STATE)
        images = {cam: _find_camera(bag_dir, conns, cam) for cam in cameras}
        intervention = _find_optional(bag_dir, conns, topics.INTERVENTION, INTERVENTION)
        out.has_intervention_topic = intervention is not None
        wanted = [command, joints, *images.values()] + ([intervention] if intervention else [])
        camera_of = {conn.id: cam for cam, conn in images.items()}
        for conn, stamp, raw in reader.messages(connections=wanted):
            out.last_stamp = max(out.last_stamp, stamp)
            msg: Any = reader.deserialize(raw, conn.msgtype)  # a message of conn.msgtype
            if conn.id == command.id:
                out.action_names = _same_names(bag_dir, conn.topic, out.action_names, msg.name)
                out.cmd_stamps.append(stamp)
                out.cmd_values.append(np.asarray(msg.position, np.float32))
            elif conn.id == joints.id:
                out.state_names = _same_names(bag_dir, conn.topic, out.state_names, msg.name)
                out.state_stamps.append(stamp)
                out.state_values.append(np.asarray(msg.position, np.float32))
            elif conn.id in camera_of:
                out.frame_stamps[camera_of[conn.id]].append(stamp)
                jpeg = msg.data.tobytes() if conn.msgtype == COMPRESSED_IMAGE else _encode_raw(msg)
                out.frame_data[camera_of[conn.id]].append(jpeg)
            else:
                out.events.append((stamp, bool(msg.active)))
    return out


def _load(bag_dir: Path, meta: EpisodeMeta, cameras: tuple[str, ...], horizon: int) -> Episode:
    rec = _read(bag_dir, cameras)
    cmd_ns, actions = _sorted(bag_dir, "command", rec.cmd_stamps, rec.cmd_values)
    state_ns, states = _sorted(bag_dir, "joint_states", rec.state_stamps, rec.state_values)
    # Newest input at or before each command: searchsorted(side="right") - 1.
    state_idx = np.searchsorted(state_ns, cmd_ns, side="right") - 1
    usable = state_idx >= 0
    frames: dict[str, list[bytes]] = {}
    frame_idx = {}
    for cam in cameras:
        stamps = np.asarray(rec.frame_stamps[cam], np.int64)
        order = np.argsort(stamps, kind="stable")
        frames[cam] = [rec.frame_data[cam][i] for i in order]
        frame_idx[cam] = np.searchsorted(stamps[order], cmd_ns, side="right") - 1
        usable &= frame_idx[cam] >= 0
    if not usable.any():
        raise BagError(f"{bag_dir}: no command comes after a joint state and a frame of every camera")
    first = int(np.argmax(usable))

    # An open segment lasts to the end of the recording, last command included.
    segments = intervention_segments(rec.events, end_ns=max(meta.end_ns, rec.last_stamp + 1))
    segments = _cross_check(bag_dir, meta, segments, have_messages=rec.has_intervention_topic)
    steps = cmd_ns[first:]
    is_human = np.zeros(steps.shape, bool)
    for seg in segments:
        is_human |= (steps >= seg.start_ns) & (steps < seg.end_ns)
    return Episode(
        path=bag_dir,
        meta=meta,
        action_names=rec.action_names or (),
        state_names=rec.state_names or (),
        stamps_ns=_frozen(steps),
        states=_frozen(states[state_idx[first:]]),
        actions=_frozen(actions[first:]),
        is_human=_frozen(is_human),
        frames={cam: tuple(frames[cam][i] for i in frame_idx[cam][first:]) for cam in cameras},
        horizon=horizon,
        interventions=segments,
    )


def _same_names(
    bag_dir: Path, topic: str, known: tuple[str, ...] | None, names: Sequence[str]
) -> tuple[str, ...]:
    names = tuple(names)
    if known is not None and names != known:
        raise BagError(f"{bag_dir}: {topic} changes its joint names from {list(known)} to {list(names)}")
    return names


def _find_optional(bag_dir: Path, conns: list[Connection], name: str, msgtype: str) -> Connection | None:
    # Bags hold absolute names (/<robot namespace>/command); the topic table holds relative ones.
    found = [c for c in conns if c.topic == name or c.topic.endswith("/" + name.lstrip("/"))]
    if not found:
        return None
    if len({c.topic for c in found}) > 1:
        raise BagError(f"{bag_dir}: {name!r} is ambiguous: {sorted({c.topic for c in found})}")
    if found[0].msgtype != msgtype:
        raise BagError(f"{bag_dir}: topic {found[0].topic} carries {found[0].msgtype}, expected {msgtype}")
    return found[0]


def _find_camera(bag_dir: Path, conns: list[Connection], camera: str) -> Connection:
    compressed = _find_optional(bag_dir, conns, topics.camera_topic(camera), COMPRESSED_IMAGE)
    if compressed is not None:
        return compressed
    raw = _find_optional(bag_dir, conns, topics.camera_topic(camera, compressed=False), IMAGE)
    if raw is None:
        raise BagError(
            f"{bag_dir}: no {topics.camera_topic(camera)!r} or raw image topic for camera {camera!r}; "
            f"the bag has {sorted(c.topic for c in conns)}"
        )
    return raw


# Raw image encodings -> (channels, OpenCV conversion to BGR or None).
_RAW_ENCODINGS = {
    "bgr8": (3, None),
    "rgb8": (3, cv2.COLOR_RGB2BGR),
    "mono8": (1, None),
    "bgra8": (4, cv2.COLOR_BGRA2BGR),
    "rgba8": (4, cv2.COLOR_RGBA2BGR),
}


def _encode_raw(msg: Any) -> bytes:
    """JPEG-encode a raw ``sensor_msgs/Image`` so it costs what a compressed frame does."""
    encoding, height, width, step = msg.encoding, msg.height, msg.width, msg.step
    if encoding not in _RAW_ENCODINGS:
        raise BagError(f"raw image encoding {encoding!r} is not one of {sorted(_RAW_ENCODINGS)}")
    channels, conversion = _RAW_ENCODINGS[encoding]
    rows = np.asarray(msg.data, np.uint8).reshape(height, step)
    image: np.ndarray = rows[:, : width * channels].reshape(height, width, channels)
    if conversion is not None:
        image = cv2.cvtColor(image, conversion)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise BagError(f"cannot JPEG-encode a {width}x{height} {encoding} image")
    return data.tobytes()


def _find(bag_dir: Path, conns: list[Connection], name: str, msgtype: str) -> Connection:
    found = _find_optional(bag_dir, conns, name, msgtype)
    if found is None:
        raise BagError(f"{bag_dir}: no {name!r} topic; the bag has {sorted(c.topic for c in conns)}")
    return found


def _sorted(
    bag_dir: Path, what: str, stamps: list[int], rows: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Stack ``rows`` in stamp order (the recorder may log slightly out of order)."""
    if not rows:
        raise BagError(f"{bag_dir}: no {what} messages")
    widths = {row.shape[0] for row in rows}
    if len(widths) != 1:
        raise BagError(f"{bag_dir}: {what} messages change length: {sorted(widths)}")
    order = np.argsort(np.asarray(stamps, np.int64), kind="stable")
    return np.asarray(stamps, np.int64)[order], np.stack(rows)[order]


def _cross_check(
    bag_dir: Path, meta: EpisodeMeta, found: tuple[InterventionSegment, ...], *, have_messages: bool
) -> tuple[InterventionSegment, ...]:
    """Reconcile segments from messages with the ones in the metadata."""
    if not have_messages:
        return meta.interventions  # topic not recorded: the metadata is all we have
    if not meta.interventions:
        return found  # metadata without a summary; the messages are the record
    tolerance_ns = int(SEGMENT_TOLERANCE_S * 1e9)
    agree = len(found) == len(meta.interventions) and all(
        abs(a.start_ns - b.start_ns) <= tolerance_ns and abs(a.end_ns - b.end_ns) <= tolerance_ns
        for a, b in zip(found, meta.interventions, strict=True)
    )
    if not agree:
        raise BagError(
            f"{bag_dir}: metadata lists {len(meta.interventions)} intervention segment(s) "
            f"{_fmt(meta.interventions)} but the Intervention messages give {len(found)} {_fmt(found)}"
        )
    return found


def _fmt(segments: tuple[InterventionSegment, ...]) -> str:
    return "[" + ", ".join(f"{s.start_ns}-{s.end_ns}" for s in segments) + "]"


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array

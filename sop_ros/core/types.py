"""Data that flows through the robot graph and the learner, free of ROS types.

Everything here is immutable: a value handed to another thread cannot change
under it. Conversions to and from ROS messages live in ``sop_ros.nodes.convert``.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType

import numpy as np

from sop_ros.core.errors import ConfigError, InputError

__all__ = [
    "ActionChunk",
    "EpisodeEventKind",
    "EpisodeMeta",
    "InterventionSegment",
    "Observation",
    "Outcome",
    "format_version",
    "new_episode_id",
    "parse_version",
]


class Outcome(enum.Enum):
    """How an episode ended."""

    UNKNOWN = "unknown"
    SUCCESS = "success"
    FAILURE = "failure"
    # Recovered after a crash: the bag is readable but the episode never ended.
    INCOMPLETE = "incomplete"
    ABORTED = "aborted"


class EpisodeEventKind(enum.Enum):
    """The three events that delimit an episode."""

    START = "start"
    END = "end"
    ABORT = "abort"


def format_version(number: int) -> str:
    """Return the display form of a weights version, e.g. ``7 -> "v0007"``."""
    if number < 0:
        raise ConfigError(f"weights version must be >= 0, got {number}")
    return f"v{number:04d}"


def parse_version(text: str) -> int:
    """Inverse of :func:`format_version`; raises InputError on anything else."""
    if len(text) < 2 or text[0] != "v" or not text[1:].isdigit():
        raise InputError(f"{text!r} is not a weights version like 'v0007'")
    return int(text[1:])


def new_episode_id(robot_id: str, *, now: datetime | None = None) -> str:
    """Return an id unique across robots and restarts: robot, UTC time, random suffix."""
    now = now or datetime.now(UTC)
    return f"{robot_id}-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def _frozen_array(array: np.ndarray, dtype: type, ndim: int, what: str) -> np.ndarray:
    out: np.ndarray = np.array(array, dtype=dtype, copy=True)
    if out.ndim != ndim:
        raise InputError(f"{what} must be {ndim}-D, got shape {out.shape}")
    out.flags.writeable = False
    return out


@dataclass(frozen=True, kw_only=True)
class Observation:
    """What the policy sees at one instant."""

    # Camera name -> RGB image, uint8, shape (height, width, 3).
    images: Mapping[str, np.ndarray]
    # Proprioceptive state (joint positions in rad, gripper opening in m), float32.
    state: np.ndarray
    # Natural-language task instruction.
    instruction: str
    # Time of the newest input in ns since the epoch (ROS time).
    stamp_ns: int = 0

    def __post_init__(self) -> None:
        images = {}
        for name, image in self.images.items():
            image = _frozen_array(image, np.uint8, 3, f"camera {name!r} image")
            if image.shape[2] != 3:
                raise InputError(f"camera {name!r} image must be RGB (H, W, 3), got {image.shape}")
            images[name] = image
        object.__setattr__(self, "images", MappingProxyType(images))
        object.__setattr__(self, "state", _frozen_array(self.state, np.float32, 1, "state"))


@dataclass(frozen=True, kw_only=True)
class ActionChunk:
    """Actions for the next ``horizon`` control steps, one row per step."""

    # float32, shape (horizon, action_dim).
    actions: np.ndarray
    # Name of each action dimension (joint names etc.); length action_dim.
    action_names: tuple[str, ...]
    # Time between rows (s).
    control_period_s: float
    # Weights version that produced the chunk.
    policy_version: str = ""
    # Stamp of the observation the chunk answers (ns since the epoch).
    stamp_ns: int = 0
    # Time the policy took to compute the chunk (ms).
    infer_ms: float = 0.0

    def __post_init__(self) -> None:
        actions = _frozen_array(self.actions, np.float32, 2, "actions")
        object.__setattr__(self, "actions", actions)
        object.__setattr__(self, "action_names", tuple(self.action_names))
        if actions.shape[1] != len(self.action_names):
            raise InputError(f"actions have {actions.shape[1]} dimensions but {len(self.action_names)} names")
        if actions.shape[0] == 0:
            raise InputError("an action chunk needs at least one step")
        if not self.control_period_s > 0:
            raise InputError(f"control_period_s must be > 0, got {self.control_period_s}")

    @property
    def horizon(self) -> int:
        """Number of steps in the chunk."""
        return int(self.actions.shape[0])

    @property
    def action_dim(self) -> int:
        """Number of action dimensions."""
        return int(self.actions.shape[1])


@dataclass(frozen=True, kw_only=True)
class InterventionSegment:
    """A span during which the human held control (ns since the epoch)."""

    start_ns: int
    end_ns: int

    def __post_init__(self) -> None:
        if self.end_ns < self.start_ns:
            raise InputError(f"intervention ends ({self.end_ns}) before it starts ({self.start_ns})")

    @property
    def duration_s(self) -> float:
        """Length of the segment (s)."""
        return (self.end_ns - self.start_ns) / 1e9


@dataclass(frozen=True, kw_only=True)
class EpisodeMeta:
    """Everything known about an episode besides its messages.

    Stored in the bag's ``custom_data`` (string to string) so that any rosbag2
    reader finds it; :meth:`to_custom_data` and :meth:`from_custom_data` are
    exact inverses.
    """

    episode_id: str
    robot_id: str
    task: str
    instruction: str
    outcome: Outcome = Outcome.UNKNOWN
    # Every weights version that was active during the episode, in order.
    policy_versions: tuple[str, ...] = ()
    # Episode start and end (ns since the epoch); end is 0 while running.
    start_ns: int = 0
    end_ns: int = 0
    interventions: tuple[InterventionSegment, ...] = field(default_factory=tuple)

    PREFIX = "sop."

    @property
    def intervention_count(self) -> int:
        """Number of times the human took over."""
        return len(self.interventions)

    @property
    def intervention_s(self) -> float:
        """Total time under human control (s)."""
        return sum(segment.duration_s for segment in self.interventions)

    def to_custom_data(self) -> dict[str, str]:
        """Return the metadata as rosbag2 ``custom_data`` entries (all strings)."""
        p = self.PREFIX
        return {
            f"{p}episode_id": self.episode_id,
            f"{p}robot_id": self.robot_id,
            f"{p}task": self.task,
            f"{p}instruction": self.instruction,
            f"{p}outcome": self.outcome.value,
            f"{p}policy_versions": ",".join(self.policy_versions),
            f"{p}start_ns": str(self.start_ns),
            f"{p}end_ns": str(self.end_ns),
            f"{p}intervention_count": str(self.intervention_count),
            f"{p}intervention_s": f"{self.intervention_s:.3f}",
            f"{p}interventions": ";".join(f"{s.start_ns}-{s.end_ns}" for s in self.interventions),
        }

    @classmethod
    def from_custom_data(cls, data: Mapping[str, str]) -> EpisodeMeta:
        """Parse :meth:`to_custom_data` output; raises InputError naming the bad key."""
        p = cls.PREFIX
        try:
            versions = data[f"{p}policy_versions"]
            segments = data[f"{p}interventions"]
            return cls(
                episode_id=data[f"{p}episode_id"],
                robot_id=data[f"{p}robot_id"],
                task=data[f"{p}task"],
                instruction=data[f"{p}instruction"],
                outcome=Outcome(data[f"{p}outcome"]),
                policy_versions=tuple(versions.split(",")) if versions else (),
                start_ns=int(data[f"{p}start_ns"]),
                end_ns=int(data[f"{p}end_ns"]),
                interventions=tuple(
                    InterventionSegment(start_ns=int(a), end_ns=int(b))
                    for a, b in (s.split("-") for s in segments.split(";") if s)
                ),
            )
        except KeyError as err:
            raise InputError(f"episode metadata lacks {err.args[0]!r}") from None
        except ValueError as err:
            raise InputError(f"episode metadata is malformed: {err}") from None

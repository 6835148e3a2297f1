"""Executing action chunks and arbitrating between the policy and the human.

``ChunkBroker`` turns chunks into one action per control tick: the row of the
newest chunk that is due now (optionally blended with older chunks that cover
the same instant, i.e. temporal ensembling). ``CommandMux`` puts the human
first: while an intervention is active its command is executed; after the
hand-back the policy only resumes from a chunk computed *after* the hand-back,
so it never replays a plan made before the human moved the robot.

Both classes are plain state machines driven by explicit timestamps (ns); the
node that owns one calls it from a single executor thread.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

import numpy as np

from sop_ros.core.config import check_ranges, setting
from sop_ros.core.types import ActionChunk

__all__ = ["ChunkBroker", "CommandMux", "ControlConfig", "MuxOutput", "Source"]


@dataclass(frozen=True, kw_only=True)
class ControlConfig:
    """How chunks are executed."""

    # Chunks older than this are not executed: the robot holds instead.
    max_chunk_age_s: float = setting(1.0, "oldest chunk that may still be executed", unit="s", low=0.0)
    # Human commands older than this end the intervention (the joystick went quiet).
    max_command_age_s: float = setting(0.5, "oldest human command still obeyed", unit="s", low=0.0)
    # 0 disables ensembling; otherwise older chunks' rows are blended with weights exp(-k·age).
    ensemble_decay: float = setting(0.0, "temporal ensembling decay per chunk (0 = off)", low=0.0)
    ensemble_depth: int = setting(4, "chunks kept for temporal ensembling", low=1, high=64)

    def __post_init__(self) -> None:
        check_ranges(self)


class Source(enum.Enum):
    """Who produced the executed command."""

    POLICY = "policy"
    HUMAN = "human"
    HOLD = "hold"


@dataclass(frozen=True, kw_only=True)
class MuxOutput:
    """One control tick's decision; ``action`` is None when the robot must hold."""

    source: Source
    action: np.ndarray | None
    reason: str = ""
    # Set on the tick that ended an intervention because the human's newest command was this old.
    expired_command_age_s: float | None = None


class ChunkBroker:
    """Serve the action due at a given time from the chunks received so far."""

    def __init__(self, config: ControlConfig) -> None:
        self._config = config
        self._chunks: deque[ActionChunk] = deque(maxlen=config.ensemble_depth)

    def reconfigure(self, config: ControlConfig) -> None:
        """Apply a new chunk age limit and decay from now on (the ensembling depth stays)."""
        self._config = config

    def add(self, chunk: ActionChunk) -> None:
        """Accept a new chunk; older ones stay only for ensembling."""
        self._chunks.append(chunk)

    def clear(self) -> None:
        """Forget every chunk (after a hand-back or an episode end)."""
        self._chunks.clear()

    def action_at(self, now_ns: int) -> tuple[np.ndarray | None, str]:
        """Return (action, "") due at ``now_ns``, or (None, why) when nothing valid is due."""
        if not self._chunks:
            return None, "no action chunk yet"
        newest = self._chunks[-1]
        age_s = (now_ns - newest.stamp_ns) / 1e9
        if age_s > self._config.max_chunk_age_s:
            return None, f"newest action chunk is {age_s:.2f} s old (limit {self._config.max_chunk_age_s} s)"
        rows: list[np.ndarray] = []
        weights: list[float] = []
        for rank, chunk in enumerate(reversed(self._chunks)):
            row = self._row(chunk, now_ns)
            if row is None:
                continue
            rows.append(row)
            weights.append(float(np.exp(-self._config.ensemble_decay * rank)))
            if self._config.ensemble_decay == 0.0:
                break
        if not rows:
            return None, "action chunk exhausted; waiting for the next one"
        blended = np.average(np.stack(rows), axis=0, weights=np.asarray(weights))
        return blended.astype(np.float32), ""

    @staticmethod
    def _row(chunk: ActionChunk, now_ns: int) -> np.ndarray | None:
        step = int((now_ns - chunk.stamp_ns) // int(chunk.control_period_s * 1e9))
        if step < 0:
            step = 0
        if step >= chunk.horizon:
            return None
        row: np.ndarray = chunk.actions[step]
        return row


class CommandMux:
    """Arbitrate policy and human commands into the one command the robot executes."""

    def __init__(self, config: ControlConfig, broker: ChunkBroker | None = None) -> None:
        self._config = config
        self._broker = broker or ChunkBroker(config)
        self._human: np.ndarray | None = None
        self._human_stamp_ns = 0
        self._handback_ns: int | None = None

    def reconfigure(self, config: ControlConfig) -> None:
        """Apply new ages and ensembling decay from now on (the ensembling depth stays)."""
        self._config = config
        self._broker.reconfigure(config)

    @property
    def human_active(self) -> bool:
        """True while the human holds control."""
        return self._human is not None

    def on_chunk(self, chunk: ActionChunk) -> None:
        """Take a policy chunk; ignored if computed before the last hand-back."""
        if self._handback_ns is not None and chunk.stamp_ns < self._handback_ns:
            return
        self._broker.add(chunk)

    def on_intervention(self, active: bool, action: np.ndarray | None, stamp_ns: int) -> None:
        """Take a human command (active) or an explicit hand-back (not active)."""
        if active and action is not None:
            self._human = np.asarray(action, dtype=np.float32)
            self._human_stamp_ns = stamp_ns
        elif self._human is not None:
            self._hand_back(stamp_ns)

    def reset(self) -> None:
        """Start from nothing (episode boundary)."""
        self._broker.clear()
        self._human = None
        self._handback_ns = None

    def tick(self, now_ns: int) -> MuxOutput:
        """Decide the command for the control tick at ``now_ns``."""
        expired = None
        if self._human is not None:
            age_s = (now_ns - self._human_stamp_ns) / 1e9
            if age_s <= self._config.max_command_age_s:
                return MuxOutput(source=Source.HUMAN, action=self._human)
            expired = age_s
            self._hand_back(now_ns)
        action, why = self._broker.action_at(now_ns)
        if action is None:
            return MuxOutput(source=Source.HOLD, action=None, reason=why, expired_command_age_s=expired)
        return MuxOutput(source=Source.POLICY, action=action, expired_command_age_s=expired)

    def _hand_back(self, stamp_ns: int) -> None:
        self._human = None
        self._handback_ns = stamp_ns
        # The plan the policy made before the human moved the robot is void.
        self._broker.clear()

"""The hold-to-enable teleoperation state machine.

Two phases, one transition table. IDLE → ACTIVE when the deadman button goes
down (a rising edge: a button still held from before a timeout does not
count, so control never resumes without a fresh press). ACTIVE → IDLE when it
is released or when no Joy message arrived for the mapping's timeout; both
emit a :class:`HandBack` so the policy knows to resume. Episode buttons fire
once per press, however long they are held.

Inputs are Joy samples (:meth:`TeleopStateMachine.on_joy`) and clock ticks at
the publish rate (:meth:`TeleopStateMachine.on_tick`); outputs are small
immutable objects. The machine belongs to the one thread that calls it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from sop_ros.core.errors import InputError
from sop_ros.core.guards import check_finite
from sop_ros.core.teleop.mapping import EpisodeRequest, JoyMapping, check_axes, target_from_axes

__all__ = [
    "TRANSITIONS",
    "EpisodeButton",
    "HandBack",
    "HandBackReason",
    "JoySample",
    "TakeOver",
    "TeleopCommand",
    "TeleopOutput",
    "TeleopPhase",
    "TeleopStateMachine",
    "Trigger",
]


class TeleopPhase(enum.Enum):
    """Who commands the robot."""

    IDLE = "idle"  # the policy
    ACTIVE = "active"  # the operator


class Trigger(enum.Enum):
    """What can move the machine between phases."""

    DEADMAN_PRESSED = "deadman_pressed"
    DEADMAN_RELEASED = "deadman_released"
    JOY_TIMEOUT = "joy_timeout"
    BAD_INPUT = "bad_input"


class HandBackReason(enum.Enum):
    """Why the operator's control ended."""

    RELEASED = "released"
    TIMEOUT = "timeout"
    # A Joy message or joint state could not be used (NaN axis, too few axes): no command from it.
    BAD_INPUT = "bad_input"


@dataclass(frozen=True, kw_only=True)
class JoySample:
    """One ``sensor_msgs/Joy`` message, stamped with its receive time on the ticking clock."""

    axes: tuple[float, ...]
    buttons: tuple[int, ...]
    stamp_ns: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "axes", tuple(float(a) for a in self.axes))
        object.__setattr__(self, "buttons", tuple(int(b) for b in self.buttons))


@dataclass(frozen=True, kw_only=True)
class TakeOver:
    """The operator took control (publish ``Intervention(active=True)``)."""

    stamp_ns: int


@dataclass(frozen=True, kw_only=True)
class HandBack:
    """The operator's control ended: stop following commands, let the policy resume."""

    stamp_ns: int
    reason: HandBackReason


@dataclass(frozen=True, kw_only=True)
class TeleopCommand:
    """An absolute target, one value per action name, while the operator is in control."""

    stamp_ns: int
    action: tuple[float, ...]


@dataclass(frozen=True, kw_only=True)
class EpisodeButton:
    """An episode button was pressed (fires once per press)."""

    stamp_ns: int
    request: EpisodeRequest


TeleopOutput = TakeOver | HandBack | TeleopCommand | EpisodeButton

# (phase, trigger) -> (next phase, hand-back reason or None). Total over both enums,
# so an unexpected input (a release while idle) is a stated no-op, not an error.
TRANSITIONS: Mapping[tuple[TeleopPhase, Trigger], tuple[TeleopPhase, HandBackReason | None]] = (
    MappingProxyType(
        {
            (TeleopPhase.IDLE, Trigger.DEADMAN_PRESSED): (TeleopPhase.ACTIVE, None),
            (TeleopPhase.IDLE, Trigger.DEADMAN_RELEASED): (TeleopPhase.IDLE, None),
            (TeleopPhase.IDLE, Trigger.JOY_TIMEOUT): (TeleopPhase.IDLE, None),
            (TeleopPhase.IDLE, Trigger.BAD_INPUT): (TeleopPhase.IDLE, None),
            (TeleopPhase.ACTIVE, Trigger.DEADMAN_PRESSED): (TeleopPhase.ACTIVE, None),
            (TeleopPhase.ACTIVE, Trigger.DEADMAN_RELEASED): (TeleopPhase.IDLE, HandBackReason.RELEASED),
            (TeleopPhase.ACTIVE, Trigger.JOY_TIMEOUT): (TeleopPhase.IDLE, HandBackReason.TIMEOUT),
            (TeleopPhase.ACTIVE, Trigger.BAD_INPUT): (TeleopPhase.IDLE, HandBackReason.BAD_INPUT),
        }
    )
)

_EPISODE_BUTTONS = tuple(EpisodeRequest)
# Longest gap between two ticks integrated in full (in publish periods).
MAX_TICK_PERIODS = 4


class TeleopStateMachine:
    """Turns Joy samples and clock ticks into takeovers, commands, hand-backs and episode requests.

    Args:
        mapping: The joystick mapping (axes, buttons, rate, timeout).
    """

    def __init__(self, mapping: JoyMapping) -> None:
        self.mapping = mapping
        self.phase = TeleopPhase.IDLE
        self._buttons: tuple[int, ...] = ()
        self._axes: tuple[float, ...] = ()
        self._last_joy_ns: int | None = None
        # Integrated command; None until the first tick after a takeover seeds it from the measured state.
        self._command: np.ndarray | None = None
        self._last_tick_ns: int | None = None

    @property
    def last_command(self) -> tuple[float, ...] | None:
        """The last target sent while active, or None when idle or not yet ticked."""
        return None if self._command is None else tuple(float(v) for v in self._command)

    def on_joy(self, sample: JoySample) -> tuple[TeleopOutput, ...]:
        """Feed one Joy message; returns a TakeOver/HandBack and any episode-button presses.

        Raises:
            InputError: the message has fewer buttons or axes than the mapping uses.
            UnsafeInputError: an axis the mapping reads is NaN or infinite.
        """
        mapping = self.mapping
        needed = max(mapping.buttons.values()) + 1
        if len(sample.buttons) < needed:
            raise InputError(
                f"the mapping reads button {needed - 1}; the Joy message has {len(sample.buttons)}"
            )
        check_axes(sample.axes, mapping)
        check_finite("Joy axes", [sample.axes[a] for a in mapping.axes], [f"axis {a}" for a in mapping.axes])
        out: list[TeleopOutput] = []
        was = self._pressed(self._buttons, mapping.deadman_button)
        now = self._pressed(sample.buttons, mapping.deadman_button)
        if now and not was:
            out.extend(self._fire(Trigger.DEADMAN_PRESSED, sample.stamp_ns))
        elif was and not now:
            out.extend(self._fire(Trigger.DEADMAN_RELEASED, sample.stamp_ns))
        for request in _EPISODE_BUTTONS:
            index = mapping.buttons[request.value]
            if self._pressed(sample.buttons, index) and not self._pressed(self._buttons, index):
                out.append(EpisodeButton(stamp_ns=sample.stamp_ns, request=request))
        self._buttons, self._axes = sample.buttons, sample.axes
        last = self._last_joy_ns
        self._last_joy_ns = sample.stamp_ns if last is None else max(last, sample.stamp_ns)
        return tuple(out)

    def on_tick(self, now_ns: int, state: Sequence[float] | np.ndarray) -> tuple[TeleopOutput, ...]:
        """Advance the clock one publish period; returns a command, a timeout HandBack, or nothing.

        Args:
            now_ns: Current time on the clock that stamped the Joy samples.
            state: The robot's measured values (one per action name); the first
                command after a takeover integrates from here.

        Raises:
            UnsafeInputError: the first command would integrate from a state that is not finite.
        """
        if self.phase is TeleopPhase.IDLE:
            return ()
        assert self._last_joy_ns is not None  # ACTIVE is only reached through a Joy sample
        if now_ns - self._last_joy_ns > self.mapping.timeout_ns:
            return self._fire(Trigger.JOY_TIMEOUT, now_ns)
        # The stick is a velocity: integrate it over the time that really passed, so a timer
        # that fires late on a loaded computer does not slow the human down (a long stall
        # counts as at most MAX_TICK_PERIODS periods, never as a jump).
        period_s = self.mapping.period_s
        if self._command is not None and self._last_tick_ns is not None:
            elapsed_s = (now_ns - self._last_tick_ns) / 1e9
            period_s = min(max(elapsed_s, 0.0), MAX_TICK_PERIODS * self.mapping.period_s)
        base = check_finite("joint state", state) if self._command is None else self._command
        self._command = target_from_axes(self._axes, base, self.mapping, period_s)
        self._last_tick_ns = now_ns
        return (TeleopCommand(stamp_ns=now_ns, action=self.last_command or ()),)

    def refuse(self, stamp_ns: int) -> tuple[TeleopOutput, ...]:
        """An input could not be used: no command comes from it, and control goes back to the policy.

        The buttons seen before stay the reference, so a deadman still held must be
        released and pressed again before the operator has control again.
        """
        self._axes = ()
        return self._fire(Trigger.BAD_INPUT, stamp_ns)

    def _fire(self, trigger: Trigger, stamp_ns: int) -> tuple[TeleopOutput, ...]:
        before = self.phase
        self.phase, reason = TRANSITIONS[(before, trigger)]
        if before is self.phase:
            return ()
        self._command = None
        if self.phase is TeleopPhase.ACTIVE:
            return (TakeOver(stamp_ns=stamp_ns),)
        assert reason is not None
        return (HandBack(stamp_ns=stamp_ns, reason=reason),)

    @staticmethod
    def _pressed(buttons: Sequence[int], index: int) -> bool:
        return 0 <= index < len(buttons) and buttons[index] != 0

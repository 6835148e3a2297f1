"""The joystick mapping: which stick drives which action dimension, and its exact inverse.

Sticks command velocities: each period the target moves by
``shaped axis · scale · period`` from the previous command, so the robot moves
smoothly and stops when the stick is let go. :func:`joy_for_target` inverts
this, which lets a scripted operator drive the robot through the same path a
human's joystick takes. Pure functions and immutable values only.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from sop_ros.core.config import check_ranges, config_from_flat, setting
from sop_ros.core.errors import ConfigError, InputError, UnsafeInputError

__all__ = [
    "EpisodeRequest",
    "JoyMapping",
    "check_axes",
    "joy_buttons",
    "joy_for_target",
    "load_joy_mapping",
    "shape_axis",
    "target_from_axes",
    "unshape_axis",
]


class EpisodeRequest(enum.Enum):
    """What an episode button asks the episode manager to do."""

    START = "start"
    SUCCESS = "success"
    FAILURE = "failure"
    ABORT = "abort"


@dataclass(frozen=True, kw_only=True)
class JoyMapping:
    """Which stick drives which action dimension, and what each button means.

    Per-dimension settings are parallel tuples (one entry per action name) so
    that they are plain ROS array parameters; :meth:`from_dict` also reads the
    friendlier per-dimension list used by ``config/joystick.yaml``.
    """

    action_names: tuple[str, ...] = setting(("ee_x", "ee_y", "gripper"), "Action dimension names, in order")
    axes: tuple[int, ...] = setting((0, 1, 4), "Joy axis index driving each dimension")
    scales: tuple[float, ...] = setting(
        (0.25, 0.25, 0.5), "Speed of each dimension at full deflection", unit="units/s"
    )
    deadzones: tuple[float, ...] = setting((0.1, 0.1, 0.1), "Stick travel ignored around centre, in [0, 1)")
    inverted: tuple[bool, ...] = setting((True, False, False), "Flip the sign of each axis")
    # Empty for no limit; otherwise one entry per dimension (may be -inf / inf).
    lower_limits: tuple[float, ...] = setting(
        (0.0, 0.0, 0.0), "Smallest target of each dimension", unit="units"
    )
    upper_limits: tuple[float, ...] = setting(
        (0.5, 0.5, 0.08), "Largest target of each dimension", unit="units"
    )
    deadman_button: int = setting(4, "Button held to control the robot", low=0)
    # -1 leaves an episode button unassigned.
    start_button: int = setting(7, "Button that starts an episode", low=-1)
    success_button: int = setting(0, "Button that ends an episode as a success", low=-1)
    failure_button: int = setting(1, "Button that ends an episode as a failure", low=-1)
    abort_button: int = setting(6, "Button that aborts an episode", low=-1)
    hand_back_timeout_periods: int = setting(
        5, "Publish periods without a Joy message before control returns to the policy", low=1
    )
    publish_rate_hz: float = setting(30.0, "Rate of commands while the deadman is held", unit="Hz", low=1.0)

    def __post_init__(self) -> None:
        n = len(self.action_names)
        if n == 0:
            raise ConfigError("a joystick mapping needs at least one action dimension")
        for name in ("axes", "scales", "deadzones", "inverted"):
            if len(getattr(self, name)) != n:
                raise ConfigError(f"{name} has {len(getattr(self, name))} entries for {n} action names")
        for name in ("lower_limits", "upper_limits"):
            if len(getattr(self, name)) not in (0, n):
                raise ConfigError(f"{name} must be empty or have {n} entries, got {len(getattr(self, name))}")
        object.__setattr__(self, "action_names", tuple(str(a) for a in self.action_names))
        object.__setattr__(self, "axes", _ints("axes", self.axes))
        if not all(isinstance(v, bool | np.bool_) for v in self.inverted):
            raise ConfigError(f"inverted must be true/false values, got {self.inverted}")
        object.__setattr__(self, "inverted", tuple(bool(v) for v in self.inverted))
        for name in ("scales", "deadzones", "lower_limits", "upper_limits"):
            object.__setattr__(self, name, _floats(name, getattr(self, name)))
        check_ranges(self)
        if min(self.axes) < 0:
            raise ConfigError(f"axis indices must be >= 0, got {self.axes}")
        if not all(s > 0 for s in self.scales):
            raise ConfigError(f"scales must be > 0, got {self.scales}")
        if not all(0.0 <= d < 1.0 for d in self.deadzones):
            raise ConfigError(f"deadzones must be in [0, 1), got {self.deadzones}")
        if self.lower_limits and self.upper_limits:
            bad = [
                a
                for a, lo, hi in zip(self.action_names, self.lower_limits, self.upper_limits, strict=True)
                if lo > hi
            ]
            if bad:
                raise ConfigError(f"lower limit above upper limit for {', '.join(bad)}")
        used = [b for b in self.buttons.values() if b >= 0]
        if len(set(used)) != len(used):
            raise ConfigError(f"one button has two meanings: {dict(self.buttons)}")

    @property
    def period_s(self) -> float:
        """Time between two commands (s)."""
        return 1.0 / self.publish_rate_hz

    @property
    def timeout_ns(self) -> int:
        """Silence on the Joy topic after which control is handed back (ns)."""
        return round(self.hand_back_timeout_periods * self.period_s * 1e9)

    @property
    def buttons(self) -> Mapping[str, int]:
        """Role -> button index: "deadman" and every :class:`EpisodeRequest` value."""
        return MappingProxyType(
            {
                "deadman": self.deadman_button,
                EpisodeRequest.START.value: self.start_button,
                EpisodeRequest.SUCCESS.value: self.success_button,
                EpisodeRequest.FAILURE.value: self.failure_button,
                EpisodeRequest.ABORT.value: self.abort_button,
            }
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JoyMapping:
        """Build a mapping from a YAML dict (flat field names, plus an optional ``dimensions`` list).

        Each ``dimensions`` entry has ``name``, ``axis``, ``scale`` and optionally
        ``deadzone`` (0.1), ``invert`` (false), ``low`` and ``high`` (no limit).

        Raises:
            ConfigError: an unknown key, a missing per-dimension key or a bad value.
        """
        flat = dict(data)
        dims = flat.pop("dimensions", None)
        if dims is not None:
            flat.update(_flatten_dimensions(dims))
        return config_from_flat(cls, flat)


def _ints(name: str, values: Sequence[Any]) -> tuple[int, ...]:
    if not all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in values):
        raise ConfigError(f"{name} must be integers, got {tuple(values)}")
    return tuple(int(v) for v in values)


def _floats(name: str, values: Sequence[Any]) -> tuple[float, ...]:
    if not all(isinstance(v, int | float | np.number) and not isinstance(v, bool) for v in values):
        raise ConfigError(f"{name} must be numbers, got {tuple(values)}")
    return tuple(float(v) for v in values)


def _flatten_dimensions(dims: Any) -> dict[str, tuple[Any, ...]]:
    if not isinstance(dims, list | tuple) or not dims:
        raise ConfigError(f"dimensions must be a non-empty list, got {dims!r}")
    known = {"name", "axis", "scale", "deadzone", "invert", "low", "high"}
    for i, dim in enumerate(dims):
        if not isinstance(dim, Mapping):
            raise ConfigError(f"dimensions[{i}] must be a mapping, got {dim!r}")
        missing = {"name", "axis", "scale"} - set(dim)
        unknown = set(dim) - known
        if missing or unknown:
            raise ConfigError(f"dimensions[{i}]: missing {sorted(missing)}, unknown {sorted(unknown)}")
    out: dict[str, tuple[Any, ...]] = {
        "action_names": tuple(d["name"] for d in dims),
        "axes": tuple(d["axis"] for d in dims),
        "scales": tuple(d["scale"] for d in dims),
        "deadzones": tuple(d.get("deadzone", 0.1) for d in dims),
        "inverted": tuple(d.get("invert", False) for d in dims),
    }
    # Limits default to none; one limited dimension makes the others +-inf.
    lows = tuple(d.get("low", -np.inf) for d in dims)
    highs = tuple(d.get("high", np.inf) for d in dims)
    out["lower_limits"] = () if all(v == -np.inf for v in lows) else lows
    out["upper_limits"] = () if all(v == np.inf for v in highs) else highs
    return out


def load_joy_mapping(path: str | Path) -> JoyMapping:
    """Read a joystick mapping YAML file (see ``config/joystick.yaml``).

    Raises:
        ConfigError: the file is missing, not YAML, or holds a bad mapping.
    """
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read joystick mapping {path}: {err}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"joystick mapping {path} must hold a mapping at top level")
    try:
        return JoyMapping.from_dict(data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def shape_axis(value: float, deadzone: float) -> float:
    """Map a raw axis reading to a command fraction in [-1, 1].

    Readings inside the deadzone give 0; beyond it the fraction rises linearly
    from 0 at the deadzone's edge to ±1 at full deflection, so the command is
    continuous (no jump when the stick leaves the deadzone). Readings beyond
    ±1 (some drivers overshoot) count as ±1.
    """
    v = min(max(float(value), -1.0), 1.0)
    magnitude = abs(v)
    if magnitude <= deadzone:
        return 0.0
    fraction = (magnitude - deadzone) / (1.0 - deadzone)
    return fraction if v > 0 else -fraction


def unshape_axis(fraction: float, deadzone: float) -> float:
    """Inverse of :func:`shape_axis`: the raw reading that gives ``fraction`` (clipped to [-1, 1])."""
    f = min(max(float(fraction), -1.0), 1.0)
    if f == 0.0:
        return 0.0
    raw = deadzone + abs(f) * (1.0 - deadzone)
    return raw if f > 0 else -raw


def check_axes(axes: Sequence[float], mapping: JoyMapping) -> None:
    """Raise InputError unless ``axes`` has every axis ``mapping`` reads."""
    needed = max(mapping.axes) + 1
    if len(axes) < needed:
        raise InputError(
            f"the joystick mapping reads axis {needed - 1} but the Joy message has {len(axes)} axes"
        )


def _clip(values: np.ndarray, mapping: JoyMapping) -> np.ndarray:
    if mapping.lower_limits:
        values = np.maximum(values, mapping.lower_limits)
    if mapping.upper_limits:
        values = np.minimum(values, mapping.upper_limits)
    return values


def target_from_axes(
    axes: Sequence[float],
    base: Sequence[float] | np.ndarray,
    mapping: JoyMapping,
    period_s: float | None = None,
) -> np.ndarray:
    """Return the target after one period of stick motion from ``base`` (float64, one per dimension).

    Args:
        axes: The Joy message's axes.
        base: The previous command (or the measured state when control was just taken).
        mapping: Which axis drives which dimension, with scale, deadzone and inversion.
        period_s: Integration period; the mapping's publish period when None.

    Raises:
        InputError: the message has fewer axes than the mapping reads or ``base`` has
            the wrong length (UnsafeInputError: a reading is not finite).
    """
    check_axes(axes, mapping)
    start = np.asarray(base, dtype=np.float64)
    if start.shape != (len(mapping.action_names),):
        raise InputError(f"base must have {len(mapping.action_names)} values, got shape {start.shape}")
    period = mapping.period_s if period_s is None else period_s
    out = start.copy()
    for i, (axis, scale, deadzone, invert) in enumerate(
        zip(mapping.axes, mapping.scales, mapping.deadzones, mapping.inverted, strict=True)
    ):
        raw = float(axes[axis])
        if not np.isfinite(raw):
            raise UnsafeInputError(f"Joy axis {axis} reads {raw}")
        fraction = shape_axis(-raw if invert else raw, deadzone)
        out[i] += fraction * scale * period
    return _clip(out, mapping)


def joy_buttons(
    mapping: JoyMapping,
    *,
    deadman: bool = False,
    requests: Sequence[EpisodeRequest] = (),
    num_buttons: int = 11,
) -> tuple[int, ...]:
    """Return a Joy ``buttons`` array with the deadman and the given episode buttons pressed.

    Raises:
        ConfigError: a requested button is unassigned in ``mapping``.
    """
    roles = mapping.buttons
    size = max(num_buttons, *(b + 1 for b in roles.values()))
    buttons = [0] * size
    if deadman:
        buttons[mapping.deadman_button] = 1
    for request in requests:
        index = roles[request.value]
        if index < 0:
            raise ConfigError(f"no button is assigned to {request.value}")
        buttons[index] = 1
    return tuple(buttons)


def joy_for_target(
    target: Sequence[float] | np.ndarray,
    current: Sequence[float] | np.ndarray,
    mapping: JoyMapping,
    period_s: float | None = None,
    *,
    num_axes: int = 8,
    num_buttons: int = 11,
) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """Return the Joy (axes, buttons) that move a command from ``current`` toward ``target``.

    The inverse of :func:`target_from_axes` with the deadman held: feeding the
    result back through the teleop path gives ``target`` again, except where
    the wanted speed exceeds a dimension's full-deflection scale (the axis
    saturates at ±1) or ``target`` lies beyond the mapping's limits. Unmapped
    axes read 0.

    Args:
        target: Wanted command after one period.
        current: The command the teleop path will integrate from.
        mapping: The joystick mapping in use.
        period_s: Integration period; the mapping's publish period when None.
        num_axes: Length of the axes array (at least the mapping's largest index + 1).
        num_buttons: Length of the buttons array (likewise).
    """
    wanted = np.asarray(target, dtype=np.float64) - np.asarray(current, dtype=np.float64)
    if wanted.shape != (len(mapping.action_names),):
        raise InputError(f"target and current must have {len(mapping.action_names)} values")
    period = mapping.period_s if period_s is None else period_s
    axes = [0.0] * max(num_axes, max(mapping.axes) + 1)
    for i, (axis, scale, deadzone, invert) in enumerate(
        zip(mapping.axes, mapping.scales, mapping.deadzones, mapping.inverted, strict=True)
    ):
        raw = unshape_axis(wanted[i] / (scale * period), deadzone)
        axes[axis] = -raw if invert else raw
    return tuple(axes), joy_buttons(mapping, deadman=True, num_buttons=num_buttons)

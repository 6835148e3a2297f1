"""What the robot side refuses to act on, in one place.

Every check here raises :class:`~sop_ros.core.errors.UnsafeInputError` with a
message that names the input, what was wrong with it and what the caller
does instead (the nodes hold and report the message on ``/diagnostics``).
Inputs: joint states (names, count, finiteness), camera images (encoding,
size, ``CompressedImage.format``, decoded depth and channels) and header
stamps (age within ``max_input_age_s`` and no further in the future than the
clock-skew tolerance). Output: :class:`ActionGuard`, the last check before a
command reaches the robot (finite, inside the joint limits, no larger step per
control period than allowed; out-of-limit commands are clipped or held, as
configured, and the verdict says which).

Clock skew: a header stamp comes from the publisher's clock and is compared
with the checking node's clock. On one machine the two agree; across machines
(a camera on its own computer) they differ by the synchronisation error, so a
stamp may lie up to ``max_clock_skew_s`` in the future and still be accepted.
Keep the robot's computers in NTP/PTP sync well below that tolerance; a stamp
further ahead means a wrong clock, and acting on it would make the input look
fresher than it is.

Pure functions and immutable values, no ROS: the nodes convert messages to
plain values and call these.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sop_ros.core.config import check_ranges, setting
from sop_ros.core.errors import ConfigError, UnsafeInputError

__all__ = [
    "COLOUR_ENCODINGS",
    "ActionGuard",
    "ActionGuardConfig",
    "GuardVerdict",
    "RecentFault",
    "check_compressed_format",
    "check_decoded_image",
    "check_finite",
    "check_stamp",
    "rgb_from_raw",
    "select_joints",
    "urdf_joint_limits",
]

# Raw Image encodings the policy takes (8 bits per channel, colour or grey): encoding -> channels.
COLOUR_ENCODINGS: Mapping[str, int] = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
_CODECS = ("jpeg", "jpg", "png")


def check_finite(what: str, values: Sequence[float] | np.ndarray, names: Sequence[str] = ()) -> np.ndarray:
    """Return ``values`` as float64; raise if any is NaN or infinite, naming the first ones.

    Args:
        what: The input, as the error message should call it.
        values: The numbers to check.
        names: Name of each value (e.g. joint names); indices are used when empty.
    """
    array = np.asarray(values, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        labels = [names[i] if i < len(names) else f"[{i}]" for i in bad[:4]]
        shown = ", ".join(f"{label}={array.flat[i]}" for label, i in zip(labels, bad[:4], strict=True))
        more = f" and {bad.size - 4} more" if bad.size > 4 else ""
        raise UnsafeInputError(f"{what} is not finite: {shown}{more}")
    return array


def select_joints(
    names: Sequence[str], positions: Sequence[float], wanted: Sequence[str], *, what: str = "joint_states"
) -> np.ndarray:
    """Positions of ``wanted`` joints, in that order, from a joint-state message's fields.

    Raises:
        UnsafeInputError: names and positions differ in count, a name repeats, a wanted
            joint is missing, or a wanted position is NaN or infinite.
    """
    if len(positions) != len(names):
        raise UnsafeInputError(f"{what} has {len(names)} names but {len(positions)} positions")
    index: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in index:
            raise UnsafeInputError(f"{what} names joint {name!r} twice")
        index[name] = i
    missing = [name for name in wanted if name not in index]
    if missing:
        raise UnsafeInputError(f"{what} lacks {', '.join(missing)}")
    picked = [positions[index[name]] for name in wanted]
    return check_finite(f"{what} position", picked, wanted)


def check_stamp(what: str, stamp_ns: int, now_ns: int, *, max_age_s: float, max_skew_s: float) -> float:
    """Return the age (s) of a header stamp; raise unless it is within the allowed window.

    A stamp is accepted when ``-max_skew_s <= now - stamp <= max_age_s``. See the
    module docstring for what the skew tolerance is for.

    Raises:
        UnsafeInputError: the stamp is zero (never set), too old, or too far in the future.
    """
    if stamp_ns <= 0:
        raise UnsafeInputError(f"{what} has no header stamp; cannot tell how old it is")
    age_s = (now_ns - stamp_ns) / 1e9
    if age_s > max_age_s:
        raise UnsafeInputError(f"{what} is stamped {age_s:.2f} s ago (limit {max_age_s:g} s)")
    if age_s < -max_skew_s:
        raise UnsafeInputError(
            f"{what} is stamped {-age_s:.2f} s in the future (clock-skew tolerance {max_skew_s:g} s)"
        )
    return age_s


def rgb_from_raw(what: str, encoding: str, height: int, width: int, step: int, data: bytes) -> np.ndarray:
    """A raw ``sensor_msgs/Image`` as uint8 RGB (H, W, 3), after checking every size it states.

    Raises:
        UnsafeInputError: an encoding other than 8-bit colour or grey, an empty image, a row
            step shorter than a row, or data shorter or longer than ``step × height``.
    """
    channels = COLOUR_ENCODINGS.get(encoding)
    if channels is None:
        raise UnsafeInputError(
            f"{what} has encoding {encoding!r}; the policy takes {', '.join(COLOUR_ENCODINGS)} or a JPEG/PNG"
        )
    if height <= 0 or width <= 0:
        raise UnsafeInputError(f"{what} is {width}×{height} pixels")
    if step < width * channels:
        raise UnsafeInputError(f"{what} rows are {step} bytes, shorter than {width} {encoding} pixels")
    if len(data) != step * height:
        raise UnsafeInputError(f"{what} carries {len(data)} bytes, not step {step} × height {height}")
    rows = np.frombuffer(data, np.uint8).reshape(height, step)[:, : width * channels]
    pixels = rows.reshape(height, width, channels)
    if encoding == "mono8":
        return np.repeat(pixels, 3, axis=2)
    rgb = pixels[..., :3]
    return (rgb[..., ::-1] if encoding.startswith("bgr") else rgb).copy()


def check_compressed_format(what: str, format_: str) -> str:
    """Return the codec (``jpeg`` or ``png``) of a colour ``CompressedImage``; raise for anything else.

    ``format`` is ``jpeg``/``png``, or image_transport's ``"<encoding>; <codec> compressed <…>"``
    where ``<encoding>`` is the original raw encoding. Depth images (``16UC1; png``,
    ``32FC1; compressedDepth``) must never be read as colour.

    Raises:
        UnsafeInputError: the format is empty, names another codec, or a non-colour original.
    """
    text = format_.strip().lower()
    if not text:
        raise UnsafeInputError(
            f"{what} has an empty format; expected e.g. 'jpeg' or 'bgr8; jpeg compressed bgr8'"
        )
    original, _, rest = text.partition(";") if ";" in text else ("", "", text)
    original = original.strip()
    if original and original not in COLOUR_ENCODINGS:
        raise UnsafeInputError(
            f"{what} has format {format_!r}: a {original} image is not a colour camera image"
        )
    codec = rest.split()[0] if rest.split() else ""
    if codec not in _CODECS:
        raise UnsafeInputError(f"{what} has format {format_!r}; the policy decodes jpeg or png only")
    return "jpeg" if codec == "jpg" else codec


def check_decoded_image(what: str, image: np.ndarray | None) -> np.ndarray:
    """Return ``image``; raise unless it is 8-bit with 1, 3 or 4 channels and not empty."""
    if image is None:
        raise UnsafeInputError(f"{what} cannot be decoded")
    if image.dtype != np.uint8:
        raise UnsafeInputError(f"{what} decodes to {image.dtype} pixels, not 8-bit colour")
    channels = 1 if image.ndim == 2 else image.shape[2] if image.ndim == 3 else 0
    if channels not in (1, 3, 4) or image.size == 0:
        raise UnsafeInputError(f"{what} decodes to shape {image.shape}, not an image")
    return image


def urdf_joint_limits(path: str | Path) -> dict[str, tuple[float, float]]:
    """Joint name -> (lower, upper) of every revolute or prismatic joint in a URDF.

    Continuous joints have no position limits and are left out.

    Raises:
        ConfigError: the file cannot be read or a limited joint lacks its bounds.
    """
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError) as err:
        raise ConfigError(f"cannot read joint limits from {path}: {err}") from None
    limits: dict[str, tuple[float, float]] = {}
    for joint in root.iter("joint"):
        if joint.get("type") not in ("revolute", "prismatic"):
            continue
        limit = joint.find("limit")
        lower = None if limit is None else limit.get("lower")
        upper = None if limit is None else limit.get("upper")
        try:
            if lower is None or upper is None:
                raise ValueError
            limits[joint.get("name", "")] = (float(lower), float(upper))
        except ValueError:
            raise ConfigError(f"{path}: joint {joint.get('name')!r} has no lower/upper limit") from None
    return limits


@dataclass(frozen=True, kw_only=True)
class ActionGuardConfig:
    """Limits every command obeys before it reaches the robot."""

    urdf_file: str = setting(
        "",
        "URDF whose joint limits bound the actions named like its joints; empty = none",
        read_only=True,
    )
    lower_limits: tuple[float, ...] = setting(
        (), "smallest command per action dimension (overrides the URDF); empty = URDF or none", unit="units"
    )
    upper_limits: tuple[float, ...] = setting(
        (), "largest command per action dimension (overrides the URDF); empty = URDF or none", unit="units"
    )
    max_steps: tuple[float, ...] = setting(
        (),
        "largest change per control period: one value for every dimension or one per dimension; "
        "empty = no limit",
        unit="units",
    )
    on_violation: str = setting(
        "clip",
        "an out-of-limit command or too-large step is clipped onto the limit, or the robot holds",
        choices=("clip", "hold"),
    )

    def __post_init__(self) -> None:
        check_ranges(self)
        for name in ("lower_limits", "upper_limits", "max_steps"):
            values = getattr(self, name)
            if any(math.isnan(v) for v in values):
                raise ConfigError(f"{name} must not hold NaN, got {values}")
        if any(v <= 0 for v in self.max_steps):
            raise ConfigError(f"max_steps must be > 0, got {self.max_steps}")


@dataclass(frozen=True, kw_only=True)
class GuardVerdict:
    """What the guard made of one command: the command to send (None: hold) and why."""

    action: np.ndarray | None
    # Empty when the command passed unchanged; otherwise what was wrong and what was done.
    reason: str = ""

    @property
    def clipped(self) -> bool:
        """True when the command was changed to fit the limits."""
        return self.action is not None and bool(self.reason)


class ActionGuard:
    """The last check on a command: finite, inside the limits, a bounded step from the last one.

    Args:
        names: Action dimension names, in order.
        config: Limits, step bound and what to do on a violation.
        urdf_limits: Joint limits by name (from :func:`urdf_joint_limits`), for dimensions
            without explicit limits.

    Raises:
        ConfigError: explicit limits or steps do not match the dimensions, a lower limit lies
            above its upper limit, or a URDF is given and some dimension has no limit.
    """

    def __init__(
        self,
        names: Sequence[str],
        config: ActionGuardConfig,
        urdf_limits: Mapping[str, tuple[float, float]] | None = None,
    ) -> None:
        n = len(names)
        self.names = tuple(names)
        self.config = config
        lower = np.full(n, -np.inf)
        upper = np.full(n, np.inf)
        if urdf_limits is not None:
            unknown = [name for name in names if name not in urdf_limits]
            if unknown and not (config.lower_limits and config.upper_limits):
                raise ConfigError(f"the URDF has no limits for {', '.join(unknown)}; give lower/upper_limits")
            for i, name in enumerate(names):
                lower[i], upper[i] = urdf_limits.get(name, (-np.inf, np.inf))
        for attr, target in (("lower_limits", lower), ("upper_limits", upper)):
            values = getattr(config, attr)
            if values:
                if len(values) != n:
                    raise ConfigError(f"{attr} has {len(values)} entries for {n} action dimensions")
                target[:] = values
        bad = [name for name, lo, hi in zip(names, lower, upper, strict=True) if lo > hi]
        if bad:
            raise ConfigError(f"lower limit above upper limit for {', '.join(bad)}")
        if len(config.max_steps) not in (0, 1, n):
            raise ConfigError(f"max_steps has {len(config.max_steps)} entries for {n} action dimensions")
        self.lower, self.upper = lower, upper
        self.max_steps = np.broadcast_to(np.asarray(config.max_steps or (np.inf,), np.float64), (n,))

    def check(self, action: Sequence[float] | np.ndarray, previous: np.ndarray | None) -> GuardVerdict:
        """Return what to send for ``action``, given the command sent before (None: no step check)."""
        values = np.asarray(action, dtype=np.float64)
        if values.shape != (len(self.names),):
            return GuardVerdict(
                action=None, reason=f"command has shape {values.shape}, not {len(self.names)} values; holding"
            )
        try:
            check_finite("command", values, self.names)
        except UnsafeInputError as err:
            return GuardVerdict(action=None, reason=f"{err}; holding")
        problems = self._outside(values, self.lower, self.upper, "limit")
        bounded = np.clip(values, self.lower, self.upper)
        if previous is not None:
            low, high = previous - self.max_steps, previous + self.max_steps
            problems += self._outside(bounded, low, high, "step from the last command")
            bounded = np.clip(bounded, np.maximum(low, self.lower), np.minimum(high, self.upper))
        if not problems:
            return GuardVerdict(action=values)
        detail = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        if self.config.on_violation == "hold":
            return GuardVerdict(action=None, reason=f"{detail}; holding")
        return GuardVerdict(action=bounded, reason=f"{detail}; clipped")

    def _outside(self, values: np.ndarray, low: np.ndarray, high: np.ndarray, what: str) -> list[str]:
        out = []
        for name, v, lo, hi in zip(self.names, values, low, high, strict=True):
            if v < lo:
                out.append(f"{name}={v:.4g} below {what} {lo:.4g}")
            elif v > hi:
                out.append(f"{name}={v:.4g} above {what} {hi:.4g}")
        return out


_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?|nan|inf", re.IGNORECASE)


class RecentFault:
    """The newest refusal, remembered for ``hold_s`` so a once-a-second status still shows it.

    A status built from it clears by itself once the bad input stops: errors are not sticky.

    Args:
        hold_s: How long a refusal stays reported after it last happened (s).
    """

    def __init__(self, hold_s: float = 2.0) -> None:
        self._hold_ns = round(hold_s * 1e9)
        self._reason = ""
        self._at_ns = 0
        self.count = 0

    def report(self, reason: str, now_ns: int) -> bool:
        """Remember ``reason``; return True when it is a new cause (log it then, not on every repeat).

        Reasons that differ only in their numbers ("stamped 10.03 s ago", "10.04 s ago")
        are one cause.
        """
        current = self.current(now_ns)
        new = _NUMBER.sub("#", reason) != _NUMBER.sub("#", current) if current else True
        self._reason, self._at_ns = reason, now_ns
        self.count += 1
        return new

    def clear(self) -> None:
        """Forget the refusal (its condition is known to be over)."""
        self._reason = ""

    def current(self, now_ns: int) -> str:
        """The refusal still being reported at ``now_ns``, or ""."""
        return self._reason if self._reason and now_ns - self._at_ns <= self._hold_ns else ""

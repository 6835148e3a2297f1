"""Every branch of the robot-side guards, on plain values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sop_ros.core.errors import ConfigError, UnsafeInputError
from sop_ros.core.guards import (
    ActionGuard,
    ActionGuardConfig,
    RecentFault,
    check_compressed_format,
    check_decoded_image,
    check_finite,
    check_stamp,
    rgb_from_raw,
    select_joints,
    urdf_joint_limits,
)

ROOT = Path(__file__).resolve().parents[3]
NAMES = ("ee_x", "ee_y", "gripper")
S = 1_000_000_000


def test_check_finite_names_the_bad_values() -> None:
    assert check_finite("x", [1, 2.5]).tolist() == [1.0, 2.5]
    with pytest.raises(UnsafeInputError, match=r"x is not finite: b=nan, \[2\]=-inf"):
        check_finite("x", [0.0, float("nan"), float("-inf")], ["a", "b"])
    with pytest.raises(UnsafeInputError, match="and 2 more"):
        check_finite("x", [float("inf")] * 6)


def test_select_joints_checks_names_count_and_finiteness() -> None:
    assert select_joints(["b", "a"], [2.0, 1.0], ["a", "b"]).tolist() == [1.0, 2.0]
    with pytest.raises(UnsafeInputError, match="2 names but 1 positions"):
        select_joints(["a", "b"], [1.0], ["a"])
    with pytest.raises(UnsafeInputError, match="names joint 'a' twice"):
        select_joints(["a", "a"], [1.0, 2.0], ["a"])
    with pytest.raises(UnsafeInputError, match="lacks c"):
        select_joints(["a", "b"], [1.0, 2.0], ["a", "c"])
    with pytest.raises(UnsafeInputError, match="position is not finite: a=inf"):
        select_joints(["a", "b"], [float("inf"), 2.0], ["a"])
    # A NaN in a joint nobody reads is no reason to refuse the others.
    assert select_joints(["a", "b"], [1.0, float("nan")], ["a"]).tolist() == [1.0]


def test_check_stamp_accepts_a_window_around_now() -> None:
    now = 100 * S
    assert check_stamp("f", now - S // 10, now, max_age_s=0.5, max_skew_s=0.1) == pytest.approx(0.1)
    assert check_stamp("f", now + S // 20, now, max_age_s=0.5, max_skew_s=0.1) == pytest.approx(-0.05)
    with pytest.raises(UnsafeInputError, match="no header stamp"):
        check_stamp("f", 0, now, max_age_s=0.5, max_skew_s=0.1)
    with pytest.raises(UnsafeInputError, match=r"stamped 10\.00 s ago"):
        check_stamp("f", now - 10 * S, now, max_age_s=0.5, max_skew_s=0.1)
    with pytest.raises(UnsafeInputError, match=r"10\.00 s in the future"):
        check_stamp("f", now + 10 * S, now, max_age_s=0.5, max_skew_s=0.1)


def test_rgb_from_raw_checks_every_size() -> None:
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    assert np.array_equal(rgb_from_raw("i", "rgb8", 2, 3, 9, rgb.tobytes()), rgb)
    assert np.array_equal(rgb_from_raw("i", "bgr8", 2, 3, 9, rgb[..., ::-1].tobytes()), rgb)
    padded = np.zeros((2, 16), np.uint8)
    padded[:, :12] = np.dstack([rgb, np.full((2, 3, 1), 255, np.uint8)]).reshape(2, 12)
    assert np.array_equal(rgb_from_raw("i", "rgba8", 2, 3, 16, padded.tobytes()), rgb)
    bgra = np.dstack([rgb[..., ::-1], np.zeros((2, 3, 1), np.uint8)])
    assert np.array_equal(rgb_from_raw("i", "bgra8", 2, 3, 12, bgra.tobytes()), rgb)
    grey = rgb_from_raw("i", "mono8", 1, 2, 2, bytes([7, 9]))
    assert grey.shape == (1, 2, 3) and grey[0, 1].tolist() == [9, 9, 9]
    with pytest.raises(UnsafeInputError, match="encoding '16UC1'"):
        rgb_from_raw("i", "16UC1", 1, 1, 2, b"\0\0")
    with pytest.raises(UnsafeInputError, match="0×2 pixels"):
        rgb_from_raw("i", "rgb8", 2, 0, 0, b"")
    with pytest.raises(UnsafeInputError, match="rows are 6 bytes, shorter than 3"):
        rgb_from_raw("i", "rgb8", 2, 3, 6, bytes(12))
    with pytest.raises(UnsafeInputError, match="carries 17 bytes, not step 9 × height 2"):
        rgb_from_raw("i", "rgb8", 2, 3, 9, bytes(17))
    with pytest.raises(UnsafeInputError, match="carries 19 bytes"):
        rgb_from_raw("i", "rgb8", 2, 3, 9, bytes(19))


@pytest.mark.parametrize(
    ("format_", "codec"),
    [
        ("jpeg", "jpeg"),
        ("JPG", "jpeg"),
        ("png", "png"),
        ("bgr8; jpeg compressed bgr8", "jpeg"),
        ("rgb8; png compressed rgb8", "png"),
        ("mono8; jpeg compressed mono8", "jpeg"),
    ],
)
def test_colour_formats_are_accepted(format_: str, codec: str) -> None:
    assert check_compressed_format("i", format_) == codec


@pytest.mark.parametrize(
    ("format_", "match"),
    [
        ("", "empty format"),
        ("16UC1; png compressed", "16uc1 image is not a colour"),
        ("32FC1; compressedDepth png", "32fc1 image is not a colour"),
        ("bmp", "jpeg or png only"),
        ("bgr8;", "jpeg or png only"),
    ],
)
def test_other_formats_are_refused(format_: str, match: str) -> None:
    with pytest.raises(UnsafeInputError, match=match):
        check_compressed_format("i", format_)


def test_decoded_images_must_be_8_bit_pictures() -> None:
    check_decoded_image("i", np.zeros((2, 2), np.uint8))
    check_decoded_image("i", np.zeros((2, 2, 4), np.uint8))
    with pytest.raises(UnsafeInputError, match="cannot be decoded"):
        check_decoded_image("i", None)
    with pytest.raises(UnsafeInputError, match="uint16 pixels"):
        check_decoded_image("i", np.zeros((2, 2), np.uint16))
    with pytest.raises(UnsafeInputError, match="shape"):
        check_decoded_image("i", np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(UnsafeInputError, match="shape"):
        check_decoded_image("i", np.zeros((0, 2, 3), np.uint8))


def test_urdf_limits_of_the_g1(tmp_path: Path) -> None:
    limits = urdf_joint_limits(ROOT / "urdf" / "agibot_g1.urdf")
    assert limits["idx02_body_joint2"] == (0.0, pytest.approx(1.5707963267948966))
    assert all(lo < hi for lo, hi in limits.values())
    with pytest.raises(ConfigError, match="cannot read joint limits"):
        urdf_joint_limits(tmp_path / "missing.urdf")
    broken = tmp_path / "broken.urdf"
    broken.write_text('<robot name="r"><joint name="j" type="revolute"><limit effort="1"/></joint></robot>')
    with pytest.raises(ConfigError, match="joint 'j' has no lower/upper limit"):
        urdf_joint_limits(broken)
    free = tmp_path / "free.urdf"
    free.write_text(
        '<robot name="r"><joint name="c" type="continuous"/><joint name="f" type="fixed"/></robot>'
    )
    assert urdf_joint_limits(free) == {}


def guard(**settings) -> ActionGuard:
    config = ActionGuardConfig(lower_limits=(0.0, 0.0, 0.0), upper_limits=(0.5, 0.5, 0.08), **settings)
    return ActionGuard(NAMES, config)


def test_guard_passes_a_good_command_unchanged() -> None:
    verdict = guard(max_steps=(0.1,)).check([0.1, 0.2, 0.03], np.array([0.1, 0.2, 0.03]))
    assert verdict.action.tolist() == [0.1, 0.2, 0.03] and verdict.reason == "" and not verdict.clipped


def test_guard_holds_on_non_finite_or_misshapen_commands_whatever_the_mode() -> None:
    for mode in ("clip", "hold"):
        verdict = guard(on_violation=mode).check([0.1, float("nan"), 0.0], None)
        assert verdict.action is None and "ee_y=nan" in verdict.reason and verdict.reason.endswith("holding")
    verdict = guard().check([0.1, 0.2], None)
    assert verdict.action is None and "not 3 values" in verdict.reason


def test_guard_clips_or_holds_outside_the_limits() -> None:
    verdict = guard().check([0.7, -0.1, 0.03], None)
    assert verdict.clipped and verdict.action.tolist() == [0.5, 0.0, 0.03]
    assert "ee_x=0.7 above limit 0.5" in verdict.reason and "ee_y=-0.1 below limit 0" in verdict.reason
    assert verdict.reason.endswith("clipped")
    held = guard(on_violation="hold").check([0.7, 0.2, 0.03], None)
    assert held.action is None and held.reason.endswith("holding")


def test_guard_bounds_the_step_from_the_last_command() -> None:
    previous = np.array([0.1, 0.1, 0.0])
    verdict = guard(max_steps=(0.05,)).check([0.3, 0.02, 0.01], previous)
    assert verdict.action.tolist() == pytest.approx([0.15, 0.05, 0.01])
    assert "ee_x=0.3 above step from the last command 0.15" in verdict.reason
    per_dim = guard(max_steps=(0.5, 0.5, 0.001)).check([0.3, 0.02, 0.01], previous)
    assert per_dim.action.tolist() == pytest.approx([0.3, 0.02, 0.001])
    assert guard(max_steps=(0.05,), on_violation="hold").check([0.3, 0.1, 0.0], previous).action is None
    # No previous command (after an episode boundary): only the limits apply.
    assert guard(max_steps=(0.05,)).check([0.3, 0.02, 0.01], None).reason == ""


def test_guard_lists_at_most_three_problems() -> None:
    names = tuple(f"j{i}" for i in range(5))
    config = ActionGuardConfig(lower_limits=(0.0,) * 5, upper_limits=(1.0,) * 5)
    verdict = ActionGuard(names, config).check([2.0] * 5, None)
    assert "and 2 more" in verdict.reason


def test_guard_takes_urdf_limits_and_checks_its_settings() -> None:
    urdf = {"a": (-1.0, 1.0), "b": (0.0, 2.0)}
    guard_ab = ActionGuard(("a", "b"), ActionGuardConfig(), urdf)
    assert guard_ab.check([1.5, -1.0], None).action.tolist() == [1.0, 0.0]
    explicit = ActionGuard(("a", "b"), ActionGuardConfig(upper_limits=(0.5, 0.5)), urdf)
    assert explicit.check([1.5, 1.5], None).action.tolist() == [0.5, 0.5]
    no_limits = ActionGuard(("a",), ActionGuardConfig())
    assert no_limits.check([1e9], None).reason == ""
    with pytest.raises(ConfigError, match="URDF has no limits for c"):
        ActionGuard(("a", "c"), ActionGuardConfig(), urdf)
    with pytest.raises(ConfigError, match="lower_limits has 1 entries for 2"):
        ActionGuard(("a", "b"), ActionGuardConfig(lower_limits=(0.0,)))
    with pytest.raises(ConfigError, match="lower limit above upper limit for a"):
        ActionGuard(("a",), ActionGuardConfig(lower_limits=(1.0,), upper_limits=(0.0,)))
    with pytest.raises(ConfigError, match="max_steps has 2 entries for 3"):
        ActionGuard(NAMES, ActionGuardConfig(max_steps=(0.1, 0.1)))
    with pytest.raises(ConfigError, match="max_steps must be > 0"):
        ActionGuardConfig(max_steps=(0.0,))
    with pytest.raises(ConfigError, match="must not hold NaN"):
        ActionGuardConfig(upper_limits=(float("nan"),))
    with pytest.raises(ConfigError, match="on_violation must be one of"):
        ActionGuardConfig(on_violation="ignore")


def test_recent_fault_reports_new_reasons_and_clears_by_itself() -> None:
    fault = RecentFault(hold_s=1.0)
    assert fault.current(0) == ""
    assert fault.report("nan", 10 * S) is True
    assert fault.report("nan", 10 * S + 1) is False  # a repeat: not logged again
    assert fault.report("stamped 10.03 s ago", 10 * S + 2) is True
    assert fault.report("stamped 10.04 s ago", 10 * S + 3) is False  # the same cause, other numbers
    assert fault.report("nan", 10 * S + 4) is True
    assert fault.current(11 * S) == "nan" and fault.count == 5
    assert fault.current(12 * S) == ""  # the bad input stopped: the report clears
    assert fault.report("nan", 12 * S) is True
    fault.clear()
    assert fault.current(12 * S) == ""

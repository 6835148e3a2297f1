"""Joystick mapping, its inverse, and the hold-to-enable state machine."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from sop_ros.core.errors import ConfigError, InputError, UnsafeInputError
from sop_ros.core.teleop import (
    MAX_TICK_PERIODS,
    TRANSITIONS,
    EpisodeButton,
    EpisodeRequest,
    HandBack,
    HandBackReason,
    JoyMapping,
    JoySample,
    TakeOver,
    TeleopCommand,
    TeleopPhase,
    TeleopStateMachine,
    Trigger,
    joy_buttons,
    joy_for_target,
    load_joy_mapping,
    shape_axis,
    target_from_axes,
    unshape_axis,
)

ROOT = Path(__file__).resolve().parents[3]
DEADZONES = (0.0, 0.05, 0.1, 0.5, 0.9)
# Unlimited, so tests of the integration itself are not masked by clipping.
FREE = JoyMapping(lower_limits=(), upper_limits=())
MS = 1_000_000


# --- shaping -----------------------------------------------------------------


@pytest.mark.parametrize("deadzone", DEADZONES)
def test_inside_the_deadzone_the_stick_does_nothing(deadzone: float) -> None:
    for value in (0.0, deadzone / 2, deadzone, -deadzone / 2, -deadzone):
        assert shape_axis(value, deadzone) == 0.0


@pytest.mark.parametrize("deadzone", DEADZONES)
def test_output_is_continuous_at_the_deadzone_edge(deadzone: float) -> None:
    eps = 1e-9
    assert 0.0 < shape_axis(deadzone + eps, deadzone) < 1e-8
    assert -1e-8 < shape_axis(-deadzone - eps, deadzone) < 0.0


@pytest.mark.parametrize("deadzone", DEADZONES)
def test_full_deflection_is_full_speed_and_overshoot_saturates(deadzone: float) -> None:
    assert shape_axis(1.0, deadzone) == pytest.approx(1.0)
    assert shape_axis(-1.0, deadzone) == pytest.approx(-1.0)
    assert shape_axis(1.3, deadzone) == pytest.approx(1.0)
    assert shape_axis(-7.0, deadzone) == pytest.approx(-1.0)


@pytest.mark.parametrize("deadzone", DEADZONES)
def test_shaping_is_odd_monotonic_and_linear_past_the_deadzone(deadzone: float) -> None:
    values = np.linspace(-1.0, 1.0, 401)
    shaped = np.array([shape_axis(v, deadzone) for v in values])
    assert np.all(np.diff(shaped) >= 0.0)
    np.testing.assert_allclose(shaped, -shaped[::-1], atol=1e-12)
    outside = np.abs(values) > deadzone
    expected = np.sign(values) * (np.abs(values) - deadzone) / (1.0 - deadzone)
    np.testing.assert_allclose(shaped[outside], expected[outside], atol=1e-12)


@pytest.mark.parametrize("deadzone", DEADZONES)
def test_unshape_inverts_shape(deadzone: float) -> None:
    for fraction in np.linspace(-1.0, 1.0, 81):
        raw = unshape_axis(fraction, deadzone)
        assert abs(raw) <= 1.0
        assert shape_axis(raw, deadzone) == pytest.approx(fraction, abs=1e-12)
    assert unshape_axis(0.0, deadzone) == 0.0
    assert unshape_axis(2.0, deadzone) == pytest.approx(1.0)
    assert unshape_axis(-2.0, deadzone) == pytest.approx(-1.0)


# --- target_from_axes --------------------------------------------------------


def axes_with(**values: float) -> list[float]:
    axes = [0.0] * 8
    for key, value in values.items():
        axes[int(key[1:])] = value
    return axes


def test_centred_sticks_hold_the_previous_command() -> None:
    base = (0.2, 0.3, 0.04)
    np.testing.assert_array_equal(target_from_axes(axes_with(), base, FREE), base)
    # Small stick noise inside the deadzone holds it too.
    np.testing.assert_array_equal(target_from_axes(axes_with(a0=0.05, a1=-0.09, a4=0.1), base, FREE), base)


def test_full_deflection_moves_scale_times_period_per_tick() -> None:
    m = FREE
    out = target_from_axes(axes_with(a0=-1.0, a1=1.0, a4=-1.0), (0.2, 0.3, 0.04), m)
    # Axis 0 is inverted: pushing right (-1) moves +x.
    np.testing.assert_allclose(out, (0.2 + 0.25 / 30, 0.3 + 0.25 / 30, 0.04 - 0.5 / 30))


def test_explicit_period_overrides_the_publish_period() -> None:
    out = target_from_axes(axes_with(a1=1.0), (0.0, 0.0, 0.0), FREE, period_s=0.1)
    assert out[1] == pytest.approx(0.025)


@pytest.mark.parametrize("invert", [False, True])
def test_inversion_flips_the_direction(invert: bool) -> None:
    m = dataclasses.replace(FREE, inverted=(invert, invert, invert))
    out = target_from_axes(axes_with(a0=0.55, a1=0.55, a4=0.55), (0.0, 0.0, 0.0), m)
    sign = -1.0 if invert else 1.0
    expected = sign * 0.5 * np.array(m.scales) * m.period_s
    np.testing.assert_allclose(out, expected)


def test_targets_are_clipped_to_the_limits() -> None:
    m = JoyMapping()  # limits 0..0.5, 0..0.5, 0..0.08
    high = target_from_axes(axes_with(a0=-1.0, a1=1.0, a4=1.0), (0.499, 0.5, 0.08), m)
    np.testing.assert_allclose(high, (0.5, 0.5, 0.08))
    low = target_from_axes(axes_with(a0=1.0, a1=-1.0, a4=-1.0), (0.001, 0.0, 0.0), m)
    np.testing.assert_allclose(low, (0.0, 0.0, 0.0))
    # Without limits the same input goes past them.
    free = target_from_axes(axes_with(a0=1.0, a1=-1.0, a4=-1.0), (0.001, 0.0, 0.0), FREE)
    assert np.all(free < 0.0)


def test_bad_joy_input_is_rejected_with_a_reason() -> None:
    with pytest.raises(InputError, match="axis 4"):
        target_from_axes([0.0, 0.0], (0.0, 0.0, 0.0), FREE)
    with pytest.raises(UnsafeInputError, match="axis 1 reads nan"):
        target_from_axes(axes_with(a1=math.nan), (0.0, 0.0, 0.0), FREE)
    with pytest.raises(InputError, match="base must have 3"):
        target_from_axes(axes_with(), (0.0, 0.0), FREE)


# --- mapping config ----------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"axes": (0, 1)}, "axes has 2 entries"),
        ({"scales": (0.1, 0.1, 0.0)}, "scales must be > 0"),
        ({"deadzones": (0.1, 1.0, 0.1)}, "deadzones"),
        ({"deadzones": (0.1, -0.1, 0.1)}, "deadzones"),
        ({"axes": (0, -1, 4)}, "axis indices"),
        ({"axes": (0, 1.5, 4)}, "axes must be integers"),
        ({"inverted": (True, "yes", False)}, "inverted"),
        ({"lower_limits": (0.0, 0.0)}, "lower_limits must be empty or have 3"),
        ({"lower_limits": (0.0, 0.6, 0.0)}, "lower limit above upper limit for ee_y"),
        ({"success_button": 4}, "one button has two meanings"),
        ({"deadman_button": -1}, "deadman_button must be >= 0"),
        ({"publish_rate_hz": 0.5}, "publish_rate_hz"),
        ({"action_names": ()}, "at least one action dimension"),
    ],
)
def test_bad_mappings_are_refused(change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        JoyMapping(**change)


def test_unassigned_episode_buttons_are_allowed() -> None:
    m = JoyMapping(start_button=-1, abort_button=-1)
    assert m.buttons["start"] == -1
    with pytest.raises(ConfigError, match="no button is assigned to abort"):
        joy_buttons(m, requests=(EpisodeRequest.ABORT,))


def test_timing_follows_the_publish_rate() -> None:
    m = JoyMapping(publish_rate_hz=20.0, hand_back_timeout_periods=4)
    assert m.period_s == pytest.approx(0.05)
    assert m.timeout_ns == 200 * MS


def test_shipped_yaml_is_the_default_mapping() -> None:
    assert load_joy_mapping(ROOT / "config" / "joystick.yaml") == JoyMapping()


def test_flat_dict_and_partial_limits() -> None:
    m = JoyMapping.from_dict(
        {
            "dimensions": [
                {"name": "a", "axis": 3, "scale": 2},
                {"name": "b", "axis": 2, "scale": 1.0, "deadzone": 0.2, "invert": True, "high": 1.0},
            ],
            "publish_rate_hz": 50,
            "abort_button": -1,
        }
    )
    assert m.action_names == ("a", "b")
    assert m.scales == (2.0, 1.0)
    assert m.deadzones == (0.1, 0.2)
    assert m.inverted == (False, True)
    assert m.lower_limits == ()
    assert m.upper_limits == (math.inf, 1.0)
    assert m.publish_rate_hz == 50.0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"dimensions": [{"name": "a", "axis": 0}]}, "missing \\['scale'\\]"),
        ({"dimensions": [{"name": "a", "axis": 0, "scale": 1, "gain": 2}]}, "unknown \\['gain'\\]"),
        ({"dimensions": []}, "non-empty list"),
        ({"dimensions": ["a"]}, "must be a mapping"),
        ({"deadman": 3}, "unknown settings.*deadman"),
        ({"publish_rate_hz": "fast"}, "publish_rate_hz must be float"),
    ],
)
def test_bad_yaml_dicts_are_refused(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        JoyMapping.from_dict(data)


def test_unreadable_yaml_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_joy_mapping(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping at top level"):
        load_joy_mapping(tmp_path / "list.yaml")
    (tmp_path / "bad.yaml").write_text("deadman_button: 99\nsuccess_button: 99\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: one button has two meanings"):
        load_joy_mapping(tmp_path / "bad.yaml")


# --- joy_for_target ----------------------------------------------------------


def test_round_trip_reproduces_reachable_targets() -> None:
    rng = np.random.default_rng(0)
    m = FREE
    reach = np.array(m.scales) * m.period_s
    for _ in range(500):
        current = rng.uniform(-1.0, 1.0, size=3)
        target = current + rng.uniform(-1.0, 1.0, size=3) * reach
        axes, _ = joy_for_target(target, current, m)
        # Joy carries float32 axes.
        axes32 = np.asarray(axes, dtype=np.float32).tolist()
        np.testing.assert_allclose(target_from_axes(axes32, current, m), target, atol=1e-7)
        assert all(-1.0 <= a <= 1.0 for a in axes)


def test_round_trip_saturates_beyond_reach_and_clips_at_limits() -> None:
    m = JoyMapping()
    current = (0.25, 0.25, 0.04)
    axes, _ = joy_for_target((0.45, 0.05, 0.04), current, m)
    out = target_from_axes(axes, current, m)
    step = 0.25 * m.period_s
    np.testing.assert_allclose(out, (0.25 + step, 0.25 - step, 0.04))
    axes, _ = joy_for_target((0.51, 0.25, 0.09), (0.5, 0.25, 0.08), m)
    np.testing.assert_allclose(target_from_axes(axes, (0.5, 0.25, 0.08), m), (0.5, 0.25, 0.08))


def test_joy_for_target_presses_only_the_deadman_and_leaves_other_axes_centred() -> None:
    m = JoyMapping()
    axes, buttons = joy_for_target((0.26, 0.25, 0.05), (0.25, 0.25, 0.04), m)
    assert len(axes) == 8 and len(buttons) == 11
    assert [i for i, b in enumerate(buttons) if b] == [m.deadman_button]
    assert [i for i, a in enumerate(axes) if a != 0.0] == [0, 4]
    assert axes[0] < 0.0  # +x on an inverted axis is a push to the right
    wide_axes, wide_buttons = joy_for_target((0, 0, 0), (0, 0, 0), m, num_axes=2, num_buttons=3)
    assert len(wide_axes) == 5 and len(wide_buttons) == 8  # grown to fit the mapping


def test_joy_buttons_presses_the_requested_roles() -> None:
    m = JoyMapping()
    buttons = joy_buttons(m, deadman=True, requests=(EpisodeRequest.SUCCESS, EpisodeRequest.START))
    assert {i for i, b in enumerate(buttons) if b} == {m.deadman_button, m.success_button, m.start_button}


# --- state machine -----------------------------------------------------------


def joy(t_ms: int, *, deadman: bool = False, requests: tuple = (), **axes: float) -> JoySample:
    return JoySample(
        axes=axes_with(**axes),
        buttons=joy_buttons(JoyMapping(), deadman=deadman, requests=requests),
        stamp_ns=t_ms * MS,
    )


STATE = (0.2, 0.3, 0.04)


def test_transition_table_covers_every_phase_and_trigger() -> None:
    assert set(TRANSITIONS) == {(p, t) for p in TeleopPhase for t in Trigger}


def test_idle_machine_sends_nothing() -> None:
    sm = TeleopStateMachine(JoyMapping())
    assert sm.on_tick(0, STATE) == ()
    assert sm.on_joy(joy(0, a1=1.0)) == ()
    assert sm.on_tick(10 * MS, STATE) == ()
    assert sm.phase is TeleopPhase.IDLE


def test_deadman_takes_over_commands_integrate_and_release_hands_back() -> None:
    m = JoyMapping()
    sm = TeleopStateMachine(m)
    assert sm.on_joy(joy(0, deadman=True, a1=1.0)) == (TakeOver(stamp_ns=0),)
    assert sm.phase is TeleopPhase.ACTIVE
    step = 0.25 * m.period_s
    (first,) = sm.on_tick(10 * MS, STATE)
    assert isinstance(first, TeleopCommand)
    np.testing.assert_allclose(first.action, (0.2, 0.3 + step, 0.04))
    # The next command builds on the previous one, not on the (lagging) measured state.
    (second,) = sm.on_tick(10 * MS + round(m.period_s * 1e9), STATE)
    np.testing.assert_allclose(second.action, (0.2, 0.3 + 2 * step, 0.04))
    assert sm.last_command == second.action
    assert sm.on_joy(joy(50)) == (HandBack(stamp_ns=50 * MS, reason=HandBackReason.RELEASED),)
    assert sm.phase is TeleopPhase.IDLE
    assert sm.last_command is None
    assert sm.on_tick(60 * MS, STATE) == ()


def test_a_late_tick_integrates_the_time_that_passed_but_a_stall_does_not_jump() -> None:
    m = JoyMapping()
    sm = TeleopStateMachine(m)
    sm.on_joy(joy(0, deadman=True, a1=1.0))
    (start,) = sm.on_tick(0, STATE)
    # The timer fired three periods late (a loaded computer): the stick moved the command as far.
    (late,) = sm.on_tick(3 * round(m.period_s * 1e9), STATE)
    assert late.action[1] - start.action[1] == pytest.approx(3 * 0.25 * m.period_s)
    sm.on_joy(joy(3 * round(m.period_s * 1e9) + 1, deadman=True, a1=1.0))
    (stalled,) = sm.on_tick(3 * round(m.period_s * 1e9) + m.timeout_ns, STATE)
    assert stalled.action[1] - late.action[1] <= MAX_TICK_PERIODS * 0.25 * m.period_s + 1e-12


def test_a_new_takeover_starts_from_the_measured_state() -> None:
    sm = TeleopStateMachine(JoyMapping())
    sm.on_joy(joy(0, deadman=True, a1=1.0))
    sm.on_tick(10 * MS, STATE)
    sm.on_joy(joy(20))
    sm.on_joy(joy(30, deadman=True))
    (command,) = sm.on_tick(40 * MS, (0.1, 0.1, 0.0))
    assert command.action == pytest.approx((0.1, 0.1, 0.0))


def test_joy_silence_hands_back_after_the_timeout() -> None:
    m = JoyMapping()  # 5 periods at 30 Hz
    sm = TeleopStateMachine(m)
    sm.on_joy(joy(0, deadman=True))
    (at_limit,) = sm.on_tick(m.timeout_ns, STATE)
    assert isinstance(at_limit, TeleopCommand)
    assert sm.on_tick(m.timeout_ns + 1, STATE) == (
        HandBack(stamp_ns=m.timeout_ns + 1, reason=HandBackReason.TIMEOUT),
    )
    assert sm.phase is TeleopPhase.IDLE
    assert sm.on_tick(m.timeout_ns + 2, STATE) == ()


def test_after_a_timeout_a_still_held_deadman_needs_a_fresh_press() -> None:
    m = JoyMapping()
    sm = TeleopStateMachine(m)
    sm.on_joy(joy(0, deadman=True))
    sm.on_tick(m.timeout_ns + 1, STATE)
    t = m.timeout_ns // MS + 10
    assert sm.on_joy(joy(t, deadman=True)) == ()
    assert sm.phase is TeleopPhase.IDLE
    assert sm.on_joy(joy(t + 10)) == ()
    assert sm.on_joy(joy(t + 20, deadman=True)) == (TakeOver(stamp_ns=(t + 20) * MS),)


def test_regular_joy_messages_keep_control() -> None:
    m = JoyMapping()
    sm = TeleopStateMachine(m)
    sm.on_joy(joy(0, deadman=True))
    for k in range(1, 40):
        sm.on_joy(joy(k * 50, deadman=True))  # 20 Hz autorepeat, slower than the 30 Hz ticks
        (out,) = sm.on_tick(k * 50 * MS + 40 * MS, STATE)
        assert isinstance(out, TeleopCommand)


def test_late_out_of_order_joy_does_not_rewind_the_timeout() -> None:
    m = JoyMapping()
    sm = TeleopStateMachine(m)
    sm.on_joy(joy(100, deadman=True))
    sm.on_joy(joy(50, deadman=True))
    (out,) = sm.on_tick(100 * MS + m.timeout_ns, STATE)
    assert isinstance(out, TeleopCommand)


@pytest.mark.parametrize("request_", list(EpisodeRequest))
@pytest.mark.parametrize("deadman", [False, True])
def test_each_episode_button_fires_once_per_press(request_: EpisodeRequest, deadman: bool) -> None:
    sm = TeleopStateMachine(JoyMapping())
    sm.on_joy(joy(0, deadman=deadman))
    fired = sm.on_joy(joy(10, deadman=deadman, requests=(request_,)))
    assert fired == (EpisodeButton(stamp_ns=10 * MS, request=request_),)
    for t in (20, 30, 40):  # held: no repeats
        assert sm.on_joy(joy(t, deadman=deadman, requests=(request_,))) == ()
    assert sm.on_joy(joy(50, deadman=deadman)) == ()
    assert sm.on_joy(joy(60, deadman=deadman, requests=(request_,))) == (
        EpisodeButton(stamp_ns=60 * MS, request=request_),
    )


def test_simultaneous_presses_all_fire_after_the_phase_change() -> None:
    sm = TeleopStateMachine(JoyMapping())
    out = sm.on_joy(joy(0, deadman=True, requests=(EpisodeRequest.START, EpisodeRequest.ABORT)))
    assert out == (
        TakeOver(stamp_ns=0),
        EpisodeButton(stamp_ns=0, request=EpisodeRequest.START),
        EpisodeButton(stamp_ns=0, request=EpisodeRequest.ABORT),
    )
    out = sm.on_joy(joy(10, requests=(EpisodeRequest.START, EpisodeRequest.SUCCESS)))
    assert out == (
        HandBack(stamp_ns=10 * MS, reason=HandBackReason.RELEASED),
        EpisodeButton(stamp_ns=10 * MS, request=EpisodeRequest.SUCCESS),
    )


def test_buttons_not_in_the_mapping_do_nothing() -> None:
    sm = TeleopStateMachine(JoyMapping(start_button=-1))
    buttons = [1] * 11
    buttons[JoyMapping().deadman_button] = 0
    out = sm.on_joy(JoySample(axes=axes_with(), buttons=buttons, stamp_ns=0))
    assert {o.request for o in out} == {EpisodeRequest.SUCCESS, EpisodeRequest.FAILURE, EpisodeRequest.ABORT}


def test_short_joy_messages_are_refused() -> None:
    sm = TeleopStateMachine(JoyMapping())
    with pytest.raises(InputError, match="button 7"):
        sm.on_joy(JoySample(axes=axes_with(), buttons=(0,) * 5, stamp_ns=0))
    with pytest.raises(InputError, match="axis 4"):
        sm.on_joy(JoySample(axes=(0.0,) * 3, buttons=(0,) * 11, stamp_ns=0))
    assert sm.phase is TeleopPhase.IDLE


def test_a_nan_axis_gives_no_command_hands_back_and_needs_a_fresh_press() -> None:
    sm = TeleopStateMachine(JoyMapping())
    sm.on_joy(joy(0, deadman=True, a1=1.0))
    sm.on_tick(10 * MS, STATE)
    with pytest.raises(UnsafeInputError, match="axis 1=nan"):
        sm.on_joy(joy(20, deadman=True, a1=math.nan))
    assert sm.refuse(20 * MS) == (HandBack(stamp_ns=20 * MS, reason=HandBackReason.BAD_INPUT),)
    assert sm.phase is TeleopPhase.IDLE and sm.on_tick(30 * MS, STATE) == ()
    assert sm.refuse(31 * MS) == ()  # nothing to hand back while idle
    assert sm.on_joy(joy(40, deadman=True, a1=1.0)) == ()  # still held: not a fresh press
    sm.on_joy(joy(50))
    assert sm.on_joy(joy(60, deadman=True)) == (TakeOver(stamp_ns=60 * MS),)


def test_a_takeover_never_integrates_from_a_state_that_is_not_finite() -> None:
    sm = TeleopStateMachine(JoyMapping())
    sm.on_joy(joy(0, deadman=True, a1=1.0))
    with pytest.raises(UnsafeInputError, match="joint state is not finite"):
        sm.on_tick(10 * MS, (0.2, math.inf, 0.04))


def test_commands_respect_limits() -> None:
    sm = TeleopStateMachine(JoyMapping())
    sm.on_joy(joy(0, deadman=True, a0=-1.0, a4=1.0))
    for k in range(1, 5):
        (out,) = sm.on_tick(k * MS, (0.495, 0.2, 0.07))
    assert out.action == pytest.approx((0.5, 0.2, 0.08))


def test_outputs_are_immutable() -> None:
    sm = TeleopStateMachine(JoyMapping())
    (take_over,) = sm.on_joy(joy(0, deadman=True))
    (command,) = sm.on_tick(MS, STATE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        take_over.stamp_ns = 5  # type: ignore[misc]
    assert isinstance(command.action, tuple)

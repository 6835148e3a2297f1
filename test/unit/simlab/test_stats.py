"""Wilson intervals and the MOVER intervals of changes and means, against values worked by hand."""

from __future__ import annotations

import math

import pytest

from sop_ros.simlab.stats import Rate, mean_change, mean_rate, wilson


def test_wilson_matches_the_closed_form_and_stays_inside_zero_one() -> None:
    # 5 of 10: centre 0.5, half-width 1.96·√(0.025 + 0.0096)/1.384 = 0.2366 (Wilson 1927).
    low, high = wilson(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-4) and high == pytest.approx(0.7634, abs=1e-4)
    # None of 20: the interval still says up to 16 %, where p ± 1.96·√(p(1−p)/n) would say 0.
    low, high = wilson(0, 20)
    assert low == 0.0 and high == pytest.approx(0.1611, abs=1e-4)
    assert wilson(20, 20)[1] == 1.0 and wilson(20, 20)[0] == pytest.approx(0.8389, abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0)
    # The interval holds the rate itself, to the last bit (a plot's error bars are rate − low, high − rate).
    for n in range(1, 201):
        for k in (0, 1, n - 1, n):
            low, high = wilson(k, n)
            assert low <= k / n <= high
    with pytest.raises(ValueError, match="between 0 and episodes"):
        wilson(11, 10)


def test_a_hundred_episodes_per_task_give_half_widths_of_ten_points_at_most() -> None:
    assert max(Rate(k, 100).half_width for k in range(101)) <= 0.10
    assert max(Rate(k, 40).half_width for k in range(41)) > 0.10  # forty do not


def test_one_change_is_newcombes_interval() -> None:
    # Newcombe (1998), method 10, example (e): 56/70 against 48/80 -> 0.2000 [0.0524, 0.3339].
    change = mean_change([(Rate(48, 80), Rate(56, 70))])
    assert change.value == pytest.approx(0.2)
    assert change.low == pytest.approx(0.0524, abs=1e-4) and change.high == pytest.approx(0.3339, abs=1e-4)
    assert change.verdict == "up" and change.text() == "+20 [+5, +33] pts"


def test_the_mean_change_over_tasks_is_narrower_than_each_and_says_when_it_is_noise() -> None:
    pairs = [(Rate(10, 100), Rate(40, 100)), (Rate(5, 100), Rate(9, 100)), (Rate(30, 100), Rate(31, 100))]
    mean = mean_change(pairs)
    assert mean.value == pytest.approx((0.30 + 0.04 + 0.01) / 3)
    widths = [mean_change([pair]).high - mean_change([pair]).low for pair in pairs]
    assert mean.high - mean.low < min(widths)
    assert mean.verdict == "up"
    assert [mean_change([pair]).verdict for pair in pairs] == ["up", "within noise", "within noise"]
    assert mean_change([(Rate(40, 100), Rate(10, 100))]).verdict == "down"


def test_mean_rate_is_the_mean_with_an_interval_that_holds_it() -> None:
    level = mean_rate([Rate(10, 100), Rate(50, 100)])
    assert level.value == pytest.approx(0.3) and level.low < 0.3 < level.high
    # Each half-width combines the tasks' as independent errors: √(h1² + h2²) / 2.
    h = [Rate(10, 100).interval[1] - 0.1, Rate(50, 100).interval[1] - 0.5]
    assert level.high - 0.3 == pytest.approx(math.sqrt(h[0] ** 2 + h[1] ** 2) / 2)

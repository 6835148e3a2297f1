from __future__ import annotations

import json
from pathlib import Path

import pytest

from sop_ros.core.errors import ConfigError
from sop_ros.experiment.report import write_report
from sop_ros.sim import TASK_NAMES


def _evaluation(time_s: float, mean: float) -> dict:
    return {
        "time_s": time_s,
        "episodes": int(time_s / 10),
        "success": dict.fromkeys(TASK_NAMES, mean),
        "throughput_per_h": dict.fromkeys(TASK_NAMES, 100.0),
        "mean_success": mean,
    }


def _result(
    name: str, robots: int, budget_s: float, reached: float | None, final: float | None = None, **config
) -> dict:
    final = final if final is not None else (0.85 if reached is not None else 0.6)
    return {
        "arm": {"name": name, "algorithm": "hg_dagger", "robots": robots, "mixing": "adaptive"},
        "evaluations": [_evaluation(0.0, 0.3), _evaluation(budget_s / 2, 0.6)],
        "final": _evaluation(budget_s, final),
        "episodes": [[1.0, TASK_NAMES[0], True, 0.5, False]] * robots,
        "time_to_target_s": reached,
        "learner_steps": 10,
        "seconds": 60.0,
        "machine": "NVIDIA H100 80GB HBM3",
        "date": "2026-11-25",
        "config": {
            "budget_s": budget_s,
            "learner_steps_per_s": 1.0,
            "batch_size": 256,
            "lr": 1e-3,
            "publish_every_steps": 25,
            "reset_s": 4.0,
            "eval_episodes_per_task": 20,
            "eval_every_s": 240.0,
            "final_eval_episodes_per_task": 50,
            "target_success": 0.8,
            "seed": 0,
            **config,
        },
    }


def test_report_bounds_the_scaling_ratio_when_one_robot_never_reaches_the_target(tmp_path: Path) -> None:
    results = {
        "hg_dagger_4": _result("hg_dagger_4", 4, 1200.0, 600.0),
        "hg_dagger_1": _result("hg_dagger_1", 1, 2400.0, None),
    }
    text = write_report(tmp_path, results, size="full").read_text()
    assert "Arms run 20 min (hg_dagger_1: 40 min)" in text
    assert (
        "one task's success over 50 episodes is known to ±0.11 (95 %) and the mean over 3 tasks to ±0.06"
        in text
    )
    # Budgets differ, so the table also compares the arms at the shorter one.
    assert "| budget | mean success at 20 min | final mean success |" in text
    assert "| 1 | not reached | 40 min | 0.60 | 0.60 | 1 |" in text
    assert "| 4 | 10.0 min | 20 min | 0.85 | 0.85 | 4 |" in text
    assert "1 robot had not reached it after 40 min, so 4 robots need less than 0.25× the time" in text


def test_report_gives_the_ratio_when_both_reach_the_target(tmp_path: Path) -> None:
    results = {
        "hg_dagger_4": _result("hg_dagger_4", 4, 1200.0, 480.0),
        "hg_dagger_1": _result("hg_dagger_1", 1, 1200.0, 960.0),
    }
    text = write_report(tmp_path, results, size="full").read_text()
    assert "Every arm runs 20 min" in text
    assert "4 robots need 0.50× the time of 1 robot" in text


def test_report_refuses_arms_run_with_different_settings(tmp_path: Path) -> None:
    results = {
        "hg_dagger_4": _result("hg_dagger_4", 4, 1200.0, 480.0),
        "hg_dagger_1": _result("hg_dagger_1", 1, 1200.0, None, lr=3e-4),
    }
    with pytest.raises(ConfigError, match=r"different settings \(lr\)"):
        write_report(tmp_path, results, size="full")


def test_report_gives_the_mean_over_seeds_and_every_run(tmp_path: Path) -> None:
    results = {
        "hg_dagger_4": _result("hg_dagger_4", 4, 1200.0, 480.0, final=0.9),
        "hg_dagger_4_seed1": _result("hg_dagger_4", 4, 1200.0, None, final=0.7, seed=1),
        "hg_dagger_1": _result("hg_dagger_1", 1, 1200.0, None),
        "hg_dagger_1_seed1": _result("hg_dagger_1", 1, 1200.0, None, seed=1),
    }
    text = write_report(tmp_path, results, size="full").read_text()
    assert "2 arms, 4 runs (seeds 0, 1)" in text and "--seed 0,1" in text
    assert "| SOP + HG-DAgger, 4 robots | 0.80 | 0.80 | 0.80 | 0.80 (0.90 / 0.70) |" in text
    assert "| 4 | 8.0 min / not reached | 20 min | 0.80 (0.90 / 0.70) | 4 |" in text
    assert "4 robots need" not in text, "one 4-robot run never reached the target: no ratio"
    summary = json.loads((tmp_path / "results.json").read_text())["arms"]["hg_dagger_4"]
    assert [run["seed"] for run in summary["runs"]] == [0, 1]
    assert summary["final_mean_success"] == pytest.approx(0.8)


def test_report_says_how_to_reproduce_runs_of_other_budgets_and_settings(tmp_path: Path) -> None:
    results = {
        "hg_dagger_4": _result("hg_dagger_4", 4, 5400.0, 3600.0, learner_steps_per_s=2.0),
        "hg_dagger_4_seed1": _result("hg_dagger_4", 4, 5400.0, 3600.0, learner_steps_per_s=2.0, seed=1),
        "hg_dagger_1": _result("hg_dagger_1", 1, 1200.0, None, learner_steps_per_s=2.0),
        "hg_dagger_2": _result("hg_dagger_2", 2, 3600.0, None, learner_steps_per_s=2.0),
    }
    defaults = {**results["hg_dagger_1"]["config"], "learner_steps_per_s": 1.0}
    text = write_report(tmp_path, results, size="full", defaults=defaults).read_text()
    assert (
        "`sop experiment --size full --arms hg_dagger_4 --seed 0,1 --budget-min 90 "
        "--set learner_steps_per_s=2`, `sop experiment --size full --arms hg_dagger_1,hg_dagger_2 --seed 0 "
        "--budget-min hg_dagger_2=60 --set learner_steps_per_s=2` (into one --out directory)"
    ) in text
    assert (tmp_path / "success_over_episodes.png").stat().st_size > 0


def test_report_times_lower_levels_of_success_with_the_fleet_ratio_at_each(tmp_path: Path) -> None:
    def run(name: str, robots: int, means: list[float]) -> dict:
        result = _result(name, robots, 240.0 * (len(means) - 1), None)
        points = [_evaluation(240.0 * i, mean) for i, mean in enumerate(means)]
        result["evaluations"], result["final"] = points[:-1], points[-1]
        return result

    results = {
        # 4 robots: 0.6 from 4 min, 0.7 from 8 min, the target never (two in a row).
        "hg_dagger_4": run("hg_dagger_4", 4, [0.3, 0.65, 0.7, 0.75, 0.8, 0.7]),
        # 1 robot: 0.6 from 12 min, 0.7 never within its 20 min.
        "hg_dagger_1": run("hg_dagger_1", 1, [0.3, 0.4, 0.5, 0.6, 0.65, 0.66]),
    }
    text = write_report(tmp_path, results, size="full").read_text()
    assert "| robots | ≥ 0.6 | ≥ 0.7 |" in text
    assert "| 1 | 12.0 min | not reached |" in text
    assert "| 4 | 4.0 min | 8.0 min |" in text
    assert "| 4 robots ÷ 1 robot | 0.33× | < 0.40× |" in text

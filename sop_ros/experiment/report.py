"""The study's results table (markdown + JSON) and plots, from the arms' ``result.json`` files.

Pure functions over plain data: a report can be rebuilt from a results
directory alone (``sop experiment --report-only``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

from sop_ros.core.config import differing_settings
from sop_ros.core.errors import ConfigError
from sop_ros.experiment.study import StudyConfig, time_to_target
from sop_ros.sim import TASK_NAMES

__all__ = ["load_results", "write_report"]

_STUDY_DEFAULTS = {f.name: f.default for f in fields(StudyConfig)}

_SCALING = ("hg_dagger_1", "hg_dagger_2", "hg_dagger_4")
_MIXING = {
    "hg_dagger_4": "adaptive p_on (α boost)",
    "hg_dagger_4_fixed": "fixed p_on = 0.5",
    "hg_dagger_4_online_only": "online only",
    "offline_only_4": "control: offline data only, same updates (no fleet data)",
}


def load_results(out_dir: Path) -> dict[str, dict]:
    """Read every ``<run>/result.json`` under ``out_dir``, by run directory (arm name, plus seed)."""
    results = {}
    for path in sorted(out_dir.glob("*/result.json")):
        result = json.loads(path.read_text())
        # Settings added after a run was made take their defaults (what such runs did).
        result["config"] = {**_STUDY_DEFAULTS, **result["config"]}
        # From the evaluations, by today's rule (results written before a fix of it stay comparable).
        result["time_to_target_s"] = _time_to(result, result["config"]["target_success"])
        results[path.parent.name] = result
    return results


def _time_to(result: dict, target: float) -> float | None:
    """When a run reached mean success ``target`` (see :func:`time_to_target`), or None."""
    judged = [*result["evaluations"], result["final"]]
    return time_to_target([(e["time_s"], _mean(list(e["success"].values()))) for e in judged], target)


def write_report(out_dir: Path, results: dict[str, dict], *, size: str, defaults: dict | None = None) -> Path:
    """Write ``results.md``, ``results.json`` and the plots into ``out_dir``; return the markdown path.

    ``defaults`` are the size's study settings: the commands that reproduce the runs
    name every setting that differs from them.
    """
    if not results:
        raise ConfigError(f"no arm results (<arm>/result.json) under {out_dir}")
    _check_same_settings(results)
    arms = _by_arm(results)
    study = next(iter(results.values()))["config"]
    # Every run starts from the same base weights; RECAP's runs judge them with their own prompt.
    reference = next((r for r in results.values() if r["arm"]["algorithm"] != "recap"), None)
    base = (reference or next(iter(results.values())))["evaluations"][0]
    machines = sorted({r["machine"] for r in results.values()})
    compute_min = sum(r["seconds"] for r in results.values()) / 60
    seeds = sorted({r["config"]["seed"] for r in results.values()})
    runs = f"{len(arms)} arms" + (f", {len(results)} runs (seeds {_join(seeds)})" if len(seeds) > 1 else "")
    lines = [
        f"# SOP in simulation: {size} study",
        "",
        f"Run on {max(r['date'] for r in results.values())} on {', '.join(machines)}: "
        f"{runs}, {compute_min:.0f} min of compute in all. Reproduce: {_reproduce(arms, size, defaults)}.",
        "",
    ]
    lines += _how(study, _budgets_min(arms), several_seeds=len(seeds) > 1)
    lines += ["", "## Success per task (held-out layouts, policy alone)", ""]
    lines += _success_table(arms, base)
    lines += ["", "## Fleet scaling (HG-DAgger, adaptive mixing)", ""]
    lines += _scaling_table(arms, study)
    lines += ["", "## Online/offline mixing (HG-DAgger, 4 robots)", ""]
    lines += _mixing_table(arms)
    lines += ["", "![success over time](success_over_time.png)", "", "![per task](success_per_task.png)", ""]
    if any(name in arms for name in _SCALING):
        lines += ["![success against fleet episodes](success_over_episodes.png)", ""]
    notes = out_dir / "notes.md"
    if notes.exists():  # what the people who ran the study observed, kept next to the numbers
        lines += ["", notes.read_text().strip(), ""]
    markdown = out_dir / "results.md"
    markdown.write_text("\n".join(lines))
    summary = {
        name: {
            "arm": group[0]["arm"],
            "final_mean_success": _mean([r["final"]["mean_success"] for r in group]),
            "final_success": _mean_success(group),
            "runs": [
                {
                    "seed": r["config"]["seed"],
                    "final_success": r["final"]["success"],
                    "final_mean_success": r["final"]["mean_success"],
                    "final_throughput_per_h": r["final"]["throughput_per_h"],
                    "time_to_target_s": r["time_to_target_s"],
                    "learner_steps": r["learner_steps"],
                    "fleet_episodes": len(r["episodes"]),
                    "compute_seconds": r["seconds"],
                }
                for r in group
            ],
        }
        for name, group in arms.items()
    }
    summary["base"] = {"success": base["success"], "throughput_per_h": base["throughput_per_h"]}
    (out_dir / "results.json").write_text(json.dumps({"study": study, "arms": summary}, indent=2))
    _plot(out_dir, arms, study)
    return markdown


def _by_arm(results: dict[str, dict]) -> dict[str, list[dict]]:
    """Runs grouped by arm name (in first-seen order), each group sorted by seed."""
    arms: dict[str, list[dict]] = {}
    for result in results.values():
        arms.setdefault(result["arm"]["name"], []).append(result)
    return {name: sorted(group, key=lambda r: r["config"]["seed"]) for name, group in arms.items()}


def _check_same_settings(results: dict[str, dict]) -> None:
    """Runs compare only when they ran with the same settings (budget and seed aside)."""
    names = list(results)
    first = results[names[0]]["config"]
    for name in names[1:]:
        differing = differing_settings(first, results[name]["config"], ignore=("budget_s", "seed"))
        if differing:
            raise ConfigError(
                f"arms {names[0]} and {name} ran with different settings ({', '.join(differing)}); "
                "report them from separate directories"
            )


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _join(values: list) -> str:
    return ", ".join(str(v) for v in values)


def _mean_success(group: list[dict]) -> dict[str, float]:
    """Final success per task, averaged over an arm's runs."""
    return {task: _mean([r["final"]["success"][task] for r in group]) for task in TASK_NAMES}


def _runs_cell(values: list[float]) -> str:
    """The mean of one value per run, with each run's value when there are several."""
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{_mean(values):.2f} ({' / '.join(f'{v:.2f}' for v in values)})"


def _success_cell(group: list[dict]) -> str:
    """Final mean success of an arm's runs."""
    return _runs_cell([r["final"]["mean_success"] for r in group])


def _budgets_min(arms: dict[str, list[dict]]) -> dict[str, float]:
    return {name: max(r["config"]["budget_s"] for r in group) / 60 for name, group in arms.items()}


def _usual(budgets: dict[str, float]) -> float:
    """The commonest budget; the first arm's on a tie."""
    values = list(budgets.values())
    return max(values, key=values.count)


def _budget_text(budgets: dict[str, float]) -> str:
    usual = _usual(budgets)
    others = [f"{name}: {minutes:g} min" for name, minutes in budgets.items() if minutes != usual]
    if not others:
        return f"Every arm runs {usual:g} min"
    return f"Arms run {usual:g} min ({', '.join(others)})"


def _reproduce(arms: dict[str, list[dict]], size: str, defaults: dict | None) -> str:
    """The ``sop experiment`` commands that ran these arms: one per set of seeds."""
    study = next(iter(arms.values()))[0]["config"]
    changed = []
    if defaults is not None:
        for name in differing_settings(study, defaults, ignore=("budget_s", "seed", "device")):
            value = study[name]
            changed.append(
                f" --set {name}={value:g}" if isinstance(value, float) else f" --set {name}={value}"
            )
    by_seeds: dict[str, dict[str, float]] = {}  # seeds -> arm -> budget (min)
    for name, group in arms.items():
        seeds = ",".join(str(r["config"]["seed"]) for r in group)
        by_seeds.setdefault(seeds, {})[name] = max(r["config"]["budget_s"] for r in group) / 60
    commands = []
    for seeds, budgets in by_seeds.items():
        usual = _usual(budgets)
        flags = "" if defaults and usual * 60 == defaults["budget_s"] else f" --budget-min {usual:g}"
        flags += "".join(f" --budget-min {name}={m:g}" for name, m in budgets.items() if m != usual)
        arms_seeds = f"--arms {','.join(budgets)} --seed {seeds}"
        commands.append(f"`sop experiment --size {size} {arms_seeds}{flags}{''.join(changed)}`")
    return ", ".join(commands) + (" (into one --out directory)" if len(commands) > 1 else "")


def _learner_text(study: dict) -> str:
    rate = study["learner_steps_per_s"]
    updates = f"{rate:g} update{'' if rate == 1 else 's'} per simulated second"
    if study.get("learner_per_robot"):
        return (
            f"The learner's compute grows with the fleet: {updates} for each robot, so every fleet "
            "size gets the same updates per episode"
        )
    return f"One learner serves the fleet with {updates}, whatever the fleet size"


def _how(study: dict, budgets: dict[str, float], *, several_seeds: bool) -> list[str]:
    seeds = (
        "Each arm ran once per seed (fleet layouts and learner sampling differ; the evaluation "
        "layouts do not); tables give the mean over runs and, in brackets, each run's value."
        if several_seeds
        else f"Seed {study['seed']}."
    )
    return [
        "## How this was measured",
        "",
        f"- {_budget_text(budgets)} of simulated wall-clock time. Robots act at the "
        f"simulator's 10 Hz and spend {study['reset_s']:g} s resetting the scene between episodes; tasks "
        "rotate per robot and episode; the scripted expert watches every robot as its operator and takes "
        "over when the policy drifts, stops or makes no headway (HG-DAgger's human gate).",
        f"- {_learner_text(study)} (batch {study['batch_size']}, lr {study['lr']:g}); weights are published "
        f"every {study['publish_every_steps']} updates and robots take them only at an episode start.",
        "- Every fleet episode is a rosbag2 MCAP bag that the learner loads like any robot's; "
        "offline buffers hold the expert's demonstration bags.",
        f"- Success: the newest published weights alone (no operator) on held-out layouts, "
        f"{study['eval_episodes_per_task']} episodes per task every {study['eval_every_s']:g} s and "
        f"{study['final_eval_episodes_per_task']} per task at the end. Throughput: successes per hour "
        "of robot time in that evaluation (episode time plus resets).",
        f"- Time to target: first evaluation from which the mean success over the three tasks is ≥ "
        f"{study['target_success']:g} at that evaluation and the next (the final one, with "
        f"{study['final_eval_episodes_per_task']} episodes per task, counts alone). {seeds}",
        f"- Sampling error: {_sampling_error(study)}",
    ]


def _sampling_error(study: dict) -> str:
    """95 % interval half-widths of one evaluation's success, at the target rate (normal approximation)."""
    rate, tasks = study["target_success"], len(TASK_NAMES)

    def half(n: int) -> str:
        return f"±{1.96 * math.sqrt(rate * (1 - rate) / n):.2f}"

    final, regular = study["final_eval_episodes_per_task"], study["eval_episodes_per_task"]
    return (
        f"at a success rate of {rate:g}, one task's success over {final} episodes is known to "
        f"{half(final)} (95 %) and the mean over {tasks} tasks to {half(final * tasks)}; over "
        f"{regular} episodes, {half(regular)} and {half(regular * tasks)}."
    )


def _fmt_time(seconds: float | None) -> str:
    return "not reached" if seconds is None else f"{seconds / 60:.1f} min"


def _at(result: dict, time_s: float) -> dict:
    """The last evaluation of a run made at or before ``time_s``."""
    points = [*result["evaluations"], result["final"]]
    return [p for p in points if p["time_s"] <= time_s + 1e-6][-1]


def _common_time_s(groups: list[list[dict]]) -> float | None:
    """The shortest budget among ``groups`` when their budgets differ, else None."""
    budgets = {r["config"]["budget_s"] for group in groups for r in group}
    return min(budgets) if len(budgets) > 1 else None


def _at_cell(group: list[dict], time_s: float) -> str:
    """Mean success of an arm's runs at ``time_s``."""
    return _runs_cell([_at(r, time_s)["mean_success"] for r in group])


def _times_cell(group: list[dict]) -> str:
    return " / ".join(_fmt_time(r["time_to_target_s"]) for r in group)


def _success_table(arms: dict[str, list[dict]], base: dict) -> list[str]:
    head = "| policy | " + " | ".join(TASK_NAMES) + " | mean | throughput (successes/h, mean) |"
    rows = [head, "|" + "---|" * (len(TASK_NAMES) + 3)]

    def throughput(evaluation: dict) -> float:
        return _mean(list(evaluation["throughput_per_h"].values()))

    cells = " | ".join(f"{base['success'][t]:.2f}" for t in TASK_NAMES)
    mean = _mean(list(base["success"].values()))
    rows.append(f"| base (offline demonstrations only) | {cells} | {mean:.2f} | {throughput(base):.0f} |")
    labels = {"hg_dagger_4": "SOP + HG-DAgger, 4 robots", "recap_4": "SOP + RECAP, 4 robots"}
    for name, label in labels.items():
        if name in arms:
            group = arms[name]
            per_task = _mean_success(group)
            cells = " | ".join(f"{per_task[t]:.2f}" for t in TASK_NAMES)
            rate = _mean([throughput(r["final"]) for r in group])
            rows.append(f"| {label} | {cells} | {_success_cell(group)} | {rate:.0f} |")
    return rows


def _scaling_table(arms: dict[str, list[dict]], study: dict) -> list[str]:
    shown = [arms[name] for name in _SCALING if name in arms]
    common = _common_time_s(shown)
    at_head, at_rule = (f" mean success at {common / 60:g} min |", "---|") if common else ("", "")
    rows = [
        f"| robots | time to mean success ≥ {study['target_success']:g} | budget |{at_head} "
        "final mean success | fleet episodes |",
        "|---|---|---|" + at_rule + "---|---|",
    ]
    for group in shown:
        budget = max(r["config"]["budget_s"] for r in group) / 60
        episodes = _mean([len(r["episodes"]) for r in group])
        at = f" {_at_cell(group, common)} |" if common else ""
        rows.append(
            f"| {group[0]['arm']['robots']} | {_times_cell(group)} | {budget:g} min |{at} "
            f"{_success_cell(group)} | {episodes:.0f} |"
        )
    one, four = arms.get("hg_dagger_1"), arms.get("hg_dagger_4")
    rows += _scaling_verdict(one, four)
    rows += _levels_table(shown, one, four, study["target_success"])
    return rows


def _scaling_verdict(one: list[dict] | None, four: list[dict] | None) -> list[str]:
    """The 4-robot / 1-robot time ratio, or its upper bound when 1 robot never got there."""
    if not one or not four:
        return []
    ratio = _time_ratio(one, four, _reached)
    if ratio is None:
        return []
    relation, value = ratio
    if relation == "?":
        return ["", "1 robot reached the target in some runs and not in others: no ratio is given."]
    if relation == "=":
        return ["", f"4 robots need {value:.2f}× the time of 1 robot to reach the target (mean over runs)."]
    slowest = max(t for r in four if (t := _reached(r)) is not None)
    budget = min(r["config"]["budget_s"] for r in one)
    runs = "" if len(four) == 1 else f" in all {len(four)} runs"
    return [
        "",
        f"4 robots reached the target in {_fmt_time(slowest)}{runs}; 1 robot had not reached it "
        f"after {budget / 60:g} min, so 4 robots need less than {value:.2f}× the time of 1 robot.",
    ]


def _reached(result: dict) -> float | None:
    return result["time_to_target_s"]


def _time_ratio(
    one: list[dict], four: list[dict], reached: Callable[[dict], float | None]
) -> tuple[str, float] | None:
    """4 robots' time over 1 robot's: ("=", mean over mean), ("<", bound) or ("?", nan).

    ``reached`` gives a run's time to the level compared. None when a 4-robot run never got
    there. When no 1-robot run got there, its time is only known to exceed its budget: the
    slowest 4-robot run over that budget bounds the ratio.
    """
    fours = [t for r in four if (t := reached(r)) is not None]
    ones = [t for r in one if (t := reached(r)) is not None]
    if len(fours) < len(four):
        return None
    if not ones:
        return "<", max(fours) / min(r["config"]["budget_s"] for r in one)
    if len(ones) == len(one):
        return "=", _mean(fours) / _mean(ones)
    return "?", math.nan


def _levels_table(
    shown: list[list[dict]], one: list[dict] | None, four: list[dict] | None, target: float
) -> list[str]:
    """Times to lower mean-success levels too, and 4 robots' ratio to 1 robot at each.

    A target near where learning levels off mostly measures that level and the evaluation
    noise; lower levels show how fast each fleet climbs.
    """
    levels = [level for level in (round(target - 0.2, 2), round(target - 0.1, 2)) if level > 0]
    if not levels:
        return []

    def reached_at(level: float) -> Callable[[dict], float | None]:
        return lambda result: _time_to(result, level)

    rows = [
        "",
        "Time to lower levels of mean success (same rule: two evaluations in a row):",
        "",
        "| robots | " + " | ".join(f"≥ {level:g}" for level in levels) + " |",
        "|---|" + "---|" * len(levels),
    ]
    for group in shown:
        cells = [" / ".join(_fmt_time(_time_to(r, level)) for r in group) for level in levels]
        rows.append(f"| {group[0]['arm']['robots']} | " + " | ".join(cells) + " |")
    if one and four:
        cells = [_ratio_cell(_time_ratio(one, four, reached_at(level))) for level in levels]
        rows.append("| 4 robots ÷ 1 robot | " + " | ".join(cells) + " |")
    return rows


def _ratio_cell(ratio: tuple[str, float] | None) -> str:
    if ratio is None or ratio[0] == "?":
        return "—"
    relation, value = ratio
    return f"{value:.2f}×" if relation == "=" else f"< {value:.2f}×"


def _mixing_table(arms: dict[str, list[dict]]) -> list[str]:
    shown = {label: arms[name] for name, label in _MIXING.items() if name in arms}
    common = _common_time_s(list(shown.values()))
    if common is None:
        rows = ["| mixing | final mean success | time to target |", "|---|---|---|"]
    else:
        rows = [
            f"| mixing | budget | mean success at {common / 60:g} min | final mean success "
            "| time to target |",
            "|---|---|---|---|---|",
        ]
    for label, group in shown.items():
        if common is None:
            rows.append(f"| {label} | {_success_cell(group)} | {_times_cell(group)} |")
        else:
            budget = max(r["config"]["budget_s"] for r in group) / 60
            rows.append(
                f"| {label} | {budget:g} min | {_at_cell(group, common)} | {_success_cell(group)} | "
                f"{_times_cell(group)} |"
            )
    return rows


def _plot(out_dir: Path, arms: dict[str, list[dict]], study: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = dict(zip(arms, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4, strict=False))

    def minutes(point: dict) -> float:
        return point["time_s"] / 60

    def curves(ax, name: str, value, x=minutes, label: str | None = None) -> None:
        runs = arms[name]
        label = label or (name if len(runs) == 1 else f"{name} ({len(runs)} runs)")
        for i, r in enumerate(runs):
            points = [*r["evaluations"], r["final"]]
            ax.plot(
                [x(p) for p in points],
                [value(p) for p in points],
                marker=".",
                color=colours[name],
                label=label if i == 0 else None,
            )

    def mean_success_plot(
        file: str, title: str, xlabel: str, names: list[str], x=minutes, labels=None
    ) -> None:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for name in names:
            curves(ax, name, lambda p: p["mean_success"], x=x, label=(labels or {}).get(name))
        ax.axhline(study["target_success"], color="grey", linestyle=":", linewidth=1)
        ax.set(xlabel=xlabel, ylabel="mean success (3 tasks)", ylim=(0, 1.02))
        ax.set_title(title)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out_dir / file, dpi=120)
        plt.close(fig)

    mean_success_plot(
        "success_over_time.png",
        "SOP in simulation: success of the newest weights",
        "simulated wall-clock time (min)",
        list(arms),
    )
    scaling = [name for name in _SCALING if name in arms]
    if scaling:  # the same fleet episodes make the same policy when the learner keeps pace
        robots = {name: arms[name][0]["arm"]["robots"] for name in scaling}
        mean_success_plot(
            "success_over_episodes.png",
            "Fleet scaling: success against the experience collected",
            "fleet episodes so far",
            scaling,
            x=lambda p: p["episodes"],
            labels={name: f"{n} robot{'s' * (n > 1)}" for name, n in robots.items()},
        )

    shown: list[str] = [name for name in ("hg_dagger_4", "recap_4", "hg_dagger_1") if name in arms] or list(
        arms
    )
    fig, axes = plt.subplots(1, len(TASK_NAMES), figsize=(12, 3.8), sharey=True)
    for ax, task in zip(axes, TASK_NAMES, strict=True):
        for name in shown:
            curves(ax, name, lambda p, task=task: p["success"][task])
        ax.set(title=task, xlabel="simulated time (min)", ylim=(0, 1.02))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("success")
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "success_per_task.png", dpi=120)
    plt.close(fig)

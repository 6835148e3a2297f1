"""The study's results table (markdown + JSON) and plots, from the arms' ``result.json`` files.

Pure functions over plain data: a report can be rebuilt from a results
directory alone (``sop experiment --report-only``).
"""

from __future__ import annotations

import json
from pathlib import Path

from sop_ros.core.errors import ConfigError
from sop_ros.sim import TASK_NAMES

__all__ = ["load_results", "write_report"]

_SCALING = ("hg_dagger_1", "hg_dagger_2", "hg_dagger_4")
_MIXING = {
    "hg_dagger_4": "adaptive p_on (α boost)",
    "hg_dagger_4_fixed": "fixed p_on = 0.5",
    "hg_dagger_4_online_only": "online only",
}


def load_results(out_dir: Path) -> dict[str, dict]:
    """Read every ``<arm>/result.json`` under ``out_dir``, by arm name."""
    results = {}
    for path in sorted(out_dir.glob("*/result.json")):
        data = json.loads(path.read_text())
        results[data["arm"]["name"]] = data
    return results


def write_report(out_dir: Path, results: dict[str, dict], *, size: str) -> Path:
    """Write ``results.md``, ``results.json`` and the plots into ``out_dir``; return the markdown path."""
    if not results:
        raise ConfigError(f"no arm results (<arm>/result.json) under {out_dir}")
    any_arm = next(iter(results.values()))
    study = any_arm["config"]
    _check_same_settings(results)
    base = any_arm["evaluations"][0]
    machines = sorted({r["machine"] for r in results.values()})
    compute_min = sum(r["seconds"] for r in results.values()) / 60
    lines = [
        f"# SOP in simulation: {size} study",
        "",
        f"Run on {max(r['date'] for r in results.values())} on {', '.join(machines)}: "
        f"{len(results)} arms, {compute_min:.0f} min of compute in all. "
        f"Reproduce: `sop experiment --size {size} --seed {study['seed']}`.",
        "",
    ]
    lines += _how(study, _budgets_min(results))
    lines += ["", "## Success per task (held-out layouts, policy alone)", ""]
    lines += _success_table(results, base)
    lines += ["", "## Fleet scaling (HG-DAgger, adaptive mixing)", ""]
    lines += _scaling_table(results, study)
    lines += ["", "## Online/offline mixing (HG-DAgger, 4 robots)", ""]
    lines += _mixing_table(results)
    lines += ["", "![success over time](success_over_time.png)", "", "![per task](success_per_task.png)", ""]
    notes = out_dir / "notes.md"
    if notes.exists():  # what the people who ran the study observed, kept next to the numbers
        lines += ["", notes.read_text().strip(), ""]
    markdown = out_dir / "results.md"
    markdown.write_text("\n".join(lines))
    summary = {
        name: {
            "arm": r["arm"],
            "final_success": r["final"]["success"],
            "final_mean_success": r["final"]["mean_success"],
            "final_throughput_per_h": r["final"]["throughput_per_h"],
            "time_to_target_s": r["time_to_target_s"],
            "learner_steps": r["learner_steps"],
            "fleet_episodes": len(r["episodes"]),
            "compute_seconds": r["seconds"],
        }
        for name, r in results.items()
    }
    summary["base"] = {"success": base["success"], "throughput_per_h": base["throughput_per_h"]}
    (out_dir / "results.json").write_text(json.dumps({"study": study, "arms": summary}, indent=2))
    _plot(out_dir, results, study)
    return markdown


def _check_same_settings(results: dict[str, dict]) -> None:
    """Arms compare only when they ran with the same settings (the budget aside)."""
    names = list(results)
    first = {k: v for k, v in results[names[0]]["config"].items() if k != "budget_s"}
    for name in names[1:]:
        other = {k: v for k, v in results[name]["config"].items() if k != "budget_s"}
        differing = sorted(k for k in first.keys() | other.keys() if first.get(k) != other.get(k))
        if differing:
            raise ConfigError(
                f"arms {names[0]} and {name} ran with different settings ({', '.join(differing)}); "
                "report them from separate directories"
            )


def _budgets_min(results: dict[str, dict]) -> dict[str, float]:
    return {name: r["config"]["budget_s"] / 60 for name, r in results.items()}


def _budget_text(budgets: dict[str, float]) -> str:
    values = list(budgets.values())
    usual = max(values, key=values.count)  # the commonest; the first arm's on a tie
    others = [f"{name}: {minutes:g} min" for name, minutes in budgets.items() if minutes != usual]
    if not others:
        return f"Every arm runs {usual:g} min"
    return f"Arms run {usual:g} min ({', '.join(others)})"


def _how(study: dict, budgets: dict[str, float]) -> list[str]:
    return [
        "## How this was measured",
        "",
        f"- {_budget_text(budgets)} of simulated wall-clock time. Robots act at the "
        f"simulator's 10 Hz and spend {study['reset_s']:g} s resetting the scene between episodes; tasks "
        "rotate per robot and episode; the scripted expert watches every robot as its operator and takes "
        "over when the policy drifts (HG-DAgger's human gate).",
        f"- One learner serves the fleet with {study['learner_steps_per_s']:g} "
        f"update{'' if study['learner_steps_per_s'] == 1 else 's'} per simulated second "
        f"(batch {study['batch_size']}, lr {study['lr']:g}), whatever the fleet size; weights are published "
        f"every {study['publish_every_steps']} updates and robots take them only at an episode start.",
        "- Every fleet episode is a rosbag2 MCAP bag that the learner loads like any robot's; "
        "offline buffers hold the expert's demonstration bags.",
        f"- Success: the newest published weights alone (no operator) on held-out layouts, "
        f"{study['eval_episodes_per_task']} episodes per task every {study['eval_every_s']:g} s and "
        f"{study['final_eval_episodes_per_task']} per task at the end. Throughput: successes per hour "
        "of robot time in that evaluation (episode time plus resets).",
        f"- Time to target: first evaluation from which the mean success over the three tasks is ≥ "
        f"{study['target_success']:g} at that evaluation and the next. Seed {study['seed']}.",
    ]


def _fmt_time(seconds: float | None) -> str:
    return "not reached" if seconds is None else f"{seconds / 60:.1f} min"


def _success_table(results: dict[str, dict], base: dict) -> list[str]:
    head = "| policy | " + " | ".join(TASK_NAMES) + " | mean | throughput (successes/h, mean) |"
    rows = [head, "|" + "---|" * (len(TASK_NAMES) + 3)]

    def row(name: str, evaluation: dict) -> str:
        cells = " | ".join(f"{evaluation['success'][t]:.2f}" for t in TASK_NAMES)
        mean = sum(evaluation["success"].values()) / len(evaluation["success"])
        throughput = sum(evaluation["throughput_per_h"].values()) / len(evaluation["throughput_per_h"])
        return f"| {name} | {cells} | {mean:.2f} | {throughput:.0f} |"

    rows.append(row("base (offline demonstrations only)", base))
    for name in ("hg_dagger_4", "recap_4"):
        if name in results:
            label = {"hg_dagger_4": "SOP + HG-DAgger, 4 robots", "recap_4": "SOP + RECAP, 4 robots"}[name]
            rows.append(row(label, results[name]["final"]))
    return rows


def _scaling_table(results: dict[str, dict], study: dict) -> list[str]:
    rows = [
        f"| robots | time to mean success ≥ {study['target_success']:g} | budget | final mean success "
        "| fleet episodes |",
        "|---|---|---|---|---|",
    ]
    for name in _SCALING:
        if name in results:
            r = results[name]
            rows.append(
                f"| {r['arm']['robots']} | {_fmt_time(r['time_to_target_s'])} | "
                f"{r['config']['budget_s'] / 60:g} min | {r['final']['mean_success']:.2f} | "
                f"{len(r['episodes'])} |"
            )
    one, four = results.get("hg_dagger_1"), results.get("hg_dagger_4")
    if one and four and four["time_to_target_s"] is not None:
        reached = four["time_to_target_s"]
        if one["time_to_target_s"] is None:
            # 1 robot's time is only known to exceed its budget, so the ratio is an upper bound.
            bound = reached / one["config"]["budget_s"]
            rows += [
                "",
                f"4 robots reached the target in {_fmt_time(reached)}; 1 robot had not reached it after "
                f"{one['config']['budget_s'] / 60:g} min, so 4 robots need less than {bound:.2f}× the time "
                "of 1 robot.",
            ]
        else:
            ratio = reached / one["time_to_target_s"]
            rows += ["", f"4 robots need {ratio:.2f}× the time of 1 robot to reach the target."]
    return rows


def _mixing_table(results: dict[str, dict]) -> list[str]:
    rows = ["| mixing | final mean success | time to target |", "|---|---|---|"]
    for name, label in _MIXING.items():
        if name in results:
            r = results[name]
            rows.append(
                f"| {label} | {r['final']['mean_success']:.2f} | {_fmt_time(r['time_to_target_s'])} |"
            )
    return rows


def _plot(out_dir: Path, results: dict[str, dict], study: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, r in results.items():
        points = [*r["evaluations"], r["final"]]
        ax.plot(
            [p["time_s"] / 60 for p in points], [p["mean_success"] for p in points], marker=".", label=name
        )
    ax.axhline(study["target_success"], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="simulated wall-clock time (min)", ylabel="mean success (3 tasks)", ylim=(0, 1.02))
    ax.set_title("SOP in simulation: success of the newest weights")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_dir / "success_over_time.png", dpi=120)
    plt.close(fig)

    shown = [name for name in ("hg_dagger_4", "recap_4", "hg_dagger_1") if name in results] or list(results)
    fig, axes = plt.subplots(1, len(TASK_NAMES), figsize=(12, 3.8), sharey=True)
    for ax, task in zip(axes, TASK_NAMES, strict=True):
        for name in shown:
            points = [*results[name]["evaluations"], results[name]["final"]]
            ax.plot([p["time_s"] / 60 for p in points], [p["success"][task] for p in points], label=name)
        ax.set(title=task, xlabel="simulated time (min)", ylim=(0, 1.02))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("success")
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "success_per_task.png", dpi=120)
    plt.close(fig)

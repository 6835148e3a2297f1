"""The demo's end: summary table on the console, ``summary.json`` and the plot.

The held-out comparison is the one to read: the base and the last weights,
each alone, on the same held-out layouts, with Wilson 95 % intervals per task
and the MOVER interval of each change; a change whose interval holds zero is
called "within noise". The fleet's own episodes (with an operator) are shown
too, first third against last third.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from sop_ros.core.spool import Spool
from sop_ros.demo.progress import FleetTracker
from sop_ros.simlab.evaluate import TaskScore
from sop_ros.simlab.stats import Change, Rate, mean_change, mean_rate

if TYPE_CHECKING:
    from sop_ros.demo.options import DemoOptions

__all__ = ["compare", "write_report"]

# Evaluations: version ("base" or the last one) -> conditions -> task -> score.
Final = dict[str, dict[str, dict[str, TaskScore]]]


def compare(before: dict[str, TaskScore], after: dict[str, TaskScore]) -> dict[str, object]:
    """Per task and mean: both rates with intervals, the change with its interval and verdict."""
    tasks = [task for task in before if task in after]
    pairs = [(before[task].rate, after[task].rate) for task in tasks]
    rows: dict[str, object] = {
        task: {"before": b.to_json(), "after": a.to_json(), "change": mean_change([(b, a)]).to_json()}
        for task, (b, a) in zip(tasks, pairs, strict=True)
    }
    if pairs:
        rows["mean"] = {
            "before": _level_json(mean_rate([b for b, _ in pairs])),
            "after": _level_json(mean_rate([a for _, a in pairs])),
            "change": mean_change(pairs).to_json(),
        }
    return rows


def _level_json(level: Change) -> dict[str, object]:
    return {
        "rate": round(level.value, 4),
        "ci95": [round(max(0.0, level.low), 4), round(min(1.0, level.high), 4)],
    }


def write_report(
    out: Path, tracker: FleetTracker, options: DemoOptions, leftover: int, final: Final
) -> dict[str, object]:
    """Print the summary, write ``summary.json`` and ``sop_demo.png``; return the summary."""
    phases = tracker.phase_table()
    store_ids = {p.name for p in (out / "store").glob("*/*/*") if p.is_dir()}
    # Waiting, committed or quarantined: every bag a robot closed (a quarantined one is
    # recorded but not stored, so it shows up as missing from the store).
    spools = [Spool(path) for path in (out / "robots").glob("*/spool")]
    recorded = {spool.episode_id(bag) for spool in spools for bag in spool.closed_bags()}
    last = next((version for version in final if version != "base"), None)
    heldout = {}
    if last is not None:
        heldout = {
            conditions: compare(final["base"][conditions], scores)
            for conditions, scores in final[last].items()
        }
    summary = {
        "robots": options.robots,
        "algorithm": options.algorithm,
        "minutes": options.minutes,
        "seed": options.seed,
        "conditions": options.conditions,
        "episodes": len(tracker.records),
        "published_versions": [v for _, v in tracker.published],
        "episodes_recorded": len(recorded),
        "episodes_stored": len(recorded & store_ids),
        "episodes_missing_from_store": sorted(recorded - store_ids),
        "uploaded_at_stop": leftover,
        "by_task": phases,
        "by_version": tracker.table(),
        "evaluations": [
            {
                "minutes": round(when / 60, 2),
                "version": version,
                "conditions": options.conditions,
                "success": {task: rate.to_json() for task, rate in success.items()},
            }
            for when, version, success in tracker.evaluations
        ],
        # The base and the last version alone on the same held-out layouts of both distributions.
        "heldout": {"before": "v0000", "after": last, **heldout},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    tracker.plot(out / "sop_demo.png")
    lines = [
        "",
        f"SOP demo: {options.robots} robots, {options.algorithm}, {options.minutes:g} min, "
        f"seed {options.seed}, {len(tracker.records)} episodes, "
        f"{len(tracker.published)} weight versions published",
        "",
        f"fleet ({options.conditions} layouts, operator at hand), first → last third of its episodes",
        f"{'task':<18}{'episodes':>9}{'success without help':>24}{'human time':>18}",
    ]
    for row in phases:
        lines.append(
            f"{row['task']:<18}{row['episodes']:>9}"
            + _arrow(row["first_success_rate"], row["last_success_rate"], 24)
            + _arrow(row["first_human_share"], row["last_human_share"], 18)
        )
    if last is not None:
        for conditions, episodes in (
            (options.conditions, options.judge_final_episodes),
            (_other(final, options.conditions), options.forgetting_episodes),
        ):
            if conditions in heldout:
                lines += _heldout_table(conditions, episodes, last, final, options.conditions)
    lost = summary["episodes_missing_from_store"]
    lines += [
        "",
        f"episodes recorded {len(recorded)}, stored by the learner {len(recorded & store_ids)}"
        + (f"; NOT stored: {lost}" if lost else " (none lost)"),
        f"plot:        {out / 'sop_demo.png'}",
        f"summary:     {out / 'summary.json'}",
        f"bags:        {out / 'store'} (learner), {out / 'robots'} (robot spools)",
        f"weights:     {out / 'learner' / 'weights'}",
        f"logs:        {out / 'logs'}, TensorBoard: {out / 'tensorboard'}",
    ]
    print("\n".join(lines), flush=True)
    return summary


def _other(final: Final, conditions: str) -> str:
    return next((c for scores in final.values() for c in scores if c != conditions), conditions)


def _arrow(before: float, after: float, width: int) -> str:
    return f"{before:.0%} → {after:.0%}".rjust(width)


def _heldout_table(conditions: str, episodes: int, last: str, final: Final, deployed: str) -> list[str]:
    before, after = final["base"][conditions], final[last][conditions]
    why = "where the fleet works" if conditions == deployed else "what was forgotten"
    lines = [
        "",
        f"policy alone, held-out {conditions} layouts ({episodes} per task, 95 % CI; {why})",
        f"{'task':<18}{'v0000':>18}{last:>18}{'change':>24}",
    ]
    pairs: list[tuple[Rate, Rate]] = []
    noise = []
    for task in before:
        b, a = before[task].rate, after[task].rate
        change = mean_change([(b, a)])
        pairs.append((b, a))
        if change.verdict == "within noise":
            noise.append(task)
        lines.append(f"{task:<18}{b.text():>18}{a.text():>18}{change.text():>24}  {change.verdict}")
    change = mean_change(pairs)
    mean_before, mean_after = mean_rate([b for b, _ in pairs]), mean_rate([a for _, a in pairs])
    levels = f"{mean_before.level_text():>18}{mean_after.level_text():>18}"
    lines.append(f"{'mean':<18}{levels}{change.text():>24}  {change.verdict}")
    if noise:
        lines.append(f"within noise (the change's interval holds 0): {', '.join(noise)}")
    return lines

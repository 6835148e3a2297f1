"""``sop experiment``: the SOP study in simulation, end to end, from one command.

1. The scripted expert records demonstration bags (cached in the output directory).
2. The base policy comes from those bags (the packaged one when its recipe
   matches, else trained here and cached; or ``--base``).
3. The arms run (see :mod:`sop_ros.experiment.study`), several at once with ``--jobs``.
4. ``results.md``, ``results.json`` and plots are written next to the arms' own results.

Two sizes: ``full`` (the study as reported, for a GPU) and ``reduced``
(the same pipeline in about a minute on a CPU, for checks; its numbers mean
nothing).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from sop_ros.core.config import config_from_flat, flatten_config
from sop_ros.core.errors import ConfigError
from sop_ros.experiment.report import load_results, write_report
from sop_ros.experiment.study import ARMS, StudyConfig, run_arms
from sop_ros.sim.policy import sim_policy_config
from sop_ros.simlab.base_policy import BaseRecipe, base_policy
from sop_ros.simlab.demonstrations import demonstrations

__all__ = ["SIZES", "ExperimentOptions", "run_experiment"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Size:
    """Everything that differs between a full and a reduced study."""

    study: StudyConfig
    recipe: BaseRecipe


SIZES = {
    "full": Size(study=StudyConfig(), recipe=BaseRecipe(demos_per_task=100, train_steps=5000, batch_size=64)),
    "reduced": Size(
        study=StudyConfig(
            budget_s=60.0,
            learner_steps_per_s=1.0,
            batch_size=8,
            eval_every_s=30.0,
            eval_episodes_per_task=2,
            final_eval_episodes_per_task=2,
            device="cpu",
            conditions="deployment",
        ),
        recipe=BaseRecipe(demos_per_task=2, train_steps=10, batch_size=8),
    ),
}


@dataclass(frozen=True, kw_only=True)
class ExperimentOptions:
    """What ``sop experiment`` runs."""

    size: str = "full"
    arms: tuple[str, ...] = tuple(arm.name for arm in ARMS)
    out: Path = Path("out/experiment")
    jobs: int = 1
    # One run of every arm per seed; the report gives their mean and each run's result.
    seeds: tuple[int, ...] = (0,)
    base: Path | None = None
    budget_min: float | None = None
    # Budgets of single arms (minutes), over ``budget_min``: e.g. {"hg_dagger_1": 120}.
    arm_budget_min: dict = field(default_factory=dict)
    device: str | None = None
    # Rebuild results.md, results.json and the plots from the arms already in ``out``.
    report_only: bool = False
    # Runs already in ``out`` continue to the (longer) budget instead of starting over.
    resume: bool = False
    # StudyConfig fields to change, e.g. {"learner_steps_per_s": 4.0}.
    overrides: dict = field(default_factory=dict)


def run_experiment(options: ExperimentOptions) -> Path:
    """Run the study; return the path of ``results.md``."""
    size = SIZES[options.size]
    defaults = asdict(size.study)
    if options.report_only:
        return write_report(options.out, load_results(options.out), size=options.size, defaults=defaults)
    if not options.seeds or len(set(options.seeds)) != len(options.seeds):
        raise ConfigError(f"seeds must be distinct and at least one, got {list(options.seeds)}")
    study = size.study
    if options.budget_min is not None:
        study = replace(study, budget_s=options.budget_min * 60)
    if options.device is not None:
        study = replace(study, device=options.device)
    if options.overrides:
        current = {setting.name: setting.value for setting in flatten_config(study)}
        unknown = sorted(set(options.overrides) - set(current))
        if unknown:
            raise ConfigError(f"unknown study settings {unknown}; known: {', '.join(sorted(current))}")
        study = config_from_flat(StudyConfig, {**current, **options.overrides})
    by_name = {arm.name: arm for arm in ARMS}
    unknown = [name for name in options.arms if name not in by_name]
    if unknown:
        raise ConfigError(f"unknown arms {unknown}; choose from {', '.join(by_name)}")
    stray = sorted(set(options.arm_budget_min) - set(options.arms))
    if stray:
        raise ConfigError(f"budgets given for arms {stray} that this run does not include")
    out = options.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    policy_config = sim_policy_config()
    demos = demonstrations(out / "demos", episodes_per_task=size.recipe.demos_per_task, say=say)
    base = options.base or base_policy(out / "base", demos, policy_config, size.recipe)
    seeds = ", ".join(str(seed) for seed in options.seeds)
    say(f"base policy {base}; arms {', '.join(options.arms)}, seeds {seeds} ({options.jobs} at a time)")
    started = time.monotonic()
    results = run_arms(
        [by_name[name] for name in options.arms],
        study,
        policy_config=policy_config,
        base_weights=base,
        demos_dir=demos,
        out_dir=out,
        seeds=options.seeds,
        jobs=options.jobs,
        resume=options.resume,
        budgets_s={name: minutes * 60 for name, minutes in options.arm_budget_min.items()},
    )
    say(f"{len(results)} runs done in {(time.monotonic() - started) / 60:.1f} min")
    markdown = write_report(out, load_results(out), size=options.size, defaults=defaults)
    say(f"results: {markdown}")
    return markdown


def say(message: str) -> None:
    """Print an experiment progress line."""
    print(f"[sop experiment] {message}", flush=True)

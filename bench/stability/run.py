"""A/B of the learner's publish guards on the study's simulated clock, with the demo's learner settings.

    .venv/bin/python bench/stability/run.py --seeds 0,1,2,3 --jobs 12 --device cuda

Every *variant* (raw weights; a weights average; the validation-loss gate; both;
a smaller learning rate) runs the same loop as ``sop demo`` — two robots on
deployment layouts, the packaged base, the demo's learner (batch 32, lr 3e-4,
a version every 25 steps) — once per seed, on one simulated clock with a fixed
number of learner updates per simulated second, so the result does not depend
on the machine's load. At the end the last published version is judged alone
on held-out layouts of both distributions (deployment: the fleet's;
demonstrations: did it forget?), and its weights are checked (finite? norm?
distance from the base?).

Writes ``<out>/stability.json`` (every run) and ``<out>/stability.md`` (per
variant: final success pooled over seeds with Wilson 95 % intervals, the worst
seed, the worst intermediate evaluation, collapsed runs).
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from sop_ros.experiment.study import Arm, StudyConfig, run_arm  # noqa: E402
from sop_ros.simlab.stats import Rate, mean_rate  # noqa: E402

# Settings each variant changes (StudyConfig fields); the rest are the demo's.
_NONE = {"publish_average_decay": 0.0, "gate_samples": 0, "warmup_steps": 0}
_GATE = {"gate_samples": 256, "gate_tolerance": 0.1}
VARIANTS: dict[str, dict] = {
    "raw": _NONE,
    "average": {**_NONE, "publish_average_decay": 0.99},
    "gate": {**_NONE, **_GATE},
    "average_gate": {**_NONE, **_GATE, "publish_average_decay": 0.99},
    "lr1e-4": {**_NONE, "lr": 1e-4},
    "warmup": {**_NONE, "warmup_steps": 100},
    "warmup_gate": {**_NONE, **_GATE, "warmup_steps": 100},
    "warmup_average": {**_NONE, "publish_average_decay": 0.99, "warmup_steps": 100},
    # As warmup_average, with a gate that never refuses: it logs each version's validation loss.
    "warmup_average_watch": {
        **_NONE,
        "publish_average_decay": 0.99,
        "warmup_steps": 100,
        "gate_samples": 256,
        "gate_tolerance": 1e6,
    },
}

# A run counts as collapsed when its last version succeeds less often than this, mean over tasks,
# on the demonstrations' layouts (where the base succeeds in about 30 %).
COLLAPSED_BELOW = 0.05


def demo_like_study(
    *,
    budget_s: float,
    steps_per_s: float,
    final_episodes: int,
    eval_every_s: float,
    eval_episodes: int,
    device: str,
) -> StudyConfig:
    """The study settings that mirror ``sop demo``'s learner (see sop_ros/demo/run.py)."""
    return StudyConfig(
        budget_s=budget_s,
        learner_steps_per_s=steps_per_s,
        batch_size=32,
        publish_every_steps=25,
        lr=3e-4,
        eval_every_s=eval_every_s,
        eval_episodes_per_task=eval_episodes,
        final_eval_episodes_per_task=final_episodes,
        conditions="deployment",
        device=device,
    )


def one_run(variant: str, seed: int, study: StudyConfig, base: Path, demos: Path, out: Path) -> dict:
    """Run one variant with one seed; judge its last version on both distributions; check its weights."""
    import torch
    from safetensors.torch import load_file

    from sop_ros.core.policy import make_policy
    from sop_ros.sim import SimConfig
    from sop_ros.sim.policy import sim_policy_config
    from sop_ros.simlab.evaluate import evaluate_policy

    study = replace(study, seed=seed, **VARIANTS[variant])
    run_dir = out / f"{variant}_seed{seed}"
    result = run_arm(
        Arm(name=variant, robots=2),
        study,
        policy_config=sim_policy_config(),
        base_weights=base,
        demos_dir=demos,
        out_dir=run_dir,
    )
    last = run_dir / "state_weights.safetensors"  # the fleet's newest version, kept by the arm
    device = (
        "cuda" if study.device == "cuda" or (study.device == "auto" and torch.cuda.is_available()) else "cpu"
    )
    policy = make_policy(replace(sim_policy_config(), device=device))
    policy.load_trainable(last)
    forgetting = evaluate_policy(
        policy,
        episodes_per_task=study.final_eval_episodes_per_task // 2,
        sim=SimConfig(conditions="demonstrations"),
    )
    weights, start = load_file(last), load_file(base)
    finite = all(bool(torch.isfinite(t.float()).all()) for t in weights.values())
    norm = float(torch.sqrt(sum((t.float() ** 2).sum() for t in weights.values())))
    moved = float(torch.sqrt(sum(((weights[n].float() - start[n].float()) ** 2).sum() for n in weights)))
    base_norm = float(torch.sqrt(sum((t.float() ** 2).sum() for t in start.values())))
    episodes = study.final_eval_episodes_per_task
    return {
        "variant": variant,
        "seed": seed,
        "versions": result.versions,
        "learner_steps": result.learner_steps,
        "fleet_episodes": len(result.episodes),
        "final_version": result.final.version,
        "deployment": {t: round(s * episodes) for t, s in result.final.success.items()},
        "deployment_episodes": episodes,
        "demonstrations": {t: s.successes for t, s in forgetting.items()},
        "demonstrations_episodes": episodes // 2,
        "evaluations": [(e.time_s, e.version, e.mean_success) for e in result.evaluations],
        "weights_finite": finite,
        "weights_norm": norm,
        "weights_moved_rel": moved / base_norm,
        "seconds": result.seconds,
    }


def summarise(runs: list[dict]) -> str:
    """Markdown: per variant, final success pooled over seeds with intervals, worst seed, collapses."""
    lines = [
        "| variant | seeds | deployment, last version (pooled) | demonstrations, last version (pooled) "
        "| worst seed, deployment | worst intermediate evaluation | collapsed runs | versions |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for variant in VARIANTS:
        mine = sorted((r for r in runs if r["variant"] == variant), key=lambda r: r["seed"])
        if not mine:
            continue
        pooled = {}
        for side in ("deployment", "demonstrations"):
            tasks = sorted(mine[0][side])
            rates = [
                Rate(sum(r[side][t] for r in mine), sum(r[f"{side}_episodes"] for r in mine)) for t in tasks
            ]
            pooled[side] = mean_rate(rates).level_text()
        per_seed = [
            (sum(r["deployment"].values()) / (len(r["deployment"]) * r["deployment_episodes"]), r["seed"])
            for r in mine
        ]
        worst, worst_seed = min(per_seed)
        worst_eval = min((m for r in mine for t, _, m in r["evaluations"] if t > 0), default=float("nan"))
        collapsed = [
            r["seed"]
            for r in mine
            if sum(r["demonstrations"].values()) / (len(r["demonstrations"]) * r["demonstrations_episodes"])
            < COLLAPSED_BELOW
        ]
        versions = f"{min(r['versions'] for r in mine)}–{max(r['versions'] for r in mine)}"
        lines.append(
            f"| {variant} | {','.join(str(r['seed']) for r in mine)} | {pooled['deployment']} "
            f"| {pooled['demonstrations']} | {worst:.0%} (seed {worst_seed}) | {worst_eval:.0%} "
            f"| {collapsed or 'none'} | {versions} |"
        )
    lines += ["", "Per run (mean over tasks of the last version, deployment / demonstrations):", ""]
    for r in sorted(runs, key=lambda r: (r["variant"], r["seed"])):
        dep = sum(r["deployment"].values()) / (len(r["deployment"]) * r["deployment_episodes"])
        dem = sum(r["demonstrations"].values()) / (len(r["demonstrations"]) * r["demonstrations_episodes"])
        path = " ".join(f"{v}:{m:.0%}" for _, v, m in r["evaluations"])
        lines.append(
            f"- {r['variant']} seed {r['seed']}: {dep:.0%} / {dem:.0%}, {r['versions']} versions, "
            f"weights finite {r['weights_finite']}, moved {r['weights_moved_rel']:.3f} of the base's norm; "
            f"evaluations {path}"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="bench/out/stability")
    parser.add_argument("--seeds", default="0,1,2,3")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    parser.add_argument(
        "--budget-s", type=float, default=480.0, help="simulated seconds per run (the demo's 8 min)"
    )
    parser.add_argument("--steps-per-s", type=float, default=3.0, help="learner updates per simulated second")
    parser.add_argument(
        "--final-episodes", type=int, default=100, help="held-out deployment episodes per task"
    )
    parser.add_argument(
        "--eval-every-s", type=float, default=120.0, help="simulated seconds between evaluations"
    )
    parser.add_argument("--eval-episodes", type=int, default=20, help="episodes per task at each evaluation")
    parser.add_argument("--demos", help="demonstration bags (default: recorded into --out)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(processName)s %(message)s")
    for noisy in ("sop_ros.learner", "sop_ros.storage"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("sop_ros.learner.stability").setLevel(logging.INFO)

    from sop_ros.sim.policy import sim_policy_config
    from sop_ros.simlab.base_policy import BaseRecipe, base_policy
    from sop_ros.simlab.demonstrations import demonstrations

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    demos = Path(args.demos).resolve() if args.demos else demonstrations(out / "demos", episodes_per_task=100)
    recipe = BaseRecipe(demos_per_task=100, train_steps=5000, batch_size=64)  # the demo's: the packaged base
    base = base_policy(out / "base", demos, sim_policy_config(), recipe)
    study = demo_like_study(
        budget_s=args.budget_s,
        steps_per_s=args.steps_per_s,
        final_episodes=args.final_episodes,
        eval_every_s=args.eval_every_s,
        eval_episodes=args.eval_episodes,
        device=args.device,
    )
    runs = [(v, int(s)) for v in args.variants.split(",") for s in args.seeds.split(",")]
    context = multiprocessing.get_context("spawn")
    results = []
    with ProcessPoolExecutor(args.jobs, mp_context=context, initializer=_worker_init) as pool:
        futures = {pool.submit(one_run, v, s, study, base, demos, out): (v, s) for v, s in runs}
        for future in as_completed(futures):
            variant, seed = futures[future]
            try:
                results.append(future.result())
            except Exception as err:  # one failed run must not lose the others
                logging.exception("%s seed %d failed: %s", variant, seed, err)
            (out / "stability.json").write_text(json.dumps(results, indent=1))
    (out / "stability.md").write_text(summarise(results))
    print((out / "stability.md").read_text())


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(processName)s %(message)s")
    for noisy in ("sop_ros.learner", "sop_ros.storage"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("sop_ros.learner.stability").setLevel(logging.INFO)


if __name__ == "__main__":
    main()

"""How far offline imitation takes the simulated robots' policy: success against learner updates.

    python bench/learner/bc_probe.py --demos out/demos --steps 9000 --every 1500            # GPU
    python bench/learner/bc_probe.py --demos out/demos --steps 9000 --every 1500 --cosine

Trains the tiny π0 of the simulated robots (``sop_ros/sim/policy.py``) with the
learner itself (offline buffers from expert demonstration bags, task-balanced
sampling, HG-DAgger's step selection) and, every ``--every`` updates, evaluates the
weights alone on held-out layouts of every task, as the study does. The last
evaluation also tries 5 control steps per chunk and 10 denoising steps. Record the
demonstrations first (``sop_ros.simlab.demonstrations.record_demonstrations``; the
study's 100 per task live in ``<experiment out>/demos``). Writes every evaluation to
``--out``/<name>.json.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from sop_ros.core.policy import make_policy  # noqa: E402
from sop_ros.learner.builder import build_learner  # noqa: E402
from sop_ros.learner.offline import offline_settings  # noqa: E402
from sop_ros.sim import SimConfig  # noqa: E402
from sop_ros.sim.policy import sim_policy_config  # noqa: E402
from sop_ros.simlab.evaluate import evaluate_policy  # noqa: E402

# Evaluation variants: (name, denoising steps, control steps per chunk); the first is the study's.
VARIANTS = (("study", 5, 3), ("replan_5", 5, 5), ("denoise_10", 10, 3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--demos", type=Path, required=True, help="spool directory of demonstration bags")
    parser.add_argument("--steps", type=int, default=9000, help="learner updates")
    parser.add_argument("--every", type=int, default=1500, help="updates between evaluations")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--cosine", action="store_true", help="cosine learning-rate decay to lr / 100")
    parser.add_argument("--episodes", type=int, default=100, help="held-out episodes per task")
    parser.add_argument("--name", default="", help="result name (default: from the settings)")
    parser.add_argument("--out", type=Path, default=Path("bench/out/bc_probe"))
    args = parser.parse_args()
    name = args.name or f"b{args.batch}_lr{args.lr:g}" + ("_cosine" if args.cosine else "")
    with tempfile.TemporaryDirectory(prefix="bc_probe_") as scratch:
        train(args, name, Path(scratch))


def train(args: argparse.Namespace, name: str, work: Path) -> None:
    """Train and evaluate with the learner's store, checkpoints and weights under ``work``."""
    cuda = torch.cuda.is_available()
    config = sim_policy_config()
    policy = make_policy(config)
    settings = offline_settings(args.demos, work, batch_size=args.batch)
    # A changing learning rate needs the eager update: a captured graph holds the rate it saw.
    settings = replace(
        settings, hg_dagger=replace(settings.hg_dagger, lr=args.lr, cuda_graph=not args.cosine)
    )
    learner = build_learner(settings, policy, publish=lambda path, manifest: None)
    learner.start()
    optimizer = learner.algorithm.optimizer
    history = []
    args.out.mkdir(parents=True, exist_ok=True)
    while learner.step < args.steps:
        started = time.perf_counter()
        while learner.step < min(args.steps, len(history) * args.every + args.every):
            if args.cosine:
                lr = args.lr / 100 + 0.5 * (args.lr - args.lr / 100) * (
                    1 + math.cos(math.pi * learner.step / args.steps)
                )
                for group in optimizer.param_groups:
                    group["lr"] = lr
            learner.train_step()
        train_s = time.perf_counter() - started
        weights = work / "weights.safetensors"
        policy.save_trainable(weights, version="v0001")
        last = learner.step >= args.steps
        scores = {}
        for variant, denoising, replan in VARIANTS if last else VARIANTS[:1]:
            judge_config = replace(
                config, denoising_steps=denoising, compile_mode="cuda-graph" if cuda else "none"
            )
            judge = make_policy(judge_config)
            judge.load_trainable(weights)
            result = evaluate_policy(
                judge, episodes_per_task=args.episodes, sim=SimConfig(), replan_steps=replan
            )
            success = {task: score.success_rate for task, score in result.items()}
            scores[variant] = {**success, "mean": sum(success.values()) / len(success)}
        history.append(
            {
                "step": learner.step,
                "success": scores,
                "train_s": train_s,
                "lr": optimizer.param_groups[0]["lr"],
            }
        )
        print(name, json.dumps(history[-1]), flush=True)
        (args.out / f"{name}.json").write_text(json.dumps(history, indent=1))
    learner.close()


if __name__ == "__main__":
    main()

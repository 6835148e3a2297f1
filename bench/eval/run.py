"""Closed-loop evaluation: every episode at once with batched inference vs one episode at a time.

Usage:
    .venv/bin/python bench/eval/run.py                      # 20 episodes per task, packaged base policy
    .venv/bin/python bench/eval/run.py --episodes 10 --device cuda

Both runs evaluate the same policy (the packaged base of ``sop demo``) on the
same held-out layouts: ``evaluate_policy`` with ``infer_batch`` (one call
answers every episode that replans) against the same function given a policy
that only has ``infer`` (one call per episode per replan, the baseline). The
success rates must agree up to sampling noise; the ratio is the speed-up that
makes evaluating each new weights version affordable during ``sop demo`` and
the study. Results: ``bench/out/eval/eval.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from sop_ros.core.policy import Pi0Policy, make_policy  # noqa: E402
from sop_ros.sim.policy import sim_policy_config  # noqa: E402
from sop_ros.simlab.base_policy import ASSETS  # noqa: E402
from sop_ros.simlab.evaluate import evaluate_policy  # noqa: E402

OUT = REPO / "bench" / "out" / "eval"


class OneAtATime:
    """The policy without ``infer_batch``: what evaluation did before batching."""

    def __init__(self, policy: Pi0Policy) -> None:
        self._policy = policy

    def infer(self, observation):
        return self._policy.infer(observation)

    def reset(self) -> None:
        self._policy.reset()


def timed(policy, episodes: int) -> tuple[float, dict[str, float]]:
    start = time.perf_counter()
    scores = evaluate_policy(policy, episodes_per_task=episodes)
    return time.perf_counter() - start, {task: score.success_rate for task, score in scores.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--episodes", type=int, default=20, help="episodes per task")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args()

    policy = make_policy(replace(sim_policy_config(), device=args.device))
    policy.load_trainable(ASSETS / "base_sim_tiny.safetensors")
    timed(policy, 1)  # warm up
    batched_s, batched = timed(policy, args.episodes)
    single_s, single = timed(OneAtATime(policy), args.episodes)
    episodes = 3 * args.episodes
    result = {
        "machine": torch.cuda.get_device_name(0) if args.device == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "episodes": episodes,
        "batched_s": batched_s,
        "one_at_a_time_s": single_s,
        "speedup": single_s / batched_s,
        "success_batched": batched,
        "success_one_at_a_time": single,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "eval.json").write_text(json.dumps(result, indent=2))
    print(
        f"{episodes} episodes: batched {batched_s:.1f} s, one at a time {single_s:.1f} s "
        f"-> {result['speedup']:.1f}x; success {batched} vs {single}"
    )


if __name__ == "__main__":
    main()

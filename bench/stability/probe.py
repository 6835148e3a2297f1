"""What a published version does: numbers of its weights, its demonstration loss, how it moves.

    .venv/bin/python bench/stability/probe.py --demos out/ab/demos BASE.safetensors VERSION.safetensors ...

For each weights file: finite?, global norm and distance from the first file
(relative to its norm), the flow-matching loss on 256 fixed demonstration
samples with fixed noise (what the publish gate checks), and closed-loop on
held-out demonstration layouts: success, and how far the commanded joints
move per control step (a policy that stands still commands ~0).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


class _Recording:
    """Wraps a policy and keeps every chunk it returns."""

    def __init__(self, policy) -> None:
        self.policy = policy
        self.chunks: list[np.ndarray] = []

    def reset(self) -> None:
        self.policy.reset()

    def infer_batch(self, observations):
        chunks = self.policy.infer_batch(observations)
        self.chunks += [np.asarray(chunk.actions) for chunk in chunks]
        return chunks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("weights", nargs="+", type=Path)
    parser.add_argument("--demos", type=Path, required=True)
    parser.add_argument(
        "--episodes", type=int, default=10, help="held-out demonstration layouts per task (0: no closed loop)"
    )
    args = parser.parse_args()

    import torch
    from safetensors.torch import load_file

    from sop_ros.core.policy import make_policy
    from sop_ros.learner.buffers import OfflineBuffer, ReplayBuffers
    from sop_ros.learner.builder import storage_loader
    from sop_ros.learner.stability import ValidationGate, validation_refs
    from sop_ros.sim import SimConfig
    from sop_ros.sim.policy import sim_policy_config
    from sop_ros.simlab.evaluate import evaluate_policy

    torch.set_num_threads(1)
    config = sim_policy_config()
    policy = make_policy(config)
    load = storage_loader(cameras=tuple(config.camera_names), horizon=int(config.horizon))
    buffers = ReplayBuffers(offline=OfflineBuffer.from_directory(args.demos, load=load))
    samples = [buffers.get(ref) for ref in validation_refs(buffers, 256, seed=0)]
    first = load_file(args.weights[0])
    first_norm = float(torch.sqrt(sum((t.float() ** 2).sum() for t in first.values())))
    print("file | finite | norm | moved/base norm | demo loss | demo success | joint step per control step")
    for path in args.weights:
        tensors = load_file(path)
        finite = all(bool(torch.isfinite(t.float()).all()) for t in tensors.values())
        norm = float(torch.sqrt(sum((t.float() ** 2).sum() for t in tensors.values())))
        moved = float(torch.sqrt(sum(((tensors[n].float() - first[n].float()) ** 2).sum() for n in first)))
        policy.load_trainable(path)
        loss = ValidationGate(policy, samples, tolerance=0.0).loss()
        closed_loop = "– | –"
        if args.episodes:
            recording = _Recording(policy)
            scores = evaluate_policy(
                recording, episodes_per_task=args.episodes, sim=SimConfig(conditions="demonstrations")
            )
            success = sum(s.successes for s in scores.values()) / sum(s.episodes for s in scores.values())
            steps = np.concatenate([np.abs(np.diff(c, axis=0)).mean(axis=1) for c in recording.chunks])
            closed_loop = f"{success:.0%} | {steps.mean():.4f}"
        print(f"{path} | {finite} | {norm:.2f} | {moved / first_norm:.3f} | {loss:.4f} | {closed_loop}")


if __name__ == "__main__":
    main()

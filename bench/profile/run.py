"""Where π0's time goes: a torch profiler kernel table for inference and a training step.

    .venv/bin/python bench/profile/run.py                      # CPU, tiny π0, a minute
    python bench/profile/run.py --model full --cameras 3       # GPU (CUDA), bf16
    python bench/profile/run.py --model full --compile-mode cuda-graph

Runs a few untimed calls first (compilation, graph capture), then profiles
``--iters`` inferences (batch 1) and, unless ``--skip-train``, ``--iters``
training steps (frozen language model, AdamW). For each it writes, under
``bench/out/profile/``:

- ``<model>_<what>.txt``: the operator/kernel table sorted by self device time
  (CUDA kernels on a GPU, aten operators on a CPU);
- ``<model>_<what>.json``: totals by category (matrix products, attention,
  normalisation and element-wise work, copies, other), the wall time per call,
  the device-busy time per call and the idle gap between them (launch overhead,
  host work, synchronisation), and the counted FLOPs with the achieved TFLOP/s;
- ``<model>_<what>.trace.json``: a Chrome/Perfetto trace (``--trace``).

The categories come from kernel and operator names, so they are a guide: read
the table for the detail.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from flops import count_pi0_flops, mfu, rate_text  # noqa: E402

from sop_ros.core.policy import PolicyConfig, TrainingSample, make_policy  # noqa: E402
from sop_ros.core.types import Observation  # noqa: E402

CAMERAS = ("front", "left_wrist", "right_wrist")
INSTRUCTION = "pick up the red cube and place it in the bin"

# First match wins: attention before matrix products (flash kernels contain "gemm" in some names).
CATEGORIES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("attention", re.compile(r"attention|attn|fmha|flash|sdpa|softmax", re.I)),
    ("matmul", re.compile(r"gemm|matmul|\bmm\b|addmm|bmm|linear|sm90_xmma|cutlass|nvjet|conv", re.I)),
    ("copy", re.compile(r"copy|memcpy|memset|cat|to_copy|clone|contiguous|index|gather|scatter", re.I)),
    (
        "norm_elementwise",
        re.compile(r"norm|elementwise|vectorized|reduce|mul|add|exp|gelu|silu|tanh|pow|mean|rsqrt", re.I),
    ),
)


def category(name: str) -> str:
    for label, pattern in CATEGORIES:
        if pattern.search(name):
            return label
    return "other"


def parse_args() -> argparse.Namespace:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=("tiny", "full"), default="full" if cuda else "tiny")
    parser.add_argument("--cameras", type=int, default=3, choices=(1, 2, 3))
    parser.add_argument("--horizon", type=int, default=50)
    parser.add_argument("--steps", type=int, default=10, help="denoising steps")
    parser.add_argument("--action-dim", type=int, default=14)
    parser.add_argument("--compile-mode", default="none", help="PolicyConfig.compile_mode for inference")
    parser.add_argument("--iters", type=int, default=5, help="profiled calls of each kind")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--train-batch", type=int, default=None, help="default 8 (tiny) / 4 (full)")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--rows", type=int, default=40, help="rows of the printed table")
    parser.add_argument("--trace", action="store_true", help="also write a Chrome trace")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "profile")
    return parser.parse_args()


def policy_config(args: argparse.Namespace, compile_mode: str) -> PolicyConfig:
    names = tuple(f"joint_{i}" for i in range(args.action_dim))
    return PolicyConfig(
        model=args.model,
        camera_names=CAMERAS[: args.cameras],
        horizon=args.horizon,
        denoising_steps=args.steps,
        action_names=names,
        state_names=names,
        compile_mode=compile_mode,
    )


def observation(args: argparse.Namespace, side: int, seed: int) -> Observation:
    rng = np.random.default_rng(seed)
    return Observation(
        images={
            name: rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for name in CAMERAS[: args.cameras]
        },
        state=rng.normal(size=args.action_dim).astype(np.float32),
        instruction=INSTRUCTION,
    )


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def profiled(fn: Callable[[], Any], *, iters: int, warmup: int) -> tuple[torch.profiler.profile, float]:
    """Profile ``iters`` calls of ``fn`` after ``warmup`` untimed ones.

    Returns:
        The profile and the wall-clock seconds per profiled call.
    """
    for _ in range(warmup):
        fn()
    sync()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities, record_shapes=False) as prof:
        started = time.perf_counter()
        for _ in range(iters):
            fn()
        sync()
        wall_s = (time.perf_counter() - started) / iters
    return prof, wall_s


def summarise(
    prof: torch.profiler.profile, wall_s: float, iters: int, flops: int, device: str, dtype: torch.dtype
) -> dict[str, Any]:
    """Totals by category per call, busy time vs wall time, achieved TFLOP/s."""
    on_gpu = torch.cuda.is_available()
    by_category: dict[str, float] = defaultdict(float)
    busy_us = 0.0
    for event in prof.key_averages():
        if on_gpu:
            self_us = float(getattr(event, "self_device_time_total", 0.0) or 0.0)
        else:
            self_us = float(event.self_cpu_time_total)
        if self_us <= 0:
            continue
        by_category[category(event.key)] += self_us
        busy_us += self_us
    busy_ms = busy_us / 1e3 / iters
    wall_ms = wall_s * 1e3
    rate = flops / wall_s
    return {
        "wall_ms_per_call": wall_ms,
        "busy_ms_per_call": busy_ms,
        # On a GPU: time the device sat idle between kernels (launches, host work, syncs).
        "idle_ms_per_call": max(wall_ms - busy_ms, 0.0) if on_gpu else None,
        "ms_per_call_by_category": {
            k: v / 1e3 / iters for k, v in sorted(by_category.items(), key=lambda kv: -kv[1])
        },
        "counted_flops_per_call": flops,
        "tflops_per_s": rate / 1e12,
        "mfu": mfu(rate, device, dtype),
    }


def report(
    name: str, prof: torch.profiler.profile, summary: dict[str, Any], args: argparse.Namespace
) -> None:
    sort_by = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=sort_by, row_limit=args.rows)
    (args.out / f"{args.model}_{name}.txt").write_text(table)
    (args.out / f"{args.model}_{name}.json").write_text(json.dumps(summary, indent=2))
    if args.trace:
        prof.export_chrome_trace(str(args.out / f"{args.model}_{name}.trace.json"))
    print(table)
    parts = ", ".join(f"{k} {v:.2f}" for k, v in summary["ms_per_call_by_category"].items())
    line = (
        f"{name}: {summary['wall_ms_per_call']:.2f} ms per call, "
        f"busy {summary['busy_ms_per_call']:.2f} ms ({parts})"
    )
    if summary["idle_ms_per_call"] is not None:
        line += f", device idle {summary['idle_ms_per_call']:.2f} ms"
    print(f"{line}; {rate_text(summary['tflops_per_s'] * 1e12, summary['mfu'])}")


def main() -> int:
    args = parse_args()
    if args.model == "full" and not torch.cuda.is_available():
        print("the full model needs CUDA; use --model tiny on a CPU", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    flops = count_pi0_flops(policy_config(args, "none"))
    policy = make_policy(policy_config(args, args.compile_mode))
    print(f"π0 {args.model} on {device}, {args.cameras} cameras, inference path {policy.inference_path}")
    side = policy.image_size_px
    obs = [observation(args, side, i) for i in range(4)]
    counter = iter(range(10**9))

    prof, wall_s = profiled(
        lambda: policy.infer(obs[next(counter) % 4]), iters=args.iters, warmup=args.warmup
    )
    report(
        "infer", prof, summarise(prof, wall_s, args.iters, flops.inference_flops, device, policy.dtype), args
    )

    if not args.skip_train:
        batch = args.train_batch or (8 if args.model == "tiny" else 4)
        rng = np.random.default_rng(0)
        samples = [
            TrainingSample(
                images=obs[i % 4].images,
                state=obs[i % 4].state,
                instruction=INSTRUCTION,
                actions=rng.normal(size=(args.horizon, args.action_dim)).astype(np.float32),
            )
            for i in range(batch)
        ]
        optimizer = torch.optim.AdamW(policy.trainable_parameters(), lr=1e-5)

        def step() -> None:
            policy.loss(policy.collate(samples)).mean().backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        prof, wall_s = profiled(step, iters=args.iters, warmup=args.warmup)
        summary = summarise(prof, wall_s, args.iters, flops.train_sample_flops * batch, device, policy.dtype)
        summary["batch"] = batch
        report("train", prof, summary, args)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

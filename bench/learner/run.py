"""Learner throughput: data pipeline vs training step, peak memory, time to publish one version.

    .venv/bin/python bench/learner/run.py                 # CPU: tiny π0, 64 px
    python bench/learner/run.py --model full --batch 16   # GPU: full π0, 224 px, bf16
    python bench/learner/run.py --model tiny --batch 256 --cameras head   # the study's learner

1. Records expert demonstration bags from the simulator (two cameras at the
   model's image size) — the learner's real input.
2. Data pipeline alone: sample a task-balanced batch and decode it from the
   bags (JPEG → arrays, thread pool), as the learner does, no model: samples/s,
   decoding every frame (the baseline) and with the frames in the learner's
   decoded-frame cache (how a long run sees them), with the ratio.
3. Training: ``Learner.train_step`` end to end (sample, decode, π0 flow-matching
   loss, backward, AdamW on the trainable set, frozen language model): samples/s,
   step time, peak GPU memory. On a GPU twice: the update replayed as a CUDA graph
   (the learner's default) and eager (the baseline), with the ratio, and the
   parts of a step: collating a batch alone and the update on a collated batch.
4. Publishing: ``Learner.publish`` (write the trainable safetensors file, hash
   it into a manifest): seconds per version.

Prints the pipeline / training ratio (target ≥ 2: the data pipeline must
outrun the GPU). Writes JSON to bench/out/learner/<model>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from sop_ros.core.policy import PolicyConfig, make_policy  # noqa: E402
from sop_ros.learner.algorithms import make_algorithm  # noqa: E402
from sop_ros.learner.builder import build_learner  # noqa: E402
from sop_ros.learner.offline import offline_settings  # noqa: E402
from sop_ros.sim import ACTION_NAMES, SimConfig  # noqa: E402
from sop_ros.simlab.demonstrations import record_demonstrations  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
from flops import amount_text, count_pi0_flops, mfu, rate_text  # noqa: E402


def parse_args() -> argparse.Namespace:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=("tiny", "full"), default="full" if cuda else "tiny")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="timed training steps (after 3 untimed)")
    parser.add_argument("--demos-per-task", type=int, default=4)
    parser.add_argument("--decode-workers", type=int, default=8 if cuda else 2)
    parser.add_argument("--cameras", default="head,wrist", help="comma-separated camera names")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "learner")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    image_px = 224 if args.model == "full" else 64
    cameras = tuple(args.cameras.split(","))
    policy_config = PolicyConfig(
        model=args.model,
        camera_names=cameras,
        action_names=ACTION_NAMES,
        state_names=ACTION_NAMES,
        horizon=50 if args.model == "full" else 10,
        control_period_s=0.1,
    )
    result: dict = {
        "model": args.model,
        "batch": args.batch,
        "cameras": len(cameras),
        "image_px": image_px,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "date": time.strftime("%Y-%m-%d"),
    }
    flops = count_pi0_flops(policy_config)
    result["flops"] = flops.to_json()
    print(f"{amount_text(flops.train_sample_flops)} per training sample (counted)", flush=True)
    with tempfile.TemporaryDirectory(prefix="sop-bench-learner-") as tmp:
        root = Path(tmp)
        sim = replace(SimConfig(), cameras=cameras, image_width_px=image_px, image_height_px=image_px)
        started = time.perf_counter()
        bags = record_demonstrations(root / "demos", episodes_per_task=args.demos_per_task, sim=sim)
        print(f"recorded {len(bags)} demonstration bags in {time.perf_counter() - started:.1f} s", flush=True)

        policy = make_policy(policy_config)
        settings = offline_settings(
            root / "demos", root, batch_size=args.batch, decode_workers=args.decode_workers
        )
        learner = build_learner(settings, policy, publish=lambda path, manifest: None)
        learner.start()
        samples = sum(b.num_steps for b in learner.buffers.offline.values())
        print(f"{samples} steps indexed in {len(learner.buffers.tasks())} task buffers", flush=True)

        result.update(cache_against_decoding(learner, args))
        print(
            f"data pipeline alone: {result['pipeline_samples_per_s']:.0f} samples/s with decoded frames "
            f"cached, {result['pipeline_uncached_samples_per_s']:.0f} decoding every frame "
            f"({result['cache_over_decoding']:.1f}x)",
            flush=True,
        )

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        losses: list[float] = []
        step_s = timed(lambda: losses.append(learner.train_step().stats["loss"]), args.steps)
        result.update(
            train_step_ms=1e3 * step_s,
            train_samples_per_s=args.batch / step_s,
            loss_first_last=[losses[0], losses[-1]],
        )
        if torch.cuda.is_available():
            result["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
            result.update(graph_against_eager(learner, args, step_s))
        result["pipeline_over_training"] = result["pipeline_samples_per_s"] / result["train_samples_per_s"]
        result["train_tflops_per_s"] = result["train_samples_per_s"] * flops.train_sample_flops / 1e12
        result["mfu"] = mfu(result["train_tflops_per_s"] * 1e12, result["device"], policy.dtype)
        print(
            f"training: {result['train_step_ms']:.0f} ms/step = "
            f"{result['train_samples_per_s']:.1f} samples/s "
            f"({rate_text(result['train_tflops_per_s'] * 1e12, result['mfu'])}); "
            f"pipeline / training = {result['pipeline_over_training']:.1f}x (target >= 2)",
            flush=True,
        )

        started = time.perf_counter()
        manifest = learner.publish()
        result["publish_s"] = time.perf_counter() - started
        result["published_mb"] = manifest.size_bytes / 1e6
        print(
            f"publish one version: {result['publish_s']:.2f} s for {result['published_mb']:.0f} MB",
            flush=True,
        )
        learner.close()

    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.model}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")
    return 0


def pipeline_rate(learner, args: argparse.Namespace, batches: int = 10) -> float:
    """Samples/s of sampling + decoding batches exactly as the learner does, with no model."""
    started = time.perf_counter()
    count = 0
    for _ in range(batches):
        samples = learner.decode_batch(learner.sampler.sample(learner.buffers, args.batch))
        count += len(samples)
        assert all(isinstance(s.state, np.ndarray) for s in samples)
    return count / (time.perf_counter() - started)


def cache_against_decoding(learner, args: argparse.Namespace) -> dict:
    """The pipeline decoding every frame (the baseline), then with every frame in the learner's cache.

    Every demonstration frame is cached first, as a long run's would be: each is
    sampled many times over a run.
    """
    frames = learner.buffers.frames
    assert frames is not None, "the learner was built without a frame cache"
    learner.buffers.frames = None
    uncached = pipeline_rate(learner, args)
    learner.buffers.frames = frames
    for buffer in learner.buffers.offline.values():
        learner.decode_batch(buffer.sample_refs(buffer.num_steps * 8, np.random.default_rng(0)))
    cached = pipeline_rate(learner, args)
    return {
        "pipeline_samples_per_s": cached,
        "pipeline_uncached_samples_per_s": uncached,
        "cache_over_decoding": cached / uncached,
        "frame_cache_frames": len(frames),
        "frame_cache_mib": frames.bytes / 2**20,
    }


def graph_against_eager(learner, args: argparse.Namespace, graphed_step_s: float) -> dict:
    """The same steps with an eager update (the baseline), and a step's parts, on one GPU."""
    graphed = learner.algorithm
    assert graphed._graphed_step is not None and graphed._graphed_step.graphs, "the update was not graphed"
    eager = make_algorithm(
        graphed.name, learner.policy, config=replace(graphed.config, cuda_graph=False), dist=graphed.dist
    )
    learner.algorithm = eager
    eager_step_s = timed(learner.train_step, args.steps)
    samples = [learner.buffers.get(ref) for ref in learner.sampler.sample(learner.buffers, args.batch)]
    collate_s = timed(lambda: learner.policy.collate(samples), args.steps)
    eager_update_s = timed(lambda: eager.update(samples), args.steps)
    graphed_update_s = timed(lambda: graphed.update(samples), args.steps)
    learner.algorithm = graphed
    figures = {
        "train_step_eager_ms": 1e3 * eager_step_s,
        "eager_over_graphed": eager_step_s / graphed_step_s,
        "collate_ms": 1e3 * collate_s,
        "update_eager_ms": 1e3 * eager_update_s,
        "update_graphed_ms": 1e3 * graphed_update_s,
    }
    print(
        f"training, eager update (baseline): {figures['train_step_eager_ms']:.1f} ms/step; "
        f"graphed is {figures['eager_over_graphed']:.2f}x faster end to end. Parts: collate "
        f"{figures['collate_ms']:.1f} ms, update on a collated batch (collate included) eager "
        f"{figures['update_eager_ms']:.1f} ms, graphed {figures['update_graphed_ms']:.1f} ms",
        flush=True,
    )
    return figures


def timed(fn, steps: int, warmup: int = 3) -> float:
    """Seconds per call of ``fn`` after ``warmup`` untimed calls (the GPU drained around the timing)."""
    for _ in range(warmup):
        fn()
    sync()
    started = time.perf_counter()
    for _ in range(steps):
        fn()
    sync()
    return (time.perf_counter() - started) / steps


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


if __name__ == "__main__":
    sys.exit(main())

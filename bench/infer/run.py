"""π0 inference latency (eager vs optimised, same run), training throughput and weight-swap stall.

Usage:
    .venv/bin/python bench/infer/run.py --model tiny            # CPU, a minute
    python bench/infer/run.py --model full --cameras 1 2 3      # GPU (CUDA), bf16

For every camera count it times ``Pi0Policy.infer`` (batch 1; median and p90 ms
per chunk) on the eager ``transformers`` path and on the optimised paths (on
CUDA: ``cuda-graph``, one captured graph of the whole ``sample_actions``, and
``reduce-overhead``, ``torch.compile`` with CUDA graphs; the CPU has no
optimised path and reports the eager one only), prints the ratios, then times
training steps (frozen language model, AdamW) and the stage/activate swap of the
trainable set. Results go to ``bench/out/infer/<model>.json`` and ``.png``,
both rewritten after every measurement, so a run cut short keeps what it
measured; ``--budget-s`` skips settings that would start late, and
``--cameras 3`` (say) runs one setting per command where commands are time-limited.
The full network is drawn on the GPU with a fixed seed (not the CPU draw the
policy uses for robot/learner agreement), which only matters for timing.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from sop_ros.core.policy import Pi0Policy, PolicyConfig, TrainingSample, make_policy  # noqa: E402
from sop_ros.core.policy.config import pi0_config  # noqa: E402
from sop_ros.core.policy.pi0 import is_trainable  # noqa: E402
from sop_ros.core.policy.tokenizer import IMAGE_TOKEN, build_tokenizer  # noqa: E402
from sop_ros.core.types import Observation  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
from flops import count_pi0_flops, describe_flops, mfu, rate_text  # noqa: E402

CAMERAS = ("front", "left_wrist", "right_wrist")
INSTRUCTION = "pick up the red cube and place it in the bin"


def parse_args() -> argparse.Namespace:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=("tiny", "full"), default="full" if cuda else "tiny")
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 2, 3], choices=(1, 2, 3))
    parser.add_argument("--horizon", type=int, default=50)
    parser.add_argument("--steps", type=int, default=10, help="denoising steps")
    parser.add_argument("--action-dim", type=int, default=14)
    parser.add_argument("--iters", type=int, default=30, help="timed inferences per setting")
    parser.add_argument("--warmup", type=int, default=3, help="untimed inferences first (compilation)")
    parser.add_argument(
        "--optimized",
        nargs="+",
        default=["cuda-graph", "reduce-overhead"],
        choices=("none", "cuda-graph", "default", "reduce-overhead", "max-autotune"),
        help="optimised paths timed against eager (CUDA only); 'none' for eager alone",
    )
    parser.add_argument(
        "--attention",
        nargs="+",
        default=["auto"],
        choices=("auto", "cudnn", "flash", "efficient", "math"),
        help="PolicyConfig.attention choices timed on every path (CUDA only; auto = PyTorch's choice)",
    )
    parser.add_argument("--train-batch", type=int, default=None, help="default 32 (tiny) / 4 (full)")
    parser.add_argument("--train-steps", type=int, default=10)
    parser.add_argument(
        "--train-cameras", type=int, default=None, choices=(1, 2, 3), help="default: most cameras"
    )
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-swap", action="store_true")
    parser.add_argument("--budget-s", type=float, default=540.0, help="skip what would start after this")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "infer")
    return parser.parse_args()


def environment() -> dict[str, Any]:
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda_available": torch.cuda.is_available(),
        "cpu_threads": torch.get_num_threads(),
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(
            gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda
        )
    return info


def policy_config(
    args: argparse.Namespace, cameras: int, compile_mode: str, attention: str = "auto"
) -> PolicyConfig:
    names = tuple(f"joint_{i}" for i in range(args.action_dim))
    return PolicyConfig(
        attention=attention,
        model=args.model,
        camera_names=CAMERAS[:cameras],
        horizon=args.horizon,
        denoising_steps=args.steps,
        action_names=names,
        state_names=names,
        compile_mode=compile_mode,
    )


def build_network(args: argparse.Namespace) -> torch.nn.Module:
    """One network for every setting: only the inputs depend on the camera count."""
    from transformers import PI0ForConditionalGeneration

    tokenizer = build_tokenizer()
    pi0 = pi0_config(
        policy_config(args, 1, "none"),
        vocab_size=len(tokenizer),
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
    )
    if torch.cuda.is_available():
        # Drawing 3.5 B weights on the GPU takes seconds, on the CPU minutes; the
        # bench needs no CPU-reproducible init.
        with torch.device("cuda"):
            torch.manual_seed(0)
            return PI0ForConditionalGeneration(pi0).to(torch.bfloat16)
    return PI0ForConditionalGeneration(pi0)


def parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    counts = {"total": 0, "trainable": 0, "vision_tower": 0, "projector": 0, "action_expert": 0, "other": 0}
    for name, param in model.named_parameters():
        n = param.numel()
        counts["total"] += n
        if not is_trainable(name):
            continue
        counts["trainable"] += n
        if ".vision_tower." in name:
            counts["vision_tower"] += n
        elif ".multi_modal_projector." in name:
            counts["projector"] += n
        elif name.startswith("model.dit."):
            counts["action_expert"] += n
        else:
            counts["other"] += n
    return counts


def full_parameter_counts(args: argparse.Namespace) -> dict[str, int]:
    """Count the full model's parameters on the meta device (no memory, no init)."""
    from transformers import PI0ForConditionalGeneration

    tokenizer = build_tokenizer()
    cfg = policy_config(argparse.Namespace(**{**vars(args), "model": "full"}), 1, "none")
    pi0 = pi0_config(cfg, vocab_size=len(tokenizer), image_token_id=4)
    with torch.device("meta"):
        return parameter_counts(PI0ForConditionalGeneration(pi0))


def observation(args: argparse.Namespace, cameras: int, side: int, seed: int) -> Observation:
    rng = np.random.default_rng(seed)
    return Observation(
        images={name: rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for name in CAMERAS[:cameras]},
        state=rng.normal(size=args.action_dim).astype(np.float32),
        instruction=INSTRUCTION,
    )


def reference_actions(policy: Pi0Policy, args: argparse.Namespace, cameras: int) -> np.ndarray:
    """The actions of three fixed observations, from the same noise (the policy is reset first)."""
    side = policy.image_size_px
    policy.reset()
    return np.stack([policy.infer(observation(args, cameras, side, 900 + i)).actions for i in range(3)])


def time_inference(policy: Pi0Policy, args: argparse.Namespace, cameras: int) -> dict[str, Any]:
    side = policy.image_size_px
    start = time.perf_counter()
    for i in range(args.warmup):
        policy.infer(observation(args, cameras, side, i))
    warmup_s = time.perf_counter() - start
    times = [policy.infer(observation(args, cameras, side, 100 + i)).infer_ms for i in range(args.iters)]
    return {
        "path": policy.inference_path,
        "median_ms": float(np.median(times)),
        "p90_ms": float(np.percentile(times, 90)),
        "min_ms": float(np.min(times)),
        "warmup_s": round(warmup_s, 2),
        "iters": args.iters,
    }


def train_cameras(args: argparse.Namespace) -> int:
    return args.train_cameras or max(args.cameras)


def achieved(flops: int, seconds: float, env: dict[str, Any], policy: Pi0Policy) -> dict[str, Any]:
    """Counted FLOPs over measured seconds, and MFU where the device's peak is known."""
    rate = flops / seconds
    utilisation = mfu(rate, env.get("gpu", "cpu"), policy.dtype)
    return {"tflops_per_s": rate / 1e12, "mfu": utilisation}


def describe(row: dict[str, Any]) -> str:
    return rate_text(row["tflops_per_s"] * 1e12, row.get("mfu"))


def time_training(policy: Pi0Policy, args: argparse.Namespace, batch_size: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    side = policy.image_size_px
    cameras = len(policy.config.camera_names)
    samples = [
        TrainingSample(
            images=observation(args, cameras, side, i).images,
            state=rng.normal(size=args.action_dim).astype(np.float32),
            instruction=INSTRUCTION,
            actions=rng.normal(size=(args.horizon, args.action_dim)).astype(np.float32),
            advantage=bool(i % 2),
        )
        for i in range(batch_size)
    ]
    optimizer = torch.optim.AdamW(policy.trainable_parameters(), lr=1e-4)

    def step() -> float:
        loss = policy.loss(policy.collate(samples)).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    for _ in range(2):
        step()
    start = time.perf_counter()
    for _ in range(args.train_steps):
        step()
    elapsed = time.perf_counter() - start
    result = {
        "batch": batch_size,
        "cameras": cameras,
        "step_ms": elapsed / args.train_steps * 1e3,
        "samples_per_s": batch_size * args.train_steps / elapsed,
    }
    if torch.cuda.is_available():
        result["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return result


def time_swap(policy: Pi0Policy) -> dict[str, Any]:
    state = {name: tensor.detach().to("cpu").clone() for name, tensor in policy.trainable_state().items()}
    size_bytes = sum(t.numel() * t.element_size() for t in state.values())
    start = time.perf_counter()
    policy.stage(state, version="v0001")
    stage_memory_s = time.perf_counter() - start
    activate_ms = [policy.activate()]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "weights.safetensors"
        policy.save_trainable(path, version="v0002")
        start = time.perf_counter()
        policy.stage(path)
        stage_file_s = time.perf_counter() - start
    activate_ms.append(policy.activate())
    for i in range(3):
        policy.stage(state, version=f"v{i + 3:04d}")
        activate_ms.append(policy.activate())
    return {
        "trainable_mb": round(size_bytes / 1e6, 1),
        "stage_from_memory_s": round(stage_memory_s, 3),
        "stage_from_file_s": round(stage_file_s, 3),
        "activate_ms": [round(ms, 3) for ms in activate_ms],
        "activate_ms_median": float(np.median(activate_ms)),
        "path": policy.inference_path,
    }


def plot(results: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib
    except ImportError:  # the JSON holds every figure; the picture is a convenience
        results["png"] = "not drawn: matplotlib is not installed"
        return

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["inference"]
    cameras = sorted({row["cameras"] for row in rows})
    variants = sorted({row["variant"] for row in rows})
    fig, ax = plt.subplots(figsize=(6.5, 4))
    width = 0.8 / max(len(variants), 1)
    for k, variant in enumerate(variants):
        xs, med, p90 = [], [], []
        for row in rows:
            if row["variant"] == variant and "median_ms" in row:
                xs.append(cameras.index(row["cameras"]) + k * width)
                med.append(row["median_ms"])
                p90.append(row["p90_ms"] - row["median_ms"])
        ax.bar(xs, med, width, yerr=[np.zeros(len(p90)), p90], capsize=3, label=variant)
    ax.set_xticks(
        [i + width * (len(variants) - 1) / 2 for i in range(len(cameras))], [f"{c} cam" for c in cameras]
    )
    ax.set_ylabel("ms per chunk (median, bar to p90)")
    env = results["environment"]
    device = env.get("gpu", "CPU")
    ax.set_title(
        f"π0 {results['model']} · {device} · H={results['horizon']}, {results['steps']} steps", fontsize=10
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    args = parse_args()
    # A run killed at a time limit still shows its progress.
    sys.stdout.reconfigure(line_buffering=True)
    begun = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / f"{args.model}.json"
    env = environment()
    device = env.get("gpu", "CPU (no CUDA)")
    print(f"torch {env['torch']}, transformers {env.get('transformers')}, device {device}")
    if args.model == "full" and not env["cuda_available"]:
        print("the full model needs CUDA; use --model tiny on a CPU", file=sys.stderr)
        return 2
    results: dict[str, Any] = {
        "model": args.model,
        "horizon": args.horizon,
        "steps": args.steps,
        "action_dim": args.action_dim,
        "environment": env,
        "parameters": {},
        "inference": [],
        "ratios": {},
    }

    def save() -> None:
        json_path.write_text(json.dumps(results, indent=2))
        if results["inference"]:
            plot(results, args.out / f"{args.model}.png")

    def over_budget(what: str) -> bool:
        if time.monotonic() - begun > args.budget_s:
            print(f"skipped {what}: past --budget-s {args.budget_s:.0f}")
            results.setdefault("skipped", []).append(what)
            save()
            return True
        return False

    results["parameters"]["full"] = full_parameter_counts(args)
    start = time.perf_counter()
    network = build_network(args)
    results["build_s"] = round(time.perf_counter() - start, 1)
    results["parameters"][args.model] = parameter_counts(network)
    print(f"built {args.model} in {results['build_s']} s; parameters: {results['parameters'][args.model]}")
    save()

    # Counted, not assumed: one inference and one training sample per camera count.
    flops = {
        c: count_pi0_flops(policy_config(args, c, "none"))
        for c in sorted({*args.cameras, train_cameras(args)})
    }
    results["flops"] = {f"{c}cam": f.to_json() for c, f in flops.items()}
    for c, f in flops.items():
        print(f"{c} cam: {describe_flops(f, args.steps)}")
    save()

    optimised = [mode for mode in args.optimized if mode != "none"]
    kernels = [k for k in args.attention if k != "auto"] if torch.cuda.is_available() else []
    # A variant is a path, with "+<kernel>" where PolicyConfig.attention is not auto.
    variants = ["eager", *(f"eager+{k}" for k in kernels)]
    if optimised and torch.cuda.is_available():
        variants += [f"{m}{'' if k == 'auto' else '+' + k}" for m in optimised for k in ("auto", *kernels)]
    elif optimised:
        results["note"] = (
            "no CUDA: the optimised paths (CUDA graphs, torch.compile) are eager here; not timed"
        )
        print(results["note"])
    for cameras in args.cameras:
        medians = {}
        eager_actions: np.ndarray | None = None
        for variant in variants:
            if over_budget(f"inference {cameras} cam {variant}"):
                continue
            path, _, kernel = variant.partition("+")
            mode = "none" if path == "eager" else path
            row: dict[str, Any] = {"cameras": cameras, "variant": variant, "attention": kernel or "auto"}
            try:
                policy = make_policy(policy_config(args, cameras, mode, kernel or "auto"), model=network)
                row.update(time_inference(policy, args, cameras))
                actions = reference_actions(policy, args, cameras)
                if variant == "eager":
                    eager_actions = actions
                if eager_actions is not None:
                    # Equality with the eager baseline: the largest action difference, same noise.
                    row["max_abs_diff_vs_eager"] = float(np.abs(actions - eager_actions).max())
                    row["action_scale"] = float(np.abs(eager_actions).max())
                row.update(achieved(flops[cameras].inference_flops, row["median_ms"] / 1e3, env, policy))
                medians[variant] = row["median_ms"]
                print(
                    f"{cameras} cam {variant:>24}: median {row['median_ms']:8.2f} ms"
                    f"  p90 {row['p90_ms']:8.2f} ms  {describe(row)}"
                    f"  max |Δaction| vs eager {row.get('max_abs_diff_vs_eager', float('nan')):.2e}"
                    f"  ({row['path']}, warm-up {row['warmup_s']} s)"
                )
            except Exception as err:  # keep the other settings' numbers
                row["error"] = f"{type(err).__name__}: {err}"
                traceback.print_exc()
            results["inference"].append(row)
            save()
        for variant, row in ((r["variant"], r) for r in results["inference"] if r["cameras"] == cameras):
            if variant == "eager" or "eager" not in medians or variant not in medians:
                continue
            ratio = medians["eager"] / medians[variant]
            results["ratios"][f"{cameras}cam_eager_over_{variant}"] = ratio
            if row["path"].startswith("eager"):
                # The optimised path failed and the policy fell back to eager: not a real comparison.
                results["ratios"][f"{cameras}cam_{variant}_note"] = row["path"]
            print(f"{cameras} cam: eager / {variant} = {ratio:.2f}x ({row['path']})")
        save()
        torch._dynamo.reset()

    cameras = train_cameras(args)
    policy = make_policy(policy_config(args, cameras, "none"), model=network)
    if not args.skip_train and not over_budget("training"):
        batch = args.train_batch or (32 if args.model == "tiny" else 4)
        try:
            results["training"] = time_training(policy, args, batch)
            results["training"].update(
                achieved(
                    flops[cameras].train_sample_flops * batch,
                    results["training"]["step_ms"] / 1e3,
                    env,
                    policy,
                )
            )
            print(f"training: {results['training']}")
        except torch.OutOfMemoryError as err:
            results["training"] = {"batch": batch, "error": f"out of memory: {err}"}
            print(f"training at batch {batch}: out of memory")
        save()
    if not args.skip_swap and not over_budget("swap"):
        results["swap"] = time_swap(policy)
        print(f"swap: {results['swap']}")
        save()
    print(f"wrote {json_path} and {args.out / f'{args.model}.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

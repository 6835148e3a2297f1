"""π0's attention calls, one by one, on every SDPA kernel (CUDA).

    python bench/attention/run.py --cameras 3        # GPU, full π0, bf16

Records the ``scaled_dot_product_attention`` calls of one eager inference of
the full π0 (their shapes, dtypes and masks: the prefix over every camera and
the prompt, then the action expert's queries against the prefix at every
denoising step), then times each distinct call on each kernel
(``PolicyConfig.attention``: auto = PyTorch's choice, cuDNN, FlashAttention,
memory-efficient, math) with CUDA events, and checks each kernel's output
against the math kernel's. The baseline is ``auto``, same run. Prints a table
(µs per call, calls per inference, ms per inference, ratio to auto) and writes
``bench/out/attention/attention.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from flops import model_parser  # noqa: E402
from infer.run import CAMERAS, INSTRUCTION, build_network, policy_config  # noqa: E402

from sop_ros.core.policy import Policy, make_policy  # noqa: E402
from sop_ros.core.policy.attention import KERNELS, attention_kernels  # noqa: E402
from sop_ros.core.types import Observation  # noqa: E402

CHOICES = ("auto", *KERNELS)


def parse_args() -> argparse.Namespace:
    parser = model_parser(__doc__)
    parser.add_argument("--iters", type=int, default=50, help="timed calls per kernel and call shape")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "attention")
    return parser.parse_args()


def signature(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    q, k = args[:2]
    mask = kwargs.get("attn_mask")
    parts = [f"q{tuple(q.shape)}", f"kv{tuple(k.shape)}", str(q.dtype).removeprefix("torch.")]
    if mask is None:
        parts.append("no mask")
    else:
        parts.append(f"mask{tuple(mask.shape)} {str(mask.dtype).removeprefix('torch.')}")
    for key in ("is_causal", "enable_gqa", "scale"):
        if kwargs.get(key):
            parts.append(f"{key}={kwargs[key]}")
    return " ".join(parts)


def record_calls(policy: Policy, observation: Observation) -> tuple[Counter[str], dict[str, tuple]]:
    """Every SDPA call of one inference: how often each signature comes, and one copy of its inputs."""
    original = torch.nn.functional.scaled_dot_product_attention
    counts: Counter[str] = Counter()
    inputs: dict[str, tuple] = {}

    def recording(*args: Any, **kwargs: Any) -> torch.Tensor:
        key = signature(args, kwargs)
        counts[key] += 1
        if key not in inputs:
            inputs[key] = (
                tuple(a.clone() if torch.is_tensor(a) else a for a in args),
                {k: (v.clone() if torch.is_tensor(v) else v) for k, v in kwargs.items()},
            )
        return original(*args, **kwargs)

    torch.nn.functional.scaled_dot_product_attention = recording
    try:
        policy.infer(observation)
    finally:
        torch.nn.functional.scaled_dot_product_attention = original
    return counts, inputs


def time_call(choice: str, call: tuple, iters: int) -> tuple[float, torch.Tensor]:
    """Median µs of one call under ``choice``, and its output."""
    args, kwargs = call
    sdpa = torch.nn.functional.scaled_dot_product_attention
    with attention_kernels(choice, torch.device("cuda")):
        out = sdpa(*args, **kwargs)
        for _ in range(5):
            sdpa(*args, **kwargs)
        times = []
        for _ in range(iters):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            sdpa(*args, **kwargs)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) * 1e3)
    return float(np.median(times)), out


def main() -> int:
    args = parse_args()
    if not torch.cuda.is_available():
        print("needs CUDA: the kernels compared here are CUDA kernels", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.get_device_name(0)
    print(f"torch {torch.__version__}, {gpu}, π0 {args.model}, {args.cameras} cameras")
    args.optimized = ["none"]
    network = build_network(args)
    policy = make_policy(policy_config(args, args.cameras, "none"), model=network)
    side = policy.image_size_px
    rng = np.random.default_rng(0)
    observation = Observation(
        images={n: rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for n in CAMERAS[: args.cameras]},
        state=rng.normal(size=args.action_dim).astype(np.float32),
        instruction=INSTRUCTION,
    )
    policy.infer(observation)  # warm-up
    counts, inputs = record_calls(policy, observation)
    rows: list[dict[str, Any]] = []
    per_inference = dict.fromkeys(CHOICES, 0.0)
    for key, count in counts.most_common():
        _, reference = time_call("math", inputs[key], 3)
        row: dict[str, Any] = {"call": key, "per_inference": count, "us": {}, "max_abs_diff_vs_math": {}}
        for choice in CHOICES:
            try:
                us, out = time_call(choice, inputs[key], args.iters)
            except RuntimeError as err:  # no kernel of this choice or behind it runs the call
                row["us"][choice] = None
                row.setdefault("errors", {})[choice] = str(err)[:200]
                continue
            row["us"][choice] = us
            row["max_abs_diff_vs_math"][choice] = float((out.float() - reference.float()).abs().max())
            per_inference[choice] += us * count / 1e3
        rows.append(row)
        cells = "  ".join(
            f"{c} {row['us'][c]:7.1f}" if row["us"][c] is not None else f"{c} n/a" for c in CHOICES
        )
        print(f"{count:4d}× {key}\n      µs per call: {cells}")
    auto = per_inference["auto"]
    print("ms of attention per inference (ratio auto / kernel):")
    for choice in CHOICES:
        print(f"  {choice:>9}: {per_inference[choice]:7.2f} ms  ({auto / per_inference[choice]:.2f}x)")
    result = {"gpu": gpu, "torch": torch.__version__, "cameras": args.cameras, "calls": rows,
              "ms_per_inference": per_inference}  # fmt: skip
    (args.out / "attention.json").write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out / 'attention.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

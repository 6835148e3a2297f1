"""Counted floating-point work of π0 and the model FLOP utilisation (MFU) it implies.

The benches divide measured throughput by FLOPs that torch counts, not by a
formula: :func:`count_pi0_flops` runs one inference (``sample_actions``: the
prefix once, then every denoising step) and one training step (forward and
backward with the language model frozen, gradients still flowing through it to
the vision tower) under :class:`torch.utils.flop_counter.FlopCounterMode`,
on the meta device, so even the full 3.5 B network is counted in seconds with
no memory. Matrix products and attention are counted (2 FLOPs per
multiply-add); element-wise work is not, as usual for MFU. (The meta device
runs attention as the math kernel's counted products; on real CPU tensors the
fused SDPA kernel has no FLOP formula and would be left out.)

Usage as a script prints the counts for a preset::

    .venv/bin/python bench/flops.py --model full --cameras 3
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sop_ros.core.policy import PolicyConfig  # noqa: E402
from sop_ros.core.policy.config import pi0_config  # noqa: E402
from sop_ros.core.policy.pi0 import is_trainable  # noqa: E402
from sop_ros.core.policy.tokenizer import IMAGE_TOKEN, build_tokenizer  # noqa: E402

# Dense (no sparsity) peak tensor-core throughput, TFLOP/s, by GPU name as CUDA
# reports it and dtype. From the vendors' data sheets; the SXM parts.
PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H100 80GB HBM3": {"bfloat16": 989.4, "float16": 989.4, "float32": 494.7},
    "H100 PCIe": {"bfloat16": 756.0, "float16": 756.0, "float32": 378.0},
    "H200": {"bfloat16": 989.4, "float16": 989.4, "float32": 494.7},
    "A100-SXM4-80GB": {"bfloat16": 312.0, "float16": 312.0, "float32": 156.0},
    "A100-SXM4-40GB": {"bfloat16": 312.0, "float16": 312.0, "float32": 156.0},
}


@dataclass(frozen=True, kw_only=True)
class Pi0Flops:
    """FLOPs of one π0 inference and one training sample, by part."""

    prefix_flops: int  # vision tower + language model over the prefix, once per inference
    denoise_step_flops: int  # one action-expert step reading the prefix KV cache
    inference_flops: int  # prefix + every denoising step (batch 1)
    train_sample_flops: int  # forward + backward of one sample, language model frozen
    prefix_tokens: int  # image tokens + <bos> + prompt tokens
    parameters: int  # every parameter of the network
    trainable_parameters: int  # the ones that train and are published

    def to_json(self) -> dict[str, int]:
        """Plain numbers, for the benches' JSON."""
        return asdict(self)


def peak_tflops(device_name: str, dtype: torch.dtype) -> float | None:
    """Peak dense TFLOP/s of the named GPU for ``dtype``, or None for one not in the table."""
    name = str(dtype).removeprefix("torch.")
    for key, peaks in PEAK_TFLOPS.items():
        if key in device_name:
            return peaks.get(name)
    return None


def mfu(flops_per_s: float, device_name: str, dtype: torch.dtype) -> float | None:
    """Model FLOP utilisation: achieved over peak, or None where the peak is unknown (CPUs)."""
    peak = peak_tflops(device_name, dtype)
    return None if peak is None else flops_per_s / (peak * 1e12)


def amount_text(flops: float) -> str:
    """``'4.31 TFLOP'``, or GFLOP for the tiny model's small counts."""
    return f"{flops / 1e12:.2f} TFLOP" if flops >= 1e12 else f"{flops / 1e9:.3f} GFLOP"


def rate_text(flops_per_s: float, utilisation: float | None = None) -> str:
    """``'412 TFLOP/s, MFU 41.6%'``, or GFLOP/s for the small rates of a CPU."""
    text = f"{flops_per_s / 1e12:.1f} TFLOP/s" if flops_per_s >= 1e12 else f"{flops_per_s / 1e9:.2f} GFLOP/s"
    return text if utilisation is None else f"{text}, MFU {utilisation:.1%}"


def pi0_inputs(
    config: PolicyConfig, network: torch.nn.Module, *, batch: int, device: torch.device | str
) -> dict[str, torch.Tensor]:
    """Model inputs of the shapes ``config`` produces (values do not change the count)."""
    pi0 = network.config
    vision = pi0.vlm_config.vision_config
    side = vision.image_size
    cameras = len(config.camera_names)
    image_tokens = cameras * (side // vision.patch_size) ** 2
    length = image_tokens + 1 + config.max_prompt_tokens
    input_ids = torch.ones((batch, length), dtype=torch.long, device=device)
    input_ids[:, :image_tokens] = pi0.vlm_config.image_token_id
    dtype = next(network.parameters()).dtype
    return {
        "state": torch.zeros((batch, pi0.max_state_dim), dtype=dtype, device=device),
        "input_ids": input_ids,
        "attention_mask": torch.ones((batch, length), dtype=torch.long, device=device),
        "pixel_values": torch.zeros((batch, cameras, 3, side, side), dtype=dtype, device=device),
        "pixel_attention_mask": torch.ones((batch, cameras), dtype=torch.bool, device=device),
    }


def _counted(fn: object) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()  # type: ignore[operator]
    return int(counter.get_total_flops())


def count_network_flops(config: PolicyConfig, network: torch.nn.Module) -> Pi0Flops:
    """Count one inference and one training sample of ``network`` built for ``config``.

    ``network`` may live on the meta device (nothing is computed) or on a real one.
    """
    device = next(network.parameters()).device
    inputs = pi0_inputs(config, network, batch=1, device=device)
    pi0 = network.config
    dtype = inputs["pixel_values"].dtype
    noise = torch.zeros((1, config.horizon, pi0.max_action_dim), dtype=dtype, device=device)
    steps = config.denoising_steps

    def infer(num_steps: int) -> None:
        with torch.no_grad():
            network.sample_actions(**inputs, noise=noise, num_steps=num_steps)

    one_step = _counted(lambda: infer(1))
    two_steps = _counted(lambda: infer(2))
    step = two_steps - one_step
    prefix = one_step - step

    trainable = {n for n, p in network.named_parameters() if is_trainable(n)}
    saved = {n: p.requires_grad for n, p in network.named_parameters()}
    for name, param in network.named_parameters():
        param.requires_grad_(name in trainable)

    def train() -> None:
        out = network(
            **inputs,
            noise=noise,
            timestep=torch.full((1,), 0.5, dtype=torch.float32, device=device),
        ).logits
        out.float().square().mean().backward()

    try:
        train_flops = _counted(train)
    finally:
        for name, param in network.named_parameters():
            param.requires_grad_(saved[name])
            param.grad = None
    return Pi0Flops(
        prefix_flops=prefix,
        denoise_step_flops=step,
        inference_flops=prefix + steps * step,
        train_sample_flops=train_flops,
        prefix_tokens=int(inputs["input_ids"].shape[1]),
        parameters=sum(p.numel() for p in network.parameters()),
        trainable_parameters=sum(p.numel() for n, p in network.named_parameters() if n in trainable),
    )


def count_pi0_flops(config: PolicyConfig) -> Pi0Flops:
    """Count the network ``config`` describes, built on the meta device (no memory, seconds)."""
    from transformers import PI0ForConditionalGeneration

    tokenizer = build_tokenizer()
    pi0 = pi0_config(
        config, vocab_size=len(tokenizer), image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    )
    with torch.device("meta"):
        network = PI0ForConditionalGeneration(pi0)
    # A buffer transformers builds from a cached tensor can stay on the CPU under torch.device:
    # put everything on the meta device, or counting mixes devices once such a cache is warm.
    return count_network_flops(config, network.to("meta"))


def describe_flops(flops: Pi0Flops, steps: int) -> str:
    """One line: inference (prefix + steps) and a training sample."""
    return (
        f"{amount_text(flops.inference_flops)} per inference (prefix {amount_text(flops.prefix_flops)} + "
        f"{steps} steps × {amount_text(flops.denoise_step_flops)}), "
        f"{amount_text(flops.train_sample_flops)} per training sample"
    )


def model_parser(description: str | None) -> argparse.ArgumentParser:
    """A parser with the π0 settings every GPU bench takes (model, cameras, horizon, steps, action dims)."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=("tiny", "full"), default="full")
    parser.add_argument("--cameras", type=int, default=3, choices=(1, 2, 3))
    parser.add_argument("--horizon", type=int, default=50)
    parser.add_argument("--steps", type=int, default=10, help="denoising steps")
    parser.add_argument("--action-dim", type=int, default=14)
    return parser


def main() -> int:
    parser = model_parser(__doc__)
    args = parser.parse_args()
    names = tuple(f"joint_{i}" for i in range(args.action_dim))
    config = PolicyConfig(
        model=args.model,
        camera_names=("front", "left_wrist", "right_wrist")[: args.cameras],
        horizon=args.horizon,
        denoising_steps=args.steps,
        action_names=names,
        state_names=names,
    )
    flops = count_pi0_flops(config)
    print(json.dumps(flops.to_json(), indent=2))
    print(describe_flops(flops, args.steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())

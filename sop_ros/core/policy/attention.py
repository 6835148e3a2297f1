"""Which fused attention kernel π0's ``scaled_dot_product_attention`` calls prefer on CUDA.

PyTorch picks a kernel per call (cuDNN, FlashAttention, memory-efficient,
math) from what the inputs allow. π0's attention has shapes that choice does
not serve well: the prefix (every camera's image tokens and the prompt,
bidirectional, one key/value head) and, ten times per inference, the action
expert's 50-odd query tokens against the whole prefix. ``PolicyConfig.attention``
puts one kernel first; the others stay behind it in PyTorch's order, so a call
the chosen kernel cannot run (FlashAttention takes no mask) still runs.
``bench/attention/run.py`` times each choice on the real calls of an inference.
"""

from __future__ import annotations

import contextlib

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

# PolicyConfig.attention's choices, and the kernel each puts first.
KERNELS: dict[str, SDPBackend] = {
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "math": SDPBackend.MATH,
}
_ORDER = tuple(KERNELS.values())


def attention_kernels(choice: str, device: torch.device) -> contextlib.AbstractContextManager[None]:
    """A context in which SDPA tries ``choice``'s kernel first; ``auto`` or a CPU: PyTorch's own choice."""
    if choice == "auto" or device.type != "cuda":
        return contextlib.nullcontext()
    first = KERNELS[choice]
    return sdpa_kernel([first, *(k for k in _ORDER if k is not first)], set_priority=True)

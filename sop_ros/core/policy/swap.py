"""A shadow copy of the trainable parameters, filled in the background and swapped in fast.

Filling copies host tensors into a second set of device tensors (through
pinned memory and a side CUDA stream on a GPU) without touching the live
parameters. Swapping either exchanges the tensors behind the parameters
(pointer swap: the old live tensors become the next shadow, nothing is
allocated) or copies the shadow into the live storage in place, which is what
captured CUDA graphs need because they hold the live tensors' addresses.

Not thread-safe by itself: the owner serialises :meth:`ShadowWeights.fill`
with :meth:`ShadowWeights.swap_into`, and :meth:`swap_into` with every reader
of the live parameters (see ``Pi0Policy``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import torch

__all__ = ["ShadowWeights"]


class ShadowWeights:
    """A second set of tensors with the names, shapes, dtypes and device of ``params``."""

    def __init__(self, params: Mapping[str, torch.nn.Parameter]) -> None:
        self._tensors = {name: torch.empty_like(p.data) for name, p in params.items()}
        device = next(iter(self._tensors.values())).device
        self._stream = torch.cuda.Stream(device) if device.type == "cuda" else None  # type: ignore[no-untyped-call]

    @property
    def size_bytes(self) -> int:
        """Memory the shadow set holds on its device."""
        return sum(t.numel() * t.element_size() for t in self._tensors.values())

    @torch.no_grad()
    def fill(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Copy ``tensors`` (any device, same names/shapes; dtype converted) into the shadow set."""
        if self._stream is None:
            for name, target in self._tensors.items():
                target.copy_(tensors[name])
            return
        # Pinned host memory lets the copies run asynchronously on the side stream,
        # so inference on the default stream is not stalled while staging.
        with torch.cuda.stream(self._stream):
            for name, target in self._tensors.items():
                source = tensors[name]
                if source.device.type == "cpu" and not source.is_pinned():
                    source = source.pin_memory()
                target.copy_(source, non_blocking=True)
        self._stream.synchronize()

    @torch.no_grad()
    def swap_into(self, params: Mapping[str, torch.nn.Parameter], *, in_place: bool) -> float:
        """Make the shadow tensors live; return the time it took (ms).

        Args:
            params: The live parameters, by the same names.
            in_place: Copy into the live storage (addresses unchanged) instead of
                exchanging tensors; needed when CUDA graphs captured the live addresses.
        """
        start = time.perf_counter()
        for name, param in params.items():
            shadow = self._tensors[name]
            if in_place:
                param.data.copy_(shadow)
            else:
                self._tensors[name] = param.data
                param.data = shadow
        if self._stream is not None:
            torch.cuda.synchronize(self._stream.device)
        return (time.perf_counter() - start) * 1e3

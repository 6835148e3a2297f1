"""Replaying π0's whole ``sample_actions`` as one captured CUDA graph.

Eager π0 is launch-bound at batch 1 (thousands of small kernels per chunk);
a CUDA graph launches them all at once. Unlike ``torch.compile`` it needs no
compilation (capture takes about as long as two inferences) but fuses nothing.
``transformers`` skips its data-dependent mask shortcuts while a stream is
capturing, which is what makes the capture possible.

The graph reads fixed input buffers and the parameters' current addresses:
weights must be swapped in place while a graph exists. Used only from the
policy's inference thread (under its lock); not thread-safe by itself.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["CudaGraphSampler"]


class CudaGraphSampler:
    """Call like ``model.sample_actions``; captures on the first call and on any new input shape."""

    def __init__(self, model: torch.nn.Module, *, warmup_runs: int = 2) -> None:
        self._model = model
        self._warmup_runs = warmup_runs
        self._graph: torch.cuda.CUDAGraph | None = None
        self._key: tuple | None = None
        self._inputs: dict[str, torch.Tensor] = {}
        self._output: torch.Tensor | None = None

    def __call__(self, **kwargs: Any) -> torch.Tensor:
        """Run ``sample_actions`` through the graph; the result is overwritten by the next call."""
        tensors = {k: v for k, v in kwargs.items() if isinstance(v, torch.Tensor)}
        others = {k: v for k, v in kwargs.items() if not isinstance(v, torch.Tensor)}
        key = (
            tuple(sorted((k, tuple(v.shape), v.dtype, v.device) for k, v in tensors.items())),
            tuple(sorted(others.items())),
        )
        if key != self._key:
            self._capture(tensors, others)
            self._key = key
        for name, value in tensors.items():
            self._inputs[name].copy_(value)
        assert self._graph is not None and self._output is not None
        self._graph.replay()
        return self._output

    def _capture(self, tensors: dict[str, torch.Tensor], others: dict[str, Any]) -> None:
        self._graph = None
        self._inputs = {name: value.clone() for name, value in tensors.items()}
        # Lazy initialisations (cuBLAS handles, SDPA kernel choice) must happen
        # before capture, on a side stream as the CUDA graph documentation asks.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self._warmup_runs):
                self._model.sample_actions(**self._inputs, **others)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._output = self._model.sample_actions(**self._inputs, **others)
        self._graph = graph

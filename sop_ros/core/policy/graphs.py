"""Replaying a whole call (π0's ``sample_actions``, or a training step) as one captured CUDA graph.

Eager π0 is launch-bound at small batches (thousands of small kernels per chunk
or per update); a CUDA graph launches them all at once. Unlike ``torch.compile``
it needs no compilation (capture takes about as long as one call) but fuses
nothing. ``transformers`` skips its data-dependent mask shortcuts while a stream
is capturing, which is what makes π0's capture possible.

A graph reads fixed input buffers and the current addresses of every tensor it
touched (parameters, gradients, optimizer state): weights must be swapped in
place while a graph exists, and anything that replaces those tensors (loading
an optimizer state) must :meth:`GraphedCall.reset` it. Not thread-safe: each
graph belongs to one thread (inference under the policy's lock, training on the
training thread).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["GraphedCall"]


@dataclass
class _Graph:
    """One input signature's graph, its input buffers and output, or the eager calls made so far."""

    eager_done: int = 0
    graph: torch.cuda.CUDAGraph | None = None
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)
    output: Any = None


class GraphedCall:
    """Call like ``fn(**kwargs)``: eager for the first calls of each input signature, then a replayed graph.

    The first ``eager_calls`` calls with a new input signature (tensor shapes,
    dtypes, devices and the other arguments' values) run ``fn`` eagerly on a side
    stream: lazy initialisations (cuBLAS handles, kernel choices, optimizer state)
    must happen before capture, as the CUDA graph documentation asks. The next
    call captures ``fn`` and replays the graph; later calls copy their tensors
    into the graph's inputs and replay. Every call runs ``fn``'s work exactly
    once, so ``fn`` may have side effects such as an optimizer step. Outputs are
    the graph's own buffers: read them before the next call. One graph is kept
    per signature, up to ``max_graphs`` (the oldest goes first).
    """

    def __init__(self, fn: Callable[..., Any], *, eager_calls: int = 2, max_graphs: int = 8) -> None:
        self._fn = fn
        self._eager_calls = eager_calls
        self._max_graphs = max_graphs
        self._graphs: dict[tuple[Any, ...], _Graph] = {}

    def reset(self) -> None:
        """Drop every graph: the next calls run eagerly, then capture again."""
        self._graphs.clear()

    @property
    def graphs(self) -> int:
        """How many signatures replay a captured graph."""
        return sum(entry.graph is not None for entry in self._graphs.values())

    def __call__(self, **kwargs: Any) -> Any:
        """Run ``fn`` once (eagerly, by capture-and-replay, or by replay); return its output."""
        tensors = {k: v for k, v in kwargs.items() if isinstance(v, torch.Tensor)}
        others = {k: v for k, v in kwargs.items() if not isinstance(v, torch.Tensor)}
        key = (
            tuple(sorted((k, tuple(v.shape), v.dtype, v.device) for k, v in tensors.items())),
            tuple(sorted(others.items())),
        )
        entry = self._graphs.get(key)
        if entry is None:
            if len(self._graphs) >= self._max_graphs:
                del self._graphs[next(iter(self._graphs))]
            entry = self._graphs[key] = _Graph()
        if entry.graph is None and entry.eager_done < self._eager_calls:
            entry.eager_done += 1
            return self._eager(kwargs)
        if entry.graph is None:
            self._capture(entry, tensors, others)
        else:
            for name, value in tensors.items():
                entry.inputs[name].copy_(value)
        assert entry.graph is not None
        entry.graph.replay()
        return entry.output

    def _eager(self, kwargs: dict[str, Any]) -> Any:
        side = torch.cuda.Stream()  # type: ignore[no-untyped-call]
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            output = self._fn(**kwargs)
        torch.cuda.current_stream().wait_stream(side)
        return output

    def _capture(self, entry: _Graph, tensors: dict[str, torch.Tensor], others: dict[str, Any]) -> None:
        # Capture records the work without running it; the replay that follows runs it.
        entry.inputs = {name: value.clone() for name, value in tensors.items()}
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            entry.output = self._fn(**entry.inputs, **others)
        entry.graph = graph

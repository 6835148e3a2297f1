"""The policy interface every node, learner, evaluation and bench codes against, and its factory.

A policy family implements :class:`Policy`: openpi's small ``infer``/``reset``
for acting, and the weights life cycle a fleet needs on top (the trainable
state, a file form of it, a shadow copy staged while episodes run and
activated between them, and a ``config_hash`` naming which weights fit).
:func:`make_policy` is the one place a policy is built from its config;
callers that want another one hand it in (``PolicyNode(policy=...)``,
``CloudLearner(..., policy=...)``).

Two policies with equal ``config_hash`` accept each other's weights. The hash
covers the network, the input and output layout and the prompt conditioning:
a policy trained with RECAP's advantage indicator in its prompts and one
acting without it have different hashes, so neither takes the other's updates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from sop_ros.core.policy.config import PolicyConfig
from sop_ros.core.policy.pi0 import Pi0Policy
from sop_ros.core.types import ActionChunk, Observation
from sop_ros.core.weights import TensorSpec

if TYPE_CHECKING:
    import torch
    from transformers import PI0ForConditionalGeneration

__all__ = ["Policy", "make_policy"]


@runtime_checkable
class Policy(Protocol):
    """A policy that acts on observations and takes new trainable weights while it runs."""

    @property
    def config_hash(self) -> str:
        """sha256 naming the weights this policy accepts (network, layout, prompt conditioning)."""
        ...

    @property
    def base_model_id(self) -> str:
        """Identifier of the base model the trainable weights belong to."""
        ...

    @property
    def inference_path(self) -> str:
        """How inference runs (``eager``, ``graphed (cuda-graph)``, ...), for logs and benchmarks."""
        ...

    def infer(self, observation: Observation) -> ActionChunk:
        """The next action chunk for ``observation``, in robot units, with its ``infer_ms``."""
        ...

    def infer_batch(self, observations: Sequence[Observation]) -> list[ActionChunk]:
        """One action chunk per observation, in one batched pass over the same weights."""
        ...

    def reset(self) -> None:
        """Start a new episode (sampling noise restarts from the seed)."""
        ...

    def warmup(self) -> None:
        """Run blank inferences so compilation happens before the first real one."""
        ...

    def trainable_specs(self) -> tuple[TensorSpec, ...]:
        """Name, dtype and shape of every trainable tensor (what a weights manifest lists)."""
        ...

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The trainable tensors by name."""
        ...

    def load_trainable_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Copy ``state`` (as :meth:`trainable_state` returns it) into the live weights now."""
        ...

    def save_trainable(self, path: str | Path, *, version: str | None = None) -> None:
        """Write the trainable weights, normalisation and ``config_hash`` to a file, atomically."""
        ...

    def load_trainable(self, path: str | Path) -> None:
        """Load a file written by :meth:`save_trainable` into the live weights (a starting point)."""
        ...

    def stage(self, source: Path, *, version: str | None = None) -> None:
        """Load a weights file into the shadow copy; the live weights are untouched.

        Raises:
            IncompatibleWeightsError: the file was written for another ``config_hash``.
        """
        ...

    def activate(self) -> float:
        """Swap the staged weights in; return the stall (ms)."""
        ...

    @property
    def active_version(self) -> str:
        """Version of the weights in use."""
        ...

    @property
    def staged_version(self) -> str | None:
        """Version waiting in the shadow copy, or None."""
        ...


def make_policy(config: PolicyConfig, *, model: PI0ForConditionalGeneration | None = None) -> Pi0Policy:
    """Build the policy ``config`` describes.

    π0 is the one family today; ``config.model`` picks a random-init preset or
    a checkpoint directory.

    Args:
        config: What to build.
        model: An already built network to wrap (e.g. one network shared by
            policies that differ in cameras or compile mode).

    Raises:
        ConfigError: the config is inconsistent or ``model`` does not match it.
    """
    return Pi0Policy(config, model=model)

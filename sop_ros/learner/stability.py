"""Guards on what the learner publishes: weight averaging and a validation-loss gate.

A short online fine-tune moves the raw weights at every step, and a single
published version can land somewhere bad. Two guards sit between training
and publishing:

- :class:`WeightsAverage` keeps an exponential moving average of the
  trainable tensors; with it on, the average is what gets published (the
  optimizer keeps training the raw weights).
- :class:`ValidationGate` computes the policy loss on a fixed set of
  demonstration samples, with fixed flow-matching noise and times, before
  each publish, and refuses a version whose loss exceeds the last published
  one's by more than a tolerance. Training goes on; the fleet keeps the
  version it has.

Threads: both belong to the learner's training thread.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from sop_ros.core.errors import ConfigError
from sop_ros.learner.buffers import ReplayBuffers
from sop_ros.learner.metrics import TrainingLog
from sop_ros.learner.types import SampleRef, TrainablePolicy, TrainingSample

__all__ = ["PublishGuards", "ValidationGate", "WeightsAverage", "live_weights_replaced", "validation_refs"]

_log = logging.getLogger(__name__)


class WeightsAverage:
    """Exponential moving average of a policy's trainable tensors, in float32.

    After each :meth:`update`, ``average = decay · average + (1 − decay) · weights``.
    It starts at the weights it is made with (the base a fine-tune starts from).

    Args:
        policy: The policy whose trainable tensors are averaged.
        decay: Weight of the old average at each update, in [0, 1).
    """

    def __init__(self, policy: TrainablePolicy, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ConfigError(f"the average's decay must be in [0, 1), got {decay}")
        self.decay = decay
        self._average = {
            name: tensor.detach().to(torch.float32, copy=True)
            for name, tensor in policy.trainable_state().items()
        }

    def update(self, policy: TrainablePolicy) -> None:
        """Fold the policy's current trainable tensors into the average."""
        with torch.no_grad():
            for name, tensor in policy.trainable_state().items():
                self._average[name].lerp_(tensor.to(torch.float32), 1.0 - self.decay)

    def state(self) -> dict[str, torch.Tensor]:
        """The averaged tensors by name (the live buffers: copy before changing them)."""
        return self._average

    def load_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Replace the average with ``state`` (as returned by :meth:`state`, e.g. from a checkpoint).

        Raises:
            ConfigError: the names or shapes differ from the policy's trainable tensors.
        """
        if set(state) != set(self._average):
            missing, extra = sorted(set(self._average) - set(state)), sorted(set(state) - set(self._average))
            raise ConfigError(f"weights average does not fit the policy: missing {missing}, unknown {extra}")
        for name, tensor in state.items():
            if tuple(tensor.shape) != tuple(self._average[name].shape):
                raise ConfigError(
                    f"weights average {name} has shape {tuple(tensor.shape)}, "
                    f"the policy's {tuple(self._average[name].shape)}"
                )
            self._average[name].copy_(tensor)


@contextlib.contextmanager
def live_weights_replaced(
    policy: TrainablePolicy, state: Mapping[str, torch.Tensor] | None
) -> Iterator[None]:
    """Within the block the policy's trainable tensors are ``state``; afterwards the raw ones again.

    ``None`` leaves the live weights as they are.
    """
    if state is None:
        yield
        return
    raw = {name: tensor.clone() for name, tensor in policy.trainable_state().items()}
    policy.load_trainable_state({name: state[name].to(raw[name].dtype) for name in raw})
    try:
        yield
    finally:
        policy.load_trainable_state(raw)


def validation_refs(buffers: ReplayBuffers, count: int, *, seed: int) -> list[SampleRef]:
    """``count`` demonstration steps spread evenly over the tasks, drawn once with ``seed``.

    Raises:
        ConfigError: there is no offline data to draw from.
    """
    tasks = sorted(task for task in buffers.offline if buffers.offline_steps(task) > 0)
    if not tasks:
        raise ConfigError("the publish gate validates on demonstration (offline) data; none is loaded")
    rng = np.random.default_rng(seed)
    refs = []
    for i, task in enumerate(tasks):
        share = count // len(tasks) + (1 if i < count % len(tasks) else 0)
        refs += buffers.offline[task].sample_refs(share, rng)
    return refs


class ValidationGate:
    """Refuses to publish weights whose loss on fixed demonstration samples regressed.

    Args:
        policy: The policy whose weights are judged.
        samples: The validation samples (decoded once, kept).
        tolerance: A version passes while its loss ≤ (1 + tolerance) × the last published one's.
        seed: Seeds the flow-matching noise and times, the same at every check.
        batch_size: Samples per forward pass.
    """

    def __init__(
        self,
        policy: TrainablePolicy,
        samples: Sequence[TrainingSample],
        *,
        tolerance: float,
        seed: int = 0,
        batch_size: int = 64,
    ) -> None:
        if not samples:
            raise ConfigError("the publish gate needs at least one validation sample")
        self.policy = policy
        self.tolerance = tolerance
        self.seed = seed
        starts = range(0, len(samples), batch_size)
        self._batches = [policy.collate(samples[i : i + batch_size]) for i in starts]
        # Loss of the last version published (None until the first check sets it).
        self.reference: float | None = None

    def loss(self) -> float:
        """Mean loss of the live weights on the validation samples (same noise and times every call)."""
        model = self.policy.model
        was_training = model.training
        device = next(model.parameters()).device
        devices = [device] if device.type == "cuda" else []
        model.eval()
        try:
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                torch.manual_seed(self.seed)
                losses = [self.policy.loss(batch).float() for batch in self._batches]
        finally:
            model.train(was_training)
        return float(torch.cat(losses).mean())

    def admits(self, loss: float) -> bool:
        """True when ``loss`` may be published: finite and within the tolerance of the reference."""
        if not math.isfinite(loss):
            return False
        return self.reference is None or loss <= self.reference * (1.0 + self.tolerance)


class PublishGuards:
    """What the learner's publish step consults: the weights average and the validation gate.

    Args:
        policy: The policy being trained.
        average_decay: Decay of :class:`WeightsAverage` (0: no average, the raw weights are published).
        gate_samples: Validation samples of :class:`ValidationGate` (0: no gate).
        gate_tolerance: The gate's relative tolerance.
        validation_samples: Draws and decodes that many demonstration samples (called once, at the
            first check, when the offline buffers are loaded).
        log: Where validation losses and refusals are logged.
    """

    def __init__(
        self,
        policy: TrainablePolicy,
        *,
        average_decay: float,
        gate_samples: int,
        gate_tolerance: float,
        validation_samples: Callable[[int], Sequence[TrainingSample]],
        log: TrainingLog,
    ) -> None:
        self.policy = policy
        self.average = WeightsAverage(policy, average_decay) if average_decay > 0 else None
        self.gate_samples = gate_samples
        self.gate_tolerance = gate_tolerance
        self.gate: ValidationGate | None = None
        # Versions the gate refused (their numbers were never used).
        self.versions_refused = 0
        self._validation_samples = validation_samples
        self._log = log
        # The gate's bar before its first check: set from a checkpoint, else the loss of the
        # weights training starts from (the fleet runs them until a first publish).
        self._reference: float | None = None
        self._start_weights = _copy(policy) if gate_samples else None

    def after_update(self) -> None:
        """Fold the weights of the step just taken into the average (if there is one)."""
        if self.average is not None:
            self.average.update(self.policy)

    def published_weights(self) -> contextlib.AbstractContextManager[None]:
        """Within the block the live weights are the ones a publish would send (the average, if kept)."""
        return live_weights_replaced(self.policy, self.average.state() if self.average is not None else None)

    def admits(self, step: int) -> bool:
        """Judge the live weights with the gate (always True without one); log the loss and refusals."""
        if not self.gate_samples:
            return True
        gate = self._ready_gate(step)
        loss = gate.loss()
        self._log.scalar("publish/validation_loss", loss, step)
        if gate.admits(loss):
            _log.info(
                "validation loss %.4f at step %d (last published %.4f): publishing",
                loss,
                step,
                gate.reference,
            )
            gate.reference = loss
            return True
        self.versions_refused += 1
        self._log.scalar("publish/versions_refused", self.versions_refused, step)
        _log.warning(
            "not publishing the weights of step %d: validation loss %.4f, last published %.4f "
            "(tolerance %.0f %%); training goes on",
            step,
            loss,
            gate.reference,
            100 * self.gate_tolerance,
        )
        return False

    def counters(self) -> dict[str, Any]:
        """JSON-able state a checkpoint keeps (refusals and the gate's reference loss)."""
        reference = self.gate.reference if self.gate is not None else self._reference
        return {"versions_refused": self.versions_refused, "gate_reference": reference}

    def average_state(self) -> dict[str, torch.Tensor] | None:
        """The weights average a checkpoint keeps, or None without one."""
        return self.average.state() if self.average is not None else None

    def restore(self, counters: Mapping[str, Any], average: Mapping[str, torch.Tensor] | None) -> None:
        """Take back :meth:`counters` and :meth:`average_state` (after the policy's weights were restored)."""
        self.versions_refused = int(counters.get("versions_refused", 0))
        self._reference = counters.get("gate_reference")
        if self.average is not None:
            if average is not None:
                self.average.load_state(average)
            else:  # a checkpoint written without an average: start one at the restored weights
                self.average = WeightsAverage(self.policy, self.average.decay)
        if self._start_weights is not None:
            self._start_weights = _copy(self.policy)

    def _ready_gate(self, step: int) -> ValidationGate:
        if self.gate is None:
            gate = ValidationGate(
                self.policy, self._validation_samples(self.gate_samples), tolerance=self.gate_tolerance
            )
            if self._reference is None:
                with live_weights_replaced(self.policy, self._start_weights):
                    self._reference = gate.loss()
                self._log.scalar("publish/start_validation_loss", self._reference, step)
            gate.reference = self._reference
            self.gate, self._start_weights = gate, None
        return self.gate


def _copy(policy: TrainablePolicy) -> dict[str, torch.Tensor]:
    return {name: tensor.clone() for name, tensor in policy.trainable_state().items()}

"""π0 (``transformers``' ``PI0ForConditionalGeneration``) behind the policy interface.

The language model is frozen; the vision tower, multimodal projector, action
expert and the action/state projections train, and only they are saved,
published and swapped. Random-init presets draw every weight on the CPU from
``seed``, so a learner and a robot built from equal configs share the frozen
part bit for bit (their ``config_hash`` is equal).

Threads: ``infer`` runs on one worker thread and ``stage`` on another.
``_infer_lock`` guards the live parameters, norm stats and active version:
``infer``, ``activate`` and the synchronous loads take it, so an activation
never happens during an inference. ``_stage_lock`` guards the shadow set and
the staged version: ``stage`` takes it, and ``activate`` takes it before
``_infer_lock``. Training calls (``collate``, ``loss``) read the live weights
without a lock and belong to a learner process that does not stage.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PI0ForConditionalGeneration

from sop_ros.core.errors import ConfigError, IncompatibleWeightsError, WeightsError
from sop_ros.core.policy.attention import attention_kernels
from sop_ros.core.policy.checkpoint import read_checkpoint
from sop_ros.core.policy.config import (
    RANDOM_LOCK,
    PolicyConfig,
    build_network,
    checkpoint_dir,
    load_tokenizer,
    model_config_hash,
    pi0_config,
    resolve_device,
    resolve_dtype,
    sub_config,
    tokenizer_digest,
)
from sop_ros.core.policy.graphs import GraphedCall
from sop_ros.core.policy.inputs import InputEncoder, NormStats, PromptLayout, pad_last, sample_field
from sop_ros.core.policy.layout import InputLayout
from sop_ros.core.policy.swap import ShadowWeights
from sop_ros.core.policy.tokenizer import IMAGE_TOKEN, TOKENIZER_DIGEST, prompt_text
from sop_ros.core.policy.weights_file import (
    META_BASE_MODEL,
    META_CONFIG_HASH,
    META_NORM_STATS,
    META_VERSION,
    cast_float_precision,
    check_state,
    dtype_name,
    read_weights,
    specs_of,
    write_weights,
)
from sop_ros.core.types import ActionChunk, Observation, format_version
from sop_ros.core.weights import TensorSpec

__all__ = ["Pi0Policy", "is_trainable"]

_log = logging.getLogger(__name__)

_FROZEN_PREFIXES = (
    "model.vlm.language_model.",
    # PI0Config copies the VLM vocabulary into the expert, whose embedding table is never used.
    "model.dit.embed_tokens.",
)

_ADVANTAGE = {"none": None, "positive": True, "negative": False}


def is_trainable(name: str) -> bool:
    """True for parameters that train and travel: all but the language model and unused embeddings."""
    return not name.startswith(_FROZEN_PREFIXES)


class Pi0Policy:
    """π0 with ``infer(observation) -> ActionChunk``, training entry points and weight swap."""

    def __init__(self, config: PolicyConfig, *, model: PI0ForConditionalGeneration | None = None) -> None:
        """Build the policy.

        Args:
            config: What to build.
            model: An already built network to wrap instead of building one (e.g. one
                network shared by policies that differ in cameras or compile mode); its
                config must equal the one ``config`` describes.

        Raises:
            ConfigError: the config is inconsistent or ``model`` does not match it.
        """
        self.config = config
        self.device = resolve_device(config)
        self.dtype = resolve_dtype(config, self.device)
        checkpoint = checkpoint_dir(config)
        # What the checkpoint was trained with (None for the random presets).
        self.checkpoint = None if checkpoint is None else read_checkpoint(checkpoint)
        self.tokenizer = load_tokenizer(config, self.checkpoint)
        image_token_id = self.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        if not isinstance(image_token_id, int):
            raise ConfigError(f"the tokenizer maps {IMAGE_TOKEN!r} to {image_token_id!r}, not to a token id")
        pi0 = pi0_config(config, vocab_size=len(self.tokenizer), image_token_id=image_token_id)
        inputs = InputLayout.of(config, self.checkpoint)
        if model is None:
            model = build_network(config, pi0)
        elif model_config_hash(model.config) != model_config_hash(pi0):
            raise ConfigError(
                f"the model handed in is not the {config.model!r} network this config describes"
            )
        # transformers' @wraps(nn.Module.to) shows mypy the unbound signature (self first).
        self.model = model.to(self.device, self.dtype).eval()  # type: ignore[arg-type]
        self.pi0_config = self.model.config
        vlm = sub_config(pi0, "vlm_config")
        vision = sub_config(vlm, "vision_config")
        self.image_size_px = vision.image_size
        prompts = PromptLayout(
            self.tokenizer,
            image_token_id=vlm.image_token_id,
            num_cameras=len(inputs.slots),
            tokens_per_image=(vision.image_size // vision.patch_size) ** 2,
            max_prompt_tokens=inputs.prompt_tokens,
            newline_in_text=self.checkpoint is not None,
        )
        self._encoder = InputEncoder(
            prompts,
            camera_names=inputs.slots,
            state_names=config.state_names,
            image_size_px=self.image_size_px,
            max_state_dim=pi0.max_state_dim,
            max_action_dim=pi0.max_action_dim,
            device=self.device,
            dtype=self.dtype,
            state_order=inputs.state_order,
            action_order=inputs.action_order,
            pad_to_square=self.checkpoint is not None,
            allow_missing=self.checkpoint is not None,
        )
        self.input_layout = inputs
        self._params = {n: p for n, p in self.model.named_parameters() if is_trainable(n)}
        self.freeze_language_model()
        self._specs = specs_of({n: p.data for n, p in self._params.items()})
        if self.checkpoint is None:
            self.base_model_id = f"sop-pi0-{config.model}-random-seed{config.seed}"
            identity: dict[str, Any] = {"tokenizer": TOKENIZER_DIGEST}
        else:
            self.base_model_id = f"local:{self.checkpoint.path.name}"
            # Everything else that changes what the network computes from the same robot data.
            identity = {
                "tokenizer": tokenizer_digest(self.tokenizer),
                "image_slots": inputs.slots,
                "state_order": inputs.state_order,
                "action_order": inputs.action_order,
                "checkpoint": self.checkpoint.digest(),
            }
        facts = dict(
            cameras=config.camera_names,
            actions=config.action_names,
            states=config.state_names,
            base_model_id=self.base_model_id,
            **identity,
        )
        # Weights trained with RECAP's advantage indicator in the prompt, and weights trained
        # without, act well only under the prompts they learned: the indicator is part of the
        # identity (absent when off, so unconditioned hashes keep their value).
        self._hashes = {
            False: model_config_hash(pi0, **facts),
            True: model_config_hash(pi0, **facts, advantage_indicator=True),
        }
        self.config_hash = self._hashes[config.advantage_conditioned]
        self._checkpoint_stats = inputs.norm_stats
        self._stats = inputs.norm_stats or NormStats.identity(config.state_dim, config.action_dim)
        self._active_version = format_version(0)
        self._staged: tuple[str, NormStats | None] | None = None
        self._shadow: ShadowWeights | None = None
        self._infer_lock = threading.Lock()
        self._stage_lock = threading.Lock()
        self._generator = torch.Generator().manual_seed(config.seed)
        self._compiled, self.inference_path = self._compile()
        # Flow-matching times are drawn on the device, so a training step can be one CUDA graph.
        self._time_dist = torch.distributions.Beta(
            torch.tensor(self.pi0_config.time_sampling_beta_alpha, device=self.device),
            torch.tensor(self.pi0_config.time_sampling_beta_beta, device=self.device),
        )

    # ----------------------------------------------------------------- inference

    def infer(self, observation: Observation) -> ActionChunk:
        """Return the next action chunk (robot units) for ``observation``.

        Raises:
            ConfigError: a camera is missing, the state has the wrong size or the prompt is too long.
        """
        return self.infer_batch([observation])[0]

    def infer_batch(
        self, observations: Sequence[Observation], *, noise: torch.Tensor | None = None
    ) -> list[ActionChunk]:
        """Return one action chunk per observation, computed in one batched pass.

        Used where many robots or simulated episodes share one set of weights
        (evaluation, simulated fleets); a robot calls :meth:`infer`.

        Args:
            observations: What the robots saw.
            noise: Where the flow starts, (batch, horizon, max_action_dim) in the model's vector
                layout; drawn from the policy's generator when omitted (given, it reproduces
                another implementation's chunk for the same start).

        Raises:
            ConfigError: a camera is missing, a state has the wrong size or a prompt is too long.
        """
        if not observations:
            return []
        start = time.perf_counter()
        advantage = _ADVANTAGE[self.config.inference_advantage]
        with self._infer_lock:
            stats = self._stats
            inputs = self._encoder.observations(
                [o.images for o in observations],
                [o.state for o in observations],
                [self._prompt(o.instruction, advantage) for o in observations],
                stats,
            )
            if noise is None:
                noise = self._noise(len(observations))
            actions = self._encoder.robot_actions(
                self._sample(inputs, noise.to(self.device, self.dtype)), self.config.action_dim
            )
            version = self._active_version
        actions = actions * stats.action_std + stats.action_mean
        infer_ms = (time.perf_counter() - start) * 1e3
        return [
            ActionChunk(
                actions=chunk,
                action_names=self.config.action_names,
                control_period_s=self.config.control_period_s,
                policy_version=version,
                stamp_ns=observation.stamp_ns,
                infer_ms=infer_ms,
            )
            for chunk, observation in zip(actions, observations, strict=True)
        ]

    def _noise(self, batch: int) -> torch.Tensor:
        width = self.pi0_config.max_action_dim
        if self.checkpoint is not None:
            # π0 as LeRobot and openpi run it: noise in every entry, padded ones included.
            return torch.randn((batch, self.config.horizon, width), generator=self._generator)
        noise = torch.randn((batch, self.config.horizon, self.config.action_dim), generator=self._generator)
        return pad_last(noise, width)

    def _prompt(self, instruction: str, advantage: bool | None) -> str:
        return prompt_text(instruction, advantage, verbatim=self.checkpoint is not None)

    def reset(self) -> None:
        """Start a new episode: re-seed the sampling noise so episodes are reproducible."""
        with self._infer_lock:
            self._generator.manual_seed(self.config.seed)

    def warmup(self, iterations: int = 3) -> None:
        """Run a few inferences on blank inputs so compilation happens before the first real one."""
        side = self.image_size_px
        blank = {name: np.zeros((side, side, 3), np.uint8) for name in self.config.camera_names}
        with self._infer_lock:
            inputs = self._encoder.observations(
                [blank], [np.zeros(self.config.state_dim, np.float32)], ["warm up"], self._stats
            )
            noise = torch.zeros((1, self.config.horizon, self.pi0_config.max_action_dim))
            for _ in range(iterations):
                self._sample(inputs, noise.to(self.device, self.dtype))

    def _sample(self, inputs: dict[str, torch.Tensor], noise: torch.Tensor) -> torch.Tensor:
        with attention_kernels(self.config.attention, self.device):
            return self._sample_actions(inputs, noise)

    def _sample_actions(self, inputs: dict[str, torch.Tensor], noise: torch.Tensor) -> torch.Tensor:
        kwargs = dict(
            state=inputs["state"],
            input_ids=inputs["input_ids"],
            pixel_values=inputs["pixel_values"],
            attention_mask=inputs["attention_mask"],
            pixel_attention_mask=inputs["pixel_attention_mask"],
            noise=noise,
            num_steps=self.config.denoising_steps,
        )
        if self._compiled is None:
            return self._sample_eagerly(kwargs)
        try:
            if self.config.compile_mode == "reduce-overhead":
                torch.compiler.cudagraph_mark_step_begin()  # type: ignore[no-untyped-call]
            if isinstance(self._compiled, GraphedCall):
                # One graph per batch size: round sizes up to a power of two (repeating the
                # first observation) so a shrinking batch of evaluation episodes needs few.
                size = len(noise)
                kwargs = {k: _pad_batch(v, 1 << (size - 1).bit_length()) for k, v in kwargs.items()}
                graphed: torch.Tensor = self._compiled(**kwargs)
                return graphed[:size].clone()
            # CUDA graphs reuse their output buffer on the next call.
            return self._compiled(**kwargs).clone()
        except Exception as err:  # compilation and capture fail lazily, on the first call
            _log.warning("optimised inference failed (%s); falling back to eager", err)
            self._compiled = None
            self.inference_path = f"eager (compile failed: {type(err).__name__}: {err})"[:300]
            return self._sample_eagerly(kwargs)

    def _sample_eagerly(self, kwargs: dict[str, Any]) -> torch.Tensor:
        actions: torch.Tensor = self.model.sample_actions(**kwargs)
        return actions

    def _compile(self) -> tuple[Callable[..., torch.Tensor] | None, str]:
        mode = self.config.compile_mode
        if mode == "none":
            return None, "eager"
        if self.device.type != "cuda":
            return None, f"eager (compile_mode {mode!r} applies on CUDA only)"
        if mode == "cuda-graph":
            return GraphedCall(self.model.sample_actions), "graphed (cuda-graph)"
        return torch.compile(self.model.sample_actions, mode=mode, dynamic=False), f"compiled ({mode})"

    # ------------------------------------------------------------------ training

    def collate(self, samples: Sequence[Any]) -> dict[str, torch.Tensor]:
        """Build a training batch on the policy's device from samples.

        A sample is a :class:`~sop_ros.core.policy.inputs.TrainingSample` or any
        object/mapping with ``images``, ``state``, ``instruction``, ``actions``
        (horizon × action_dim, robot units) and optionally ``advantage``.
        """
        if not samples:
            raise ConfigError("cannot collate an empty list of samples")
        stats = self._stats
        prompts = [
            self._prompt(sample_field(s, "instruction"), sample_field(s, "advantage")) for s in samples
        ]
        images = [sample_field(s, "images") for s in samples]
        batch = self._encoder.observations(
            images, [sample_field(s, "state") for s in samples], prompts, stats
        )
        actions = np.stack([np.asarray(sample_field(s, "actions"), np.float32) for s in samples])
        want = (self.config.horizon, self.config.action_dim)
        if actions.shape[1:] != want:
            raise ConfigError(f"sample actions have shape {actions.shape[1:]}, the policy expects {want}")
        batch["actions"] = self._encoder.actions(actions, stats)
        return batch

    def loss(
        self, batch: Mapping[str, torch.Tensor], *, module: torch.nn.Module | None = None
    ) -> torch.Tensor:
        """Return π0's flow-matching loss per sample, shape (batch,), float32.

        With the presets, padded action dimensions get zero noise here and in
        :meth:`infer`, so their target velocity is zero: the network learns at once
        to leave them at zero, and they never feed drifting values back into the
        expert at inference. A checkpoint trains as it was trained (LeRobot, openpi):
        noise in every entry, padded entries left out of the loss.
        Squared velocity errors are summed over steps and all dimensions and divided
        by horizon × the robot's action dimensions (a mean over the real ones).

        Args:
            batch: Output of :meth:`collate`.
            module: The network to run, e.g. a DDP wrapper of :attr:`model`; default :attr:`model`.
        """
        module = self.model if module is None else module
        actions = batch["actions"]
        cfg = self.pi0_config
        with RANDOM_LOCK:  # never while another thread draws a preset's weights
            t = (
                self._time_dist.sample((actions.shape[0],)) * cfg.time_sampling_scale
                + cfg.time_sampling_offset
            )
            if self.checkpoint is not None:
                noise = torch.randn_like(actions)  # as the checkpoint was trained (LeRobot, openpi)
            else:
                noise = pad_last(torch.randn_like(actions[..., : self.config.action_dim]), actions.shape[-1])
        t_ = t[:, None, None].to(actions.dtype)
        noisy = t_ * noise + (1 - t_) * actions
        # Without `actions=` the model treats `noise` as the noisy chunk and returns
        # the velocity, so the reduction stays ours (per sample).
        with attention_kernels(self.config.attention, self.device):
            velocity: torch.Tensor = module(
                state=batch["state"],
                noise=noisy,
                timestep=t,
                input_ids=batch["input_ids"],
                pixel_values=batch["pixel_values"],
                attention_mask=batch["attention_mask"],
                pixel_attention_mask=batch["pixel_attention_mask"],
            ).logits
        error = (velocity.float() - (noise - actions).float()).square()
        if self.checkpoint is not None:
            # Padded entries carry noise but no target: LeRobot leaves them out of the loss.
            error = error[..., : self.config.action_dim]
        return error.sum(dim=(1, 2)) / (self.config.horizon * self.config.action_dim)

    def set_norm_stats(self, states: np.ndarray, actions: np.ndarray) -> NormStats:
        """Compute and use normalisation statistics from states (N, S) and actions (N, [H,] A).

        A checkpoint that carries its own statistics keeps them: its network was trained
        with them, and post-training goes on in the same units.
        """
        if self._checkpoint_stats is not None:
            _log.info("keeping the checkpoint's normalisation statistics (%s)", self.base_model_id)
            return self._checkpoint_stats
        stats = NormStats.from_data(states, actions)
        stats.check_dims(self.config.state_dim, self.config.action_dim)
        with self._infer_lock:
            self._stats = stats
        return stats

    @property
    def norm_stats(self) -> NormStats:
        """The normalisation statistics in use."""
        return self._stats

    def freeze_language_model(self) -> None:
        """Set ``requires_grad`` False on the language model (and unused embeddings), True elsewhere."""
        for name, param in self.model.named_parameters():
            param.requires_grad_(is_trainable(name))

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """The parameters an optimizer should update, in name order."""
        return [self._params[spec.name] for spec in self._specs]

    # ------------------------------------------------------------------- weights

    def trainable_state(self, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
        """Return the trainable tensors by name, detached (aliases of the live weights unless cast).

        Args:
            dtype: Cast to this dtype (e.g. publish bfloat16 from a float32 learner).
        """
        state = {spec.name: self._params[spec.name].detach() for spec in self._specs}
        if dtype is not None:
            state = {name: tensor.to(dtype) for name, tensor in state.items()}
        return state

    def trainable_specs(self, dtype: torch.dtype | None = None) -> tuple[TensorSpec, ...]:
        """Names, dtypes and shapes of :meth:`trainable_state` (for the weights manifest)."""
        if dtype is None:
            return self._specs
        name = dtype_name(dtype)
        return tuple(TensorSpec(name=spec.name, dtype=name, shape=spec.shape) for spec in self._specs)

    def load_trainable_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Copy ``state`` into the live trainable weights now.

        Raises:
            IncompatibleWeightsError: names, shapes or dtypes differ (all differences listed).
        """
        check_state(self._specs, state, "trainable state")
        with self._infer_lock, torch.no_grad():
            for name, param in self._params.items():
                param.copy_(state[name])

    def save_trainable(
        self, path: str | Path, *, version: str | None = None, dtype: torch.dtype | None = None
    ) -> None:
        """Write the trainable weights and norm stats to a safetensors file, atomically.

        Args:
            path: Where to write.
            version: Version label stored in the file; the active version by default.
            dtype: Cast the tensors, e.g. to the robots' bfloat16 from a float32 learner
                (robots refuse other dtypes; describe the file with ``trainable_specs(dtype)``).
        """
        metadata = {
            META_CONFIG_HASH: self.config_hash,
            META_BASE_MODEL: self.base_model_id,
            META_VERSION: version or self._active_version,
            META_NORM_STATS: self._stats.to_json(),
        }
        write_weights(Path(path), self.trainable_state(dtype), metadata)

    def load_trainable(self, path: str | Path) -> None:
        """Load a file written by :meth:`save_trainable` into the live weights, stats and version.

        A starting point: besides files of this ``config_hash``, a policy that prompts with the
        advantage indicator takes weights trained without it (RECAP fine-tunes an imitation
        base); the reverse is refused.

        Raises:
            IncompatibleWeightsError: the file belongs to another config or does not fit.
        """
        tensors, stats, version = self._read_checked(Path(path), starting_point=True)
        self.load_trainable_state(tensors)
        with self._infer_lock:
            self._stats = stats or self._stats
            self._active_version = version or self._active_version

    def stage(self, source: Mapping[str, torch.Tensor] | str | Path, *, version: str | None = None) -> None:
        """Load new trainable weights into the shadow copy; the live weights are untouched.

        Args:
            source: A weights file (its norm stats come along) or a tensor mapping.
            version: Version label; a file's own label when omitted.

        Raises:
            IncompatibleWeightsError: the weights belong to another config or do not fit.
        """
        stats = None
        if isinstance(source, str | Path):
            source, stats, file_version = self._read_checked(Path(source), starting_point=False)
            version = version or file_version
        else:
            check_state(self._specs, source, "staged state")
        if not version:
            raise WeightsError("staged weights need a version label")
        with self._stage_lock:
            if self._shadow is None:
                self._shadow = ShadowWeights(self._params)
            self._staged = None
            self._shadow.fill(source)
            self._staged = (version, stats)

    def activate(self) -> float:
        """Swap the staged weights in; return the stall (ms). Never runs during an inference.

        Raises:
            WeightsError: nothing is staged.
        """
        with self._stage_lock, self._infer_lock:
            if self._staged is None or self._shadow is None:
                raise WeightsError("no weights are staged; call stage() first")
            version, stats = self._staged
            # Captured CUDA graphs (and compiled code) read the live addresses: copy in place then.
            in_place = self._compiled is not None
            stall_ms = self._shadow.swap_into(self._params, in_place=in_place)
            self._stats = stats or self._stats
            self._active_version = version
            self._staged = None
        return stall_ms

    @property
    def active_version(self) -> str:
        """Version of the weights in use (``v0000`` for the initial ones)."""
        return self._active_version

    @property
    def staged_version(self) -> str | None:
        """Version waiting in the shadow copy, or None."""
        staged = self._staged
        return staged[0] if staged else None

    def _read_checked(
        self, path: Path, *, starting_point: bool
    ) -> tuple[dict[str, torch.Tensor], NormStats | None, str | None]:
        tensors, meta = read_weights(path)
        self._check_identity(path, meta, starting_point=starting_point)
        tensors = cast_float_precision(self._specs, tensors)
        check_state(self._specs, tensors, str(path))
        stats = NormStats.from_json(meta[META_NORM_STATS]) if META_NORM_STATS in meta else None
        if stats is not None:
            stats.check_dims(self.config.state_dim, self.config.action_dim)
        return tensors, stats, meta.get(META_VERSION)

    def _check_identity(self, path: Path, meta: Mapping[str, str], *, starting_point: bool) -> None:
        """Raise unless the file at ``path`` (metadata ``meta``) was written for this policy."""
        theirs = meta.get(META_CONFIG_HASH, "?")
        if theirs == self.config_hash:
            return
        conditioned = self.config.advantage_conditioned
        what = f"{path} ({meta.get(META_VERSION, 'no version')})"
        if theirs != self._hashes[not conditioned]:
            raise IncompatibleWeightsError(
                f"{what} was written for config {theirs[:12]} (base {meta.get(META_BASE_MODEL, '?')}); "
                f"this policy is {self.config_hash[:12]} (base {self.base_model_id}); "
                f"nothing loaded, {self._active_version} stays in use"
            )
        if conditioned and starting_point:
            _log.info(
                "%s was trained without the advantage indicator; starting from it, prompting with "
                "'advantage: %s'",
                what,
                self.config.inference_advantage,
            )
            return
        if conditioned:
            trained, acting, setting = (
                "without the advantage indicator (not by RECAP)",
                f"prompts with 'advantage: {self.config.inference_advantage}'",
                "'none'",
            )
        else:
            trained, acting, setting = (
                "with RECAP's advantage indicator in its prompts",
                "acts without it (policy.inference_advantage 'none')",
                "'positive'",
            )
        raise IncompatibleWeightsError(
            f"{what} was trained {trained}, but this policy {acting}: it would act on prompts the "
            f"weights were not trained for. Set policy.inference_advantage to {setting} to run them; "
            f"nothing loaded, {self._active_version} stays in use"
        )


def _pad_batch(value: Any, size: int) -> Any:
    """Pad a batch tensor to ``size`` rows with copies of its first row; anything else as is."""
    if not isinstance(value, torch.Tensor) or len(value) == size:
        return value
    return torch.cat([value, value[:1].expand(size - len(value), *value.shape[1:])])

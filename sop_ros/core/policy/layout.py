"""How the robot's cameras, state and actions map onto a checkpoint's inputs and outputs.

A LeRobot checkpoint names its image slots (``observation.images.base_0_rgb``)
and fixes the length and order of its state and action vectors. The robot
names its cameras and joints. :class:`InputLayout` joins the two from the
policy settings ``camera_keys``, ``state_layout`` and ``action_layout``, and
refuses every mismatch instead of feeding a slot the wrong camera or a joint
the wrong value. For the random presets the robot's own order is the layout.

Immutable values; safe from any thread.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sop_ros.core.errors import ConfigError
from sop_ros.core.policy.checkpoint import IMAGE_PREFIX, CheckpointSpec
from sop_ros.core.policy.config import PolicyConfig, split_names
from sop_ros.core.policy.inputs import NormStats

__all__ = ["InputLayout"]


@dataclass(frozen=True, kw_only=True)
class InputLayout:
    """Image slots, prompt length, vector orders and normalisation the network expects."""

    # The camera feeding each image slot, in the model's order; None for a slot left masked.
    slots: tuple[str | None, ...]
    # Text tokens after <bos>, the newline included.
    prompt_tokens: int
    # Index into the robot's state / actions of each entry of the model's vector (None: same order).
    state_order: tuple[int, ...] | None
    action_order: tuple[int, ...] | None
    # The checkpoint's normalisation in robot order, or None when it has none.
    norm_stats: NormStats | None

    @classmethod
    def of(cls, config: PolicyConfig, spec: CheckpointSpec | None) -> InputLayout:
        """Join the robot's names with what the checkpoint expects.

        Raises:
            ConfigError: a camera maps to a key the checkpoint lacks, or the robot's state or
                actions do not fill the checkpoint's vectors exactly.
        """
        if spec is None:
            return cls(
                slots=tuple(config.camera_names),
                prompt_tokens=config.max_prompt_tokens,
                state_order=None,
                action_order=None,
                norm_stats=None,
            )
        state_order = _order("state", config.state_names, split_names(config.state_layout), spec.state_dim)
        action_order = _order(
            "action", config.action_names, split_names(config.action_layout), spec.action_dim
        )
        return cls(
            slots=_slots(config, spec),
            prompt_tokens=spec.prompt_tokens - 1,
            state_order=state_order,
            action_order=action_order,
            norm_stats=_robot_stats(spec, config, state_order, action_order),
        )


def _slots(config: PolicyConfig, spec: CheckpointSpec) -> tuple[str | None, ...]:
    if not spec.image_keys:
        return tuple(config.camera_names)
    keys = split_names(config.camera_keys) or [f"{IMAGE_PREFIX}{name}" for name in config.camera_names]
    unknown = [key for key in keys if key not in spec.image_keys]
    if unknown:
        hint = "" if config.camera_keys else " (camera_keys is empty: each camera stood for its own key)"
        raise ConfigError(
            f"checkpoint {spec.path} has no image input {unknown}{hint}; its image keys are "
            f"{list(spec.image_keys)}: set camera_keys to one of them per camera in camera_names "
            f"{list(config.camera_names)}"
        )
    camera_of = dict(zip(keys, config.camera_names, strict=True))
    return tuple(camera_of.get(key) for key in spec.image_keys)


def _order(what: str, names: tuple[str, ...], layout: list[str], size: int) -> tuple[int, ...] | None:
    if size == 0:
        # The checkpoint does not fix the vector: the robot's values, zero-padded.
        if layout:
            raise ConfigError(f"{what}_layout is set but the checkpoint does not describe its {what} vector")
        return None
    layout = layout or list(names)
    if len(layout) != size:
        raise ConfigError(
            f"the checkpoint's {what} vector has {size} entries, the robot's {what}_names {len(names)} "
            f"({list(names)}); a policy cannot drop or invent joints: give the checkpoint's robot "
            f"description, or fine-tune a checkpoint made for this robot"
        )
    return tuple(names.index(name) for name in layout)


def _robot_stats(
    spec: CheckpointSpec,
    config: PolicyConfig,
    state_order: tuple[int, ...] | None,
    action_order: tuple[int, ...] | None,
) -> NormStats | None:
    if spec.state_norm is None or spec.action_norm is None or state_order is None or action_order is None:
        return None
    # Robot entry i is the checkpoint's entry argsort(order)[i].
    state = spec.state_norm.permuted(np.argsort(state_order))
    action = spec.action_norm.permuted(np.argsort(action_order))
    stats = NormStats(
        state_mean=state.center,
        state_std=state.scale,
        action_mean=action.center,
        action_std=action.inverse_scale,
    )
    stats.check_dims(config.state_dim, config.action_dim)
    return stats

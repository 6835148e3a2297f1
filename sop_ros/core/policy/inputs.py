r"""Turning observations and training samples into π0's input tensors, and back.

The layout equals what ``PI0Processor`` produces (image tokens, ``<bos>``, the
prompt, ``"\n"``, right padding), built here directly from uint8 arrays
because the processor's image backend needs torchvision and goes through PIL
per image; prompts are padded to a fixed length so every call has the same
shapes (what CUDA graphs and ``torch.compile`` need).

Pure functions and immutable values, except PromptLayout's cache of encoded
instructions (a dict that only grows; safe to share under the GIL).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerFast

from sop_ros.core.errors import ConfigError, IncompatibleWeightsError
from sop_ros.core.policy.tokenizer import BOS_TOKEN, PROMPT_END

__all__ = [
    "InputEncoder",
    "NormStats",
    "PromptLayout",
    "TrainingSample",
    "pad_last",
    "pixel_batch",
    "sample_field",
]

# A dimension that never moved in the data would otherwise blow up any later
# deviation; 1e-3 is below the resolution of joint encoders in rad and m.
STD_FLOOR = 1e-3


@dataclass(frozen=True, kw_only=True)
class TrainingSample:
    """One supervised example: what the robot saw and the chunk it should have produced."""

    # Camera name -> RGB image, uint8, shape (height, width, 3).
    images: Mapping[str, np.ndarray]
    # Proprioceptive state in robot units, float32, shape (state_dim,).
    state: np.ndarray
    # Natural-language task instruction.
    instruction: str
    # Target actions in robot units, float32, shape (horizon, action_dim).
    actions: np.ndarray
    # RECAP advantage indicator: True positive, False negative, None absent.
    advantage: bool | None = None


@dataclass(frozen=True, kw_only=True)
class NormStats:
    """Mean and standard deviation of state and actions, in robot units (float32)."""

    state_mean: np.ndarray
    state_std: np.ndarray
    action_mean: np.ndarray
    action_std: np.ndarray

    @classmethod
    def identity(cls, state_dim: int, action_dim: int) -> NormStats:
        """Statistics that leave values unchanged (used until real ones are set)."""
        return cls(
            state_mean=np.zeros(state_dim, np.float32),
            state_std=np.ones(state_dim, np.float32),
            action_mean=np.zeros(action_dim, np.float32),
            action_std=np.ones(action_dim, np.float32),
        )

    @classmethod
    def from_data(cls, states: np.ndarray, actions: np.ndarray) -> NormStats:
        """Compute statistics from states (N, S) and actions (N, A) or (N, H, A)."""
        states = np.asarray(states, np.float64)
        actions = np.asarray(actions, np.float64)
        if states.ndim != 2 or actions.ndim not in (2, 3) or not len(states) or not len(actions):
            raise ConfigError(
                f"norm stats need states (N, S) and actions (N, A) or (N, H, A); "
                f"got {states.shape} and {actions.shape}"
            )
        actions = actions.reshape(-1, actions.shape[-1])
        return cls(
            state_mean=states.mean(0).astype(np.float32),
            state_std=np.maximum(states.std(0), STD_FLOOR).astype(np.float32),
            action_mean=actions.mean(0).astype(np.float32),
            action_std=np.maximum(actions.std(0), STD_FLOOR).astype(np.float32),
        )

    def check_dims(self, state_dim: int, action_dim: int) -> None:
        """Raise IncompatibleWeightsError unless the statistics fit these dimensions."""
        if self.state_mean.shape != (state_dim,) or self.action_mean.shape != (action_dim,):
            raise IncompatibleWeightsError(
                f"norm stats are for state {self.state_mean.shape[0]} / action {self.action_mean.shape[0]} "
                f"dimensions, the policy has {state_dim} / {action_dim}"
            )

    def to_json(self) -> str:
        """Serialise (stored in the weights file's metadata)."""
        return json.dumps({k: getattr(self, k).tolist() for k in self._fields()})

    @classmethod
    def from_json(cls, text: str) -> NormStats:
        """Parse :meth:`to_json` output; raises IncompatibleWeightsError if malformed."""
        try:
            raw = json.loads(text)
            return cls(**{k: np.asarray(raw[k], np.float32) for k in cls._fields()})
        except (ValueError, KeyError, TypeError) as err:
            raise IncompatibleWeightsError(f"malformed norm stats in weights metadata: {err}") from None

    @staticmethod
    def _fields() -> tuple[str, ...]:
        return ("state_mean", "state_std", "action_mean", "action_std")


def pad_last(values: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad the last dimension to ``size`` (π0's fixed state/action width)."""
    return F.pad(values, (0, size - values.shape[-1]))


def pixel_batch(
    images: Sequence[Mapping[str, np.ndarray]],
    camera_names: Sequence[str],
    size_px: int,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Stack camera images into π0's (batch, camera, 3, size, size) tensor in [-1, 1].

    The uint8 pixels travel to ``device`` first and are converted there (a
    quarter of the bytes of float32 over PCIe, and the GPU does the arithmetic).
    Images of another size are stretched to the square (bilinear, antialiased),
    as the presets train. Cameras that an image set has beyond ``camera_names``
    are ignored.

    Raises:
        ConfigError: a configured camera is missing.
    """
    pixels, _ = image_slots(images, camera_names, size_px, device=device, dtype=dtype)
    return pixels


def image_slots(
    images: Sequence[Mapping[str, np.ndarray]],
    slots: Sequence[str | None],
    size_px: int,
    *,
    pad_to_square: bool = False,
    allow_missing: bool = False,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fill π0's image slots: (batch, slot, 3, size, size) pixels in [-1, 1] and (batch, slot) presence.

    Args:
        images: Camera name -> uint8 (height, width, 3) image, per sample.
        slots: The camera feeding each slot; None for a slot no camera feeds (always masked).
        size_px: Side of the square the vision tower takes.
        pad_to_square: Resize keeping the aspect ratio and pad with black, centred (LeRobot's
            and openpi's ``resize_with_pad``: bilinear, no antialiasing); otherwise stretch.
        allow_missing: Mask a camera an observation lacks (as LeRobot does) instead of refusing it.
        device: Where the tensors go.
        dtype: Floating-point dtype of the pixels.

    Raises:
        ConfigError: a camera is missing (and ``allow_missing`` is off), or a sample has no camera at all.
    """
    names = [name for name in slots if name is not None]
    frames: list[np.ndarray] = []
    present = np.zeros((len(images), len(slots)), bool)
    blank = np.zeros((size_px, size_px, 3), np.uint8)
    for index, cameras in enumerate(images):
        missing = [name for name in names if name not in cameras]
        if missing and not allow_missing:
            raise ConfigError(
                f"sample {index} lacks camera(s) {missing}; it has {sorted(cameras)}, the policy needs "
                f"{names}"
            )
        if len(missing) == len(names):
            raise ConfigError(
                f"sample {index} has none of the policy's cameras {names}; it has {sorted(cameras)}"
            )
        for slot, name in enumerate(slots):
            shown = name is not None and name in cameras
            present[index, slot] = shown
            frames.append(np.asarray(cameras[name], np.uint8) if name is not None and shown else blank)
    presence = torch.from_numpy(present).to(device)
    if pad_to_square:
        pixels = torch.cat([_resize_with_pad(frame, size_px, device) for frame in frames])
        pixels = pixels.mul_(2.0).sub_(1.0)
        # Masked slots are never attended to; LeRobot fills them with -1 all the same.
        pixels[~presence.flatten()] = -1.0
        return pixels.to(dtype).view(len(images), len(slots), 3, size_px, size_px), presence

    def to_float(pixels_hwc: np.ndarray) -> torch.Tensor:
        # np.stack / copy give torch its own writable array, never the observation's.
        uint8 = torch.from_numpy(pixels_hwc).to(device, non_blocking=True)
        return _resize(uint8.permute(0, 3, 1, 2).float(), size_px)

    if len({frame.shape for frame in frames}) == 1:
        pixels = to_float(np.stack(frames))
    else:
        pixels = torch.cat([to_float(frame[None].copy()) for frame in frames])
    # SigLIP's normalisation: mean 0.5, std 0.5 on [0, 1].
    pixels = pixels.mul_(2.0 / 255.0).sub_(1.0).to(dtype)
    return pixels.view(len(images), len(slots), 3, size_px, size_px), presence


def _resize_with_pad(pixels_hwc: np.ndarray, size_px: int, device: torch.device | str) -> torch.Tensor:
    """One uint8 image to (1, 3, size, size) in [0, 1]: aspect kept, centred, black borders."""
    image = torch.from_numpy(np.array(pixels_hwc, np.uint8)).to(device).permute(2, 0, 1)[None]
    image = image.float().div_(255.0)
    height, width = image.shape[-2:]
    if (height, width) == (size_px, size_px):
        return image
    ratio = max(width / size_px, height / size_px)
    new_height, new_width = int(height / ratio), int(width / ratio)
    image = F.interpolate(image, size=(new_height, new_width), mode="bilinear", align_corners=False)
    image = image.clamp_(0.0, 1.0)
    top, left = (size_px - new_height) // 2, (size_px - new_width) // 2
    return F.pad(image, (left, size_px - new_width - left, top, size_px - new_height - top), value=0.0)


def _resize(pixels: torch.Tensor, size_px: int) -> torch.Tensor:
    if pixels.shape[-2:] == (size_px, size_px):
        return pixels
    return F.interpolate(
        pixels, size=(size_px, size_px), mode="bilinear", antialias=True, align_corners=False
    )


class PromptLayout:
    r"""Token ids of prompts: image tokens for every camera, ``<bos>``, text, ``"\n"``, padding.

    Args:
        tokenizer: A tokenizer holding ``<bos>`` and ``"\n"``.
        image_token_id: The model's image token id (a vocabulary id no prompt produces).
        num_cameras: Image slots per sample.
        tokens_per_image: (image size / patch size)².
        max_prompt_tokens: Text tokens (including ``"\n"``) every prompt is padded to.
        newline_in_text: Tokenise ``text + "\n"`` in one piece, as LeRobot's π0 does with
            PaliGemma's tokenizer, instead of appending the newline token to the text's tokens.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerFast,
        *,
        image_token_id: int,
        num_cameras: int,
        tokens_per_image: int,
        max_prompt_tokens: int,
        newline_in_text: bool = False,
    ) -> None:
        self._tokenizer = tokenizer
        self._max_prompt_tokens = max_prompt_tokens
        self._newline_in_text = newline_in_text
        if newline_in_text:
            self._bos_id, self._end_id = tokenizer.bos_token_id, None
        else:
            ids = tokenizer.convert_tokens_to_ids([BOS_TOKEN, PROMPT_END])
            if not isinstance(ids, list) or tokenizer.unk_token_id in ids:
                raise ConfigError(f"the tokenizer lacks {BOS_TOKEN!r} or {PROMPT_END!r}")
            self._bos_id, self._end_id = ids
        self.image_token_id = image_token_id
        self.tokens_per_image = tokens_per_image
        self._pad_id = tokenizer.pad_token_id
        self._head = [self.image_token_id] * (num_cameras * tokens_per_image) + [self._bos_id]
        self.length = len(self._head) + max_prompt_tokens
        # Instructions repeat across every frame of an episode: each prompt's padded row is built once.
        self._rows: dict[str, tuple[np.ndarray, int]] = {}

    def encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (input_ids, attention_mask), both int64 (batch, length).

        Raises:
            ConfigError: a prompt needs more than ``max_prompt_tokens`` tokens.
        """
        rows = [self._row(text) for text in texts]
        input_ids = torch.from_numpy(np.stack([ids for ids, _ in rows]))
        lengths = torch.tensor([length for _, length in rows])
        attention_mask = (torch.arange(self.length) < lengths[:, None]).long()
        return input_ids, attention_mask

    def _row(self, text: str) -> tuple[np.ndarray, int]:
        row = self._rows.get(text)
        if row is not None:
            return row
        # Special-token text in an instruction ("<image>") must stay plain text.
        if self._newline_in_text:
            encoded = self._tokenizer(text + PROMPT_END, add_special_tokens=False, split_special_tokens=True)
            ids = list(encoded.input_ids)
        else:
            encoded = self._tokenizer(text, add_special_tokens=False, split_special_tokens=True)
            ids = [*encoded.input_ids, self._end_id]
        if len(ids) > self._max_prompt_tokens:
            raise ConfigError(
                f"prompt {text!r} needs {len(ids)} tokens, more than max_prompt_tokens="
                f"{self._max_prompt_tokens}; shorten it or raise the setting"
            )
        ids = self._head + ids
        padded = np.full(self.length, self._pad_id, np.int64)
        padded[: len(ids)] = ids
        row = (padded, len(ids))
        if len(self._rows) < 4096:
            self._rows[text] = row
        return row


def sample_field(sample: Any, name: str, default: Any = None) -> Any:
    """Read ``name`` from a sample given as an object with attributes or as a mapping."""
    if isinstance(sample, Mapping):
        return sample.get(name, default)
    return getattr(sample, name, default)


class InputEncoder:
    """Observations, samples and action chunks to π0's device tensors, normalised and padded.

    Args:
        layout: Token layout of the prompts.
        camera_names: The camera feeding each image slot, in prompt order (None: no camera, masked).
        state_names: State dimensions, in order.
        image_size_px: Side of the square images the vision tower takes.
        max_state_dim: π0's padded state width.
        max_action_dim: π0's padded action width.
        device: Where the tensors go.
        dtype: Floating-point dtype of the model.
        state_order: Index into the robot's state of each entry of the model's state vector
            (a checkpoint's layout); the robot's order when None.
        action_order: Index into the robot's actions of each entry of the model's action vector.
        pad_to_square: Resize images with padding (checkpoints) instead of stretching (presets).
        allow_missing: Mask cameras an observation lacks instead of refusing it.
    """

    def __init__(
        self,
        layout: PromptLayout,
        *,
        camera_names: Sequence[str | None],
        state_names: Sequence[str],
        image_size_px: int,
        max_state_dim: int,
        max_action_dim: int,
        device: torch.device,
        dtype: torch.dtype,
        state_order: Sequence[int] | None = None,
        action_order: Sequence[int] | None = None,
        pad_to_square: bool = False,
        allow_missing: bool = False,
    ) -> None:
        self._layout = layout
        self._camera_names = tuple(camera_names)
        self._state_names = tuple(state_names)
        self._image_size_px = image_size_px
        self._max_state_dim = max_state_dim
        self._max_action_dim = max_action_dim
        self._device = device
        self._dtype = dtype
        self._state_order = None if state_order is None else np.asarray(state_order, np.int64)
        self._action_order = None if action_order is None else np.asarray(action_order, np.int64)
        # Robot action i is entry _action_back[i] of the model's vector.
        self._action_back = None if self._action_order is None else np.argsort(self._action_order)
        self._pad_to_square = pad_to_square
        self._allow_missing = allow_missing

    def robot_actions(self, model_actions: torch.Tensor, action_dim: int) -> np.ndarray:
        """The model's (batch, horizon, max_action_dim) output as normalised robot actions, float32."""
        actions = model_actions.float().cpu().numpy()
        if self._action_back is None:
            return actions[:, :, :action_dim]
        return actions[:, :, self._action_back]

    def observations(
        self,
        images: Sequence[Mapping[str, np.ndarray]],
        states: Sequence[np.ndarray],
        prompts: Sequence[str],
        stats: NormStats,
    ) -> dict[str, torch.Tensor]:
        """Return the model inputs for a batch of observations (everything but ``actions``).

        Raises:
            ConfigError: a camera is missing, a state has the wrong size or a prompt is too long.
        """
        state = np.stack([np.asarray(s, np.float32) for s in states])
        if state.shape[1:] != (len(self._state_names),):
            raise ConfigError(
                f"state has shape {state.shape[1:]}, the policy expects ({len(self._state_names)},) "
                f"for {list(self._state_names)}"
            )
        normalised = (state - stats.state_mean) / stats.state_std
        if self._state_order is not None:
            normalised = normalised[:, self._state_order]
        model_state = torch.from_numpy(np.ascontiguousarray(normalised))
        input_ids, attention_mask = self._layout.encode(prompts)
        pixels, present = image_slots(
            images,
            self._camera_names,
            self._image_size_px,
            pad_to_square=self._pad_to_square,
            allow_missing=self._allow_missing,
            device=self._device,
            dtype=self._dtype,
        )
        if not bool(present.all()):
            attention_mask = self._mask_missing_images(attention_mask, present.cpu())
        device = self._device
        return {
            "state": pad_last(model_state, self._max_state_dim).to(device, self._dtype, non_blocking=True),
            "input_ids": input_ids.to(device, non_blocking=True),
            "attention_mask": attention_mask.to(device, non_blocking=True),
            "pixel_values": pixels,
            "pixel_attention_mask": present,
        }

    def _mask_missing_images(self, attention_mask: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        # The model puts the present cameras' features on the first image tokens, in slot
        # order; the tokens of absent slots come last and nothing may attend to them.
        per_image = self._layout.tokens_per_image
        image_tokens = len(self._camera_names) * per_image
        first_masked = present.sum(dim=1) * per_image
        position = torch.arange(image_tokens)
        masked = position[None, :] >= first_masked[:, None]
        attention_mask = attention_mask.clone()
        attention_mask[:, :image_tokens][masked] = 0
        return attention_mask

    def actions(self, actions: np.ndarray, stats: NormStats) -> torch.Tensor:
        """Normalise and pad target chunks (batch, horizon, action_dim) in robot units."""
        normalised = (np.asarray(actions, np.float32) - stats.action_mean) / stats.action_std
        if self._action_order is not None:
            normalised = normalised[:, :, self._action_order]
        normalised = torch.from_numpy(np.ascontiguousarray(normalised))
        return pad_last(normalised, self._max_action_dim).to(self._device, self._dtype)

"""Trainable-weights files: safetensors with the policy's identity in the metadata.

A file holds only trainable tensors. Its string metadata carries the schema,
the ``config_hash`` and ``base_model_id`` of the policy that wrote it, the
weights version and the normalisation statistics, so one file is everything a
robot needs to act like the learner's policy.

Pure functions; safe from any thread (each call touches only its own path).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from sop_ros.core.durable import fsync_file
from sop_ros.core.errors import IncompatibleWeightsError, WeightsError
from sop_ros.core.weights import TensorSpec

__all__ = [
    "META_BASE_MODEL",
    "META_CONFIG_HASH",
    "META_NORM_STATS",
    "META_SCHEMA",
    "META_VERSION",
    "WEIGHTS_FILE_SCHEMA",
    "check_state",
    "dtype_name",
    "read_weights",
    "specs_of",
    "write_weights",
]

WEIGHTS_FILE_SCHEMA = "1"
META_SCHEMA = "sop.schema"
META_CONFIG_HASH = "sop.config_hash"
META_BASE_MODEL = "sop.base_model_id"
META_VERSION = "sop.version"
META_NORM_STATS = "sop.norm_stats"

_DTYPE_NAMES = {
    torch.float32: "F32",
    torch.bfloat16: "BF16",
    torch.float16: "F16",
    torch.float64: "F64",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
_DTYPES = {name: dtype for dtype, name in _DTYPE_NAMES.items()}


def dtype_name(dtype: torch.dtype) -> str:
    """Return the safetensors spelling of a torch dtype ("F32", "BF16", ...)."""
    try:
        return _DTYPE_NAMES[dtype]
    except KeyError:
        raise WeightsError(f"dtype {dtype} has no safetensors name here") from None


def specs_of(state: Mapping[str, torch.Tensor]) -> tuple[TensorSpec, ...]:
    """Return the name, dtype and shape of every tensor, sorted by name."""
    return tuple(
        TensorSpec(name=name, dtype=dtype_name(tensor.dtype), shape=tuple(tensor.shape))
        for name, tensor in sorted(state.items())
    )


def cast_float_precision(
    expected: tuple[TensorSpec, ...], state: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Return ``state`` with floating tensors cast to the expected floating dtype.

    Precision is a property of where a policy runs (bf16 on a GPU, fp32 on a
    CPU), not of what it learned: a file written by a bf16 learner loads into
    an fp32 robot and back. Other differences are left for :func:`check_state`.
    """
    want = {spec.name: spec.dtype for spec in expected}
    out = dict(state)
    for name, tensor in state.items():
        dtype = _DTYPES.get(want.get(name, ""))
        if (
            dtype is not None
            and dtype != tensor.dtype
            and dtype.is_floating_point
            and tensor.is_floating_point()
        ):
            out[name] = tensor.to(dtype)
    return out


def check_state(expected: tuple[TensorSpec, ...], state: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise IncompatibleWeightsError listing every name, shape or dtype that differs.

    Args:
        expected: The specs the running policy needs.
        state: Tensors offered to it.
        source: Where the tensors came from, for the message.
    """
    want = {spec.name: spec for spec in expected}
    have = {spec.name: spec for spec in specs_of(state)}
    problems = [f"missing {name}" for name in sorted(want.keys() - have.keys())]
    problems += [f"unexpected {name}" for name in sorted(have.keys() - want.keys())]
    for name in sorted(want.keys() & have.keys()):
        w, h = want[name], have[name]
        if w.shape != h.shape:
            problems.append(f"{name}: shape {list(h.shape)}, expected {list(w.shape)}")
        if w.dtype != h.dtype:
            problems.append(f"{name}: dtype {h.dtype}, expected {w.dtype}")
    if problems:
        shown = "; ".join(problems[:20])
        more = f"; and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise IncompatibleWeightsError(
            f"{source} does not fit the policy ({len(problems)} differences): {shown}{more}"
        )


def write_weights(path: Path, state: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> None:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tensors = {name: tensor.detach().to("cpu").contiguous() for name, tensor in state.items()}
    meta = {META_SCHEMA: WEIGHTS_FILE_SCHEMA, **metadata}
    try:
        save_file(tensors, str(tmp), metadata=meta)
        fsync_file(tmp)
        tmp.replace(path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise WeightsError(f"cannot write weights to {path}: {err}") from err


def read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a weights file into CPU tensors; return (tensors, metadata).

    Raises:
        WeightsError: the file is missing or not safetensors.
        IncompatibleWeightsError: it was written under another file schema.
    """
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except (OSError, ValueError) as err:
        raise WeightsError(f"cannot read weights file {path}: {err}") from err
    except Exception as err:  # safetensors raises its own SafetensorError for corrupt headers
        raise WeightsError(f"{path} is not a safetensors weights file: {err}") from err
    schema = metadata.get(META_SCHEMA)
    if schema != WEIGHTS_FILE_SCHEMA:
        raise IncompatibleWeightsError(
            f"{path} has weights-file schema {schema!r}, this policy reads {WEIGHTS_FILE_SCHEMA!r}"
        )
    return tensors, metadata

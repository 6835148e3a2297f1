"""The weights manifest: what a published policy version contains and how to verify it.

A version is one safetensors file holding only the trainable tensors. The
manifest names the file's tensors, splits the file into fixed-size chunks and
records each chunk's sha256 and the whole file's, so a robot can check every
byte it received before it stages anything.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

from sop_ros.core.errors import IncompatibleWeightsError, IntegrityError

__all__ = [
    "MANIFEST_SCHEMA",
    "TensorSpec",
    "WeightsManifest",
    "check_compatible",
    "file_digests",
    "file_sha256",
    "iter_chunks",
    "read_safetensors_specs",
    "sha256_bytes",
]

MANIFEST_SCHEMA = 1

_READ_BYTES = 1 << 20


def sha256_bytes(data: bytes | memoryview) -> str:
    """Return the lowercase hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    """Return the lowercase hex sha256 of the file at ``path``, streaming."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter_chunks(stream, _READ_BYTES):
            digest.update(block)
    return digest.hexdigest()


def iter_chunks(stream: BinaryIO, chunk_size_bytes: int) -> Iterator[bytes]:
    """Yield consecutive ``chunk_size_bytes`` pieces of ``stream`` (the last may be shorter)."""
    while chunk := stream.read(chunk_size_bytes):
        yield chunk


def file_digests(path: Path, chunk_size_bytes: int) -> tuple[tuple[str, ...], str, int]:
    """Return (chunk digests, whole-file digest, size in bytes) of ``path``, streaming."""
    total = hashlib.sha256()
    chunks: list[str] = []
    size = 0
    with path.open("rb") as stream:
        for chunk in iter_chunks(stream, chunk_size_bytes):
            total.update(chunk)
            chunks.append(sha256_bytes(chunk))
            size += len(chunk)
    return tuple(chunks), total.hexdigest(), size


@dataclass(frozen=True, kw_only=True)
class TensorSpec:
    """Name, dtype (safetensors spelling, e.g. "F32", "BF16") and shape of one tensor."""

    name: str
    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True, kw_only=True)
class WeightsManifest:
    """Everything a robot needs to fetch, verify and accept one weights version."""

    # Monotonic version number; a robot ignores any version <= its newest.
    version: int
    # Learner training step at which the weights were taken.
    step: int
    # Identifier of the base model the trainable tensors belong to.
    base_model_id: str
    # sha256 of the model config; a robot refuses weights for another config.
    config_hash: str
    # The trainable tensors in the file.
    tensors: tuple[TensorSpec, ...]
    # Size of every chunk but the last (bytes).
    chunk_size_bytes: int
    # sha256 of each chunk, in file order.
    chunk_sha256: tuple[str, ...]
    # sha256 of the whole file.
    sha256: str
    # Size of the whole file (bytes).
    size_bytes: int
    schema: int = MANIFEST_SCHEMA

    def __post_init__(self) -> None:
        expected = -(-self.size_bytes // self.chunk_size_bytes) if self.chunk_size_bytes > 0 else -1
        if expected != len(self.chunk_sha256):
            raise IntegrityError(
                f"manifest v{self.version}: {self.size_bytes} bytes in chunks of "
                f"{self.chunk_size_bytes} make {expected} chunks, "
                f"but {len(self.chunk_sha256)} digests are listed"
            )

    @property
    def chunk_count(self) -> int:
        """Number of chunks the file is split into."""
        return len(self.chunk_sha256)

    def chunk_length(self, index: int) -> int:
        """Length in bytes of chunk ``index``."""
        if not 0 <= index < self.chunk_count:
            raise IntegrityError(f"chunk {index} out of range 0..{self.chunk_count - 1}")
        if index < self.chunk_count - 1:
            return self.chunk_size_bytes
        return self.size_bytes - self.chunk_size_bytes * (self.chunk_count - 1)

    @classmethod
    def for_file(
        cls,
        path: Path,
        *,
        version: int,
        step: int,
        base_model_id: str,
        config_hash: str,
        tensors: tuple[TensorSpec, ...],
        chunk_size_bytes: int,
    ) -> WeightsManifest:
        """Describe the weights file at ``path``, computing its digests."""
        chunk_sha256, sha256, size_bytes = file_digests(path, chunk_size_bytes)
        return cls(
            version=version,
            step=step,
            base_model_id=base_model_id,
            config_hash=config_hash,
            tensors=tensors,
            chunk_size_bytes=chunk_size_bytes,
            chunk_sha256=chunk_sha256,
            sha256=sha256,
            size_bytes=size_bytes,
        )

    def to_json(self) -> bytes:
        """Serialise to UTF-8 JSON (the wire and on-disk form)."""
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> WeightsManifest:
        """Parse :meth:`to_json` output; raises IntegrityError on any mismatch."""
        try:
            raw = json.loads(data)
            if raw.get("schema") != MANIFEST_SCHEMA:
                raise IntegrityError(f"manifest schema {raw.get('schema')!r}, expected {MANIFEST_SCHEMA}")
            raw["tensors"] = tuple(
                TensorSpec(name=t["name"], dtype=t["dtype"], shape=tuple(t["shape"])) for t in raw["tensors"]
            )
            raw["chunk_sha256"] = tuple(raw["chunk_sha256"])
            return cls(**raw)
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise IntegrityError(f"malformed weights manifest: {err}") from None


def check_compatible(manifest: WeightsManifest, expected: tuple[TensorSpec, ...], config_hash: str) -> None:
    """Raise IncompatibleWeightsError unless ``manifest`` fits a policy with ``expected`` tensors.

    The tensor tables must match exactly (names, dtypes, shapes) and the config hashes must be equal.
    """
    problems = []
    if manifest.config_hash != config_hash:
        problems.append(f"config hash {manifest.config_hash[:12]} != running {config_hash[:12]}")
    have = {t.name: t for t in manifest.tensors}
    want = {t.name: t for t in expected}
    if missing := sorted(want.keys() - have.keys()):
        problems.append(f"missing tensors {missing[:5]}{'…' if len(missing) > 5 else ''}")
    if extra := sorted(have.keys() - want.keys()):
        problems.append(f"unknown tensors {extra[:5]}{'…' if len(extra) > 5 else ''}")
    for name in sorted(want.keys() & have.keys()):
        got, need = have[name], want[name]
        if (got.dtype, tuple(got.shape)) != (need.dtype, tuple(need.shape)):
            problems.append(f"{name}: {got.dtype}{list(got.shape)} != {need.dtype}{list(need.shape)}")
    if problems:
        reason = "; ".join(problems)
        raise IncompatibleWeightsError(f"weights v{manifest.version} do not fit the policy: {reason}")


def read_safetensors_specs(path: Path) -> tuple[TensorSpec, ...]:
    """Return the tensor table of a safetensors file from its header alone (no tensor data is read).

    Raises:
        IntegrityError: the file does not start with a valid safetensors header.
    """
    with path.open("rb") as stream:
        head = stream.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 0 < length <= 100 << 20:
            raise IntegrityError(f"{path} is not a safetensors file (header length {length})")
        try:
            header = json.loads(stream.read(length))
            return tuple(
                TensorSpec(name=name, dtype=info["dtype"], shape=tuple(info["shape"]))
                for name, info in sorted(header.items())
                if name != "__metadata__"
            )
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise IntegrityError(f"{path} has a malformed safetensors header: {err}") from None

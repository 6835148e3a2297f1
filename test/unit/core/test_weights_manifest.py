from __future__ import annotations

from pathlib import Path

import pytest

from sop_ros.core.errors import IntegrityError
from sop_ros.core.weights import TensorSpec, WeightsManifest, sha256_bytes


def make_manifest(path: Path, data: bytes, chunk: int) -> WeightsManifest:
    path.write_bytes(data)
    return WeightsManifest.for_file(
        path,
        version=3,
        step=75,
        base_model_id="pi0-tiny",
        config_hash="c" * 64,
        tensors=(TensorSpec(name="w", dtype="F32", shape=(2, 5)),),
        chunk_size_bytes=chunk,
    )


def test_manifest_digests_and_chunks(tmp_path: Path) -> None:
    data = bytes(range(256)) * 10  # 2560 bytes
    manifest = make_manifest(tmp_path / "w.safetensors", data, chunk=1000)
    assert manifest.chunk_count == 3 and manifest.size_bytes == 2560
    assert [manifest.chunk_length(i) for i in range(3)] == [1000, 1000, 560]
    assert manifest.chunk_sha256[2] == sha256_bytes(data[2000:])
    assert manifest.sha256 == sha256_bytes(data)
    with pytest.raises(IntegrityError, match="chunk 3 out of range"):
        manifest.chunk_length(3)


def test_manifest_json_round_trip_and_rejects_tampering(tmp_path: Path) -> None:
    manifest = make_manifest(tmp_path / "w.safetensors", b"x" * 10, chunk=4)
    assert WeightsManifest.from_json(manifest.to_json()) == manifest
    with pytest.raises(IntegrityError, match="schema"):
        WeightsManifest.from_json(manifest.to_json().replace(b'"schema": 1', b'"schema": 9'))
    with pytest.raises(IntegrityError, match="2 chunks, but 3 digests"):
        WeightsManifest.from_json(
            manifest.to_json().replace(b'"chunk_size_bytes": 4', b'"chunk_size_bytes": 5')
        )
    with pytest.raises(IntegrityError, match="malformed"):
        WeightsManifest.from_json(b"{not json")

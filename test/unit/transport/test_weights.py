"""Weights learner → robots over a real loopback router: push once, repair, latest wins, verify."""

from __future__ import annotations

import hashlib
import json
import queue
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from sop_ros.core.errors import IncompatibleWeightsError, WeightsError
from sop_ros.core.weights import TensorSpec, WeightsManifest, read_safetensors_specs
from sop_ros.transport.session import RetryPolicy, query_once
from sop_ros.transport.weights_fetch import WeightsFetcher, WeightsFetcherConfig
from sop_ros.transport.weights_publish import WeightsPublisher, WeightsPublisherConfig

pytestmark = pytest.mark.timeout(60)

CHUNK = 64 << 10
CONFIG_HASH = "c" * 64


def make_weights(tmp_path: Path, version: int, *, rows: int = 64) -> tuple[Path, WeightsManifest]:
    rng = np.random.default_rng(version)
    path = tmp_path / f"learner_v{version}.safetensors"
    save_file(
        {
            "vision.proj": rng.standard_normal((rows, 1024), dtype=np.float32),
            "expert.out": rng.standard_normal((rows, 512), dtype=np.float32),
        },
        str(path),
    )
    manifest = WeightsManifest.for_file(
        path,
        version=version,
        step=version * 25,
        base_model_id="pi0-test",
        config_hash=CONFIG_HASH,
        tensors=read_safetensors_specs(path),
        chunk_size_bytes=CHUNK,
    )
    return path, manifest


class Robot:
    """A fetcher plus what it handed over."""

    def __init__(self, session, staging: Path, **kwargs):
        self.ready: queue.Queue = queue.Queue()
        self.errors: list[WeightsError] = []
        config = WeightsFetcherConfig(
            fleet="t",
            push_idle_s=0.3,
            manifest_poll_s=0.3,
            retry=RetryPolicy(timeout_s=0.5, max_attempts=2),
        )
        self.fetcher = WeightsFetcher(
            session,
            staging,
            on_ready=lambda m, p: self.ready.put((m, p, hashlib.sha256(p.read_bytes()).hexdigest())),
            on_error=self.errors.append,
            config=config,
            **kwargs,
        )

    def next_ready(self, timeout_s: float = 15.0):
        return self.ready.get(timeout=timeout_s)


def publisher(session) -> WeightsPublisher:
    return WeightsPublisher(session, WeightsPublisherConfig(fleet="t"))


def wait_routes() -> None:
    # Subscriptions take a moment to reach the router; robots that miss the push repair by query.
    threading.Event().wait(0.5)


def test_two_robots_get_version_by_push_and_late_joiner_gets_latest(fleet, tmp_path):
    pub = publisher(fleet.client())
    robots = [Robot(fleet.client(), tmp_path / f"robot{i}") for i in range(2)]
    wait_routes()
    path, manifest = make_weights(tmp_path, 1)
    pub.publish(path, manifest)
    for robot in robots:
        got, staged, digest = robot.next_ready()
        assert got == manifest and digest == manifest.sha256
        assert staged == robot.fetcher.staging_dir / "v0001.safetensors"
        # Every chunk came through the router's fan-out; none had to be asked for.
        assert robot.fetcher.stats.chunks_pushed == manifest.chunk_count
        assert robot.fetcher.stats.chunks_fetched == 0

    path2, manifest2 = make_weights(tmp_path, 2)
    pub.publish(path2, manifest2)
    late = Robot(fleet.client(), tmp_path / "late")
    got, _, digest = late.next_ready()
    assert got.version == 2 and digest == manifest2.sha256
    assert late.fetcher.stats.chunks_fetched + late.fetcher.stats.chunks_pushed == manifest2.chunk_count
    assert late.ready.empty() and late.fetcher.newest_version == 2
    for robot in robots:
        assert robot.next_ready()[0].version == 2

    # An older version announced later (a stale learner) is ignored.
    stale = publisher(fleet.client())
    stale.publish(path, manifest)
    threading.Event().wait(0.8)
    assert all(r.ready.empty() for r in [*robots, late])
    for r in [*robots, late]:
        r.fetcher.close()
    pub.close()
    stale.close()


class PartialPublisher(WeightsPublisher):
    """Pushes only the first chunks, as a learner that dies mid-push."""

    def _push(self, path, manifest):
        self._push_pub.put(manifest.to_json(), attachment=b'{"schema":1,"kind":"manifest"}')
        data = path.read_bytes()
        for index in range(manifest.chunk_count // 2):
            chunk = data[index * CHUNK : (index + 1) * CHUNK]
            header = f'{{"schema":1,"kind":"chunk","version":{manifest.version},"index":{index}}}'
            self._push_pub.put(chunk, attachment=header.encode())


def test_interrupted_download_is_never_handed_over_and_resumes(fleet, tmp_path):
    robot = Robot(fleet.client(), tmp_path / "robot")
    dying = PartialPublisher(fleet.client(), WeightsPublisherConfig(fleet="t"))
    wait_routes()
    path, manifest = make_weights(tmp_path, 1)
    dying.publish(path, manifest)
    threading.Event().wait(0.2)  # let the half push reach the robot before the learner dies
    dying.close()
    threading.Event().wait(1.5)
    assert robot.ready.empty()
    assert robot.errors and "unavailable" in str(robot.errors[0])
    assert list(robot.fetcher.staging_dir.glob("v*")) == []
    pushed = robot.fetcher.stats.chunks_pushed
    assert 0 < pushed < manifest.chunk_count

    back = publisher(fleet.client())
    back.publish(path, manifest, push=False)
    got, _, digest = robot.next_ready()
    assert got == manifest and digest == manifest.sha256
    # Only the chunks the dead learner never sent were fetched.
    assert robot.fetcher.stats.chunks_fetched == manifest.chunk_count - pushed
    robot.fetcher.close()
    back.close()


class TamperingPublisher(WeightsPublisher):
    """Flips a byte in chunk 3 of the push (the repair queryable serves the true bytes)."""

    def _push(self, path, manifest):
        original = self._push_pub

        class Tamper:
            def put(self, data, attachment):
                if b'"index": 3,' in attachment and b'"kind": "chunk"' in attachment:
                    data = bytes([data[0] ^ 1]) + data[1:]
                original.put(data, attachment=attachment)

        self._push_pub = Tamper()
        try:
            super()._push(path, manifest)
        finally:
            self._push_pub = original


def test_tampered_chunk_is_rejected_and_fetched_again(fleet, tmp_path):
    robot = Robot(fleet.client(), tmp_path / "robot")
    pub = TamperingPublisher(fleet.client(), WeightsPublisherConfig(fleet="t"))
    wait_routes()
    path, manifest = make_weights(tmp_path, 1)
    pub.publish(path, manifest)
    got, _, digest = robot.next_ready()
    assert digest == manifest.sha256 == got.sha256
    assert robot.fetcher.stats.chunks_rejected == 1
    assert robot.fetcher.stats.chunks_fetched == 1
    robot.fetcher.close()
    pub.close()


def test_incompatible_weights_are_refused(fleet, tmp_path):
    path, manifest = make_weights(tmp_path, 1)
    expected = tuple(
        TensorSpec(name=t.name, dtype=t.dtype, shape=(1, *t.shape[1:])) if t.name == "expert.out" else t
        for t in manifest.tensors
    )
    robot = Robot(fleet.client(), tmp_path / "robot", expected_tensors=expected, config_hash=CONFIG_HASH)
    pub = publisher(fleet.client())
    wait_routes()
    pub.publish(path, manifest)
    threading.Event().wait(1.0)
    assert robot.ready.empty()
    assert [type(e) for e in robot.errors] == [IncompatibleWeightsError]
    assert "expert.out" in str(robot.errors[0])
    assert list((tmp_path / "robot").iterdir()) == []
    robot.fetcher.close()
    pub.close()


def test_newer_version_abandons_the_download_in_progress(fleet, tmp_path):
    robot = Robot(fleet.client(), tmp_path / "robot")
    robot.fetcher.close()
    # A long quiet time keeps v1 waiting for pushes that never come, until v2 is announced.
    config = WeightsFetcherConfig(fleet="t", push_idle_s=30.0, manifest_poll_s=30.0)
    fetcher = WeightsFetcher(
        fleet.client(), tmp_path / "robot", on_ready=lambda m, p: robot.ready.put(m), config=config
    )
    pub = publisher(fleet.client())
    wait_routes()
    path1, manifest1 = make_weights(tmp_path, 1)
    pub.publish(path1, manifest1, push=False)
    threading.Event().wait(0.3)
    path2, manifest2 = make_weights(tmp_path, 2)
    pub.publish(path2, manifest2)
    assert robot.ready.get(timeout=10).version == 2
    assert fetcher.stats.versions_abandoned == 1 and fetcher.stats.versions_ready == 1
    assert sorted(p.name for p in (tmp_path / "robot").iterdir()) == ["v0002.json", "v0002.safetensors"]
    fetcher.close()
    pub.close()


def test_a_corrupt_version_is_refused_once_not_downloaded_at_every_poll(fleet, tmp_path):
    robot = Robot(fleet.client(), tmp_path / "robot")
    pub = publisher(fleet.client())
    wait_routes()
    path, manifest = make_weights(tmp_path, 1)
    data = bytearray(path.read_bytes())
    data[CHUNK + 10] ^= 0xFF  # chunk 1 on the learner's disk no longer matches its manifest
    path.write_bytes(bytes(data))
    pub.publish(path, manifest)
    deadline = time.monotonic() + 15
    while not robot.errors and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(robot.errors) == 1 and "chunk 1 of v1 failed its digest" in str(robot.errors[0])
    stats = vars(robot.fetcher.stats).copy()
    threading.Event().wait(2.0)  # about six manifest polls, each answering the same corrupt v1
    assert vars(robot.fetcher.stats) == stats and len(robot.errors) == 1
    # A newer, sound version is still taken.
    good, good_manifest = make_weights(tmp_path, 2)
    pub.publish(good, good_manifest)
    got, _, digest = robot.next_ready()
    assert got.version == 2 and digest == good_manifest.sha256
    robot.fetcher.close()
    pub.close()


def test_a_wildcard_query_gets_answers_not_a_crash(fleet, tmp_path):
    pub = publisher(fleet.client())
    path, manifest = make_weights(tmp_path, 1)
    pub.publish(path, manifest, push=False)
    session = fleet.client()
    wait_routes()
    for key in ("sop/**", "sop/t/weights/chunk/**", "sop/t/weights/chunk/*/*"):
        replies = list(session.get(key, timeout=3.0))
        errors = [json.loads(r.err.payload.to_bytes()) for r in replies if r.err is not None]
        assert any("bad chunk key" in e["reason"] and e["retry"] is False for e in errors), key
    # The queryable still serves real chunks afterwards.
    data, _ = query_once(session, "sop/t/weights/chunk/1/0", timeout_s=3.0)
    assert hashlib.sha256(data).hexdigest() == manifest.chunk_sha256[0]
    pub.close()

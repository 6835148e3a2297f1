"""Bag upload robot → learner over real Zenoh sessions on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from transport_helpers import tree_digest, validate_bag

from sop_ros.core.errors import TransportError
from sop_ros.transport.errors import BagRejectedError
from sop_ros.transport.ingest import IngestConfig, IngestServer
from sop_ros.transport.session import RetryPolicy
from sop_ros.transport.upload import BagUploader, UploadConfig, UploadResult, UploadStats

pytestmark = pytest.mark.timeout(60)

CHUNK = 64 << 10
FAST_RETRY = RetryPolicy(timeout_s=2.0, max_attempts=20, backoff_s=0.05, max_backoff_s=0.2)


def uploader(session, robot_id: str, **kwargs) -> BagUploader:
    config = UploadConfig(fleet="t", robot_id=robot_id, chunk_size_bytes=CHUNK, retry=FAST_RETRY, **kwargs)
    return BagUploader(session, config)


def server(session, store: Path, stored: list) -> IngestServer:
    return IngestServer(
        session, store, validate_bag=validate_bag, on_episode=stored.append, config=IngestConfig(fleet="t")
    )


def index_entries(store: Path) -> list[dict]:
    return [json.loads(line) for line in (store / "index.jsonl").read_text().splitlines()]


def test_two_robots_upload_several_bags_each_stored_once(fleet, bag_factory, tmp_path):
    store, stored = tmp_path / "store", []
    srv = server(fleet.client(), store, stored)
    bags = [bag_factory(robot, seed=i) for i, robot in enumerate(["r1", "r2", "r1", "r2"])]
    robots = {"r1": uploader(fleet.client(), "r1"), "r2": uploader(fleet.client(), "r2")}
    results = {}

    def send(robot: str) -> None:
        for path, meta in bags:
            if meta.robot_id == robot:
                results[meta.episode_id] = robots[robot].upload(path)

    threads = [threading.Thread(target=send, args=(r,)) for r in robots]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for path, meta in bags:
        assert results[meta.episode_id].state == "stored"
        target = store / "pick" / meta.robot_id / meta.episode_id
        assert tree_digest(target) == tree_digest(path)
    assert sorted(e["episode_id"] for e in index_entries(store)) == sorted(m.episode_id for _, m in bags)
    assert sorted(s.meta.episode_id for s in stored) == sorted(m.episode_id for _, m in bags)

    # The same episode again: answered "already stored", stored once, no chunk sent.
    again = robots["r1"].upload(bags[0][0])
    assert again.state == "already_stored" and again.stats.chunks_sent == 0
    assert len(index_entries(store)) == len(bags) and len(stored) == len(bags)
    srv.close()


class CountingUploader(BagUploader):
    """Records every chunk send and can damage chosen sends on the way out."""

    def __init__(self, *args, corrupt: set[int] = frozenset(), **kwargs):
        super().__init__(*args, **kwargs)
        self.sends: list[int] = []
        self._corrupt = set(corrupt)

    def _send_chunk(self, key, name, index, data, sha256):
        if name.endswith(".mcap"):
            self.sends.append(index)
            if index in self._corrupt:
                self._corrupt.discard(index)
                data = bytes([data[0] ^ 0xFF]) + data[1:]
        return super()._send_chunk(key, name, index, data, sha256)


def test_flipped_byte_is_detected_and_resent(fleet, bag_factory, tmp_path):
    store = tmp_path / "store"
    srv = server(fleet.client(), store, [])
    path, meta = bag_factory("r1")
    up = CountingUploader(
        fleet.client(), UploadConfig(fleet="t", robot_id="r1", chunk_size_bytes=CHUNK), corrupt={2}
    )
    result = up.upload(path)
    assert result.state == "stored" and result.stats.chunks_resent == 1
    assert up.sends.count(2) == 2
    assert tree_digest(store / "pick" / "r1" / meta.episode_id) == tree_digest(path)
    srv.close()


def test_server_killed_mid_upload_resumes_without_resending_acked_chunks(fleet, bag_factory, tmp_path):
    store, stored = tmp_path / "store", []
    path, meta = bag_factory("r1", messages=40)
    server_session = fleet.client()
    srv = server(server_session, store, stored)
    # Capped at ~1 MB/s so the kill lands mid-upload.
    up = CountingUploader(
        fleet.client(),
        UploadConfig(
            fleet="t", robot_id="r1", chunk_size_bytes=CHUNK, retry=FAST_RETRY, rate_limit_bytes_per_s=1.0e6
        ),
    )
    acked_before_kill: set[int] = set()
    halfway = threading.Event()

    def progress(p) -> None:
        if p.done_bytes > p.total_bytes // 2:
            halfway.set()

    result = {}
    t = threading.Thread(target=lambda: result.setdefault("r", up.upload(path, progress=progress)))
    t.start()
    assert halfway.wait(20)
    srv.close()
    server_session.close()
    acked_before_kill = {i for i, _ in _acked_on_disk(store, meta)}
    sends_before_kill = len(up.sends)
    time.sleep(0.5)
    srv = server(fleet.client(), store, stored)
    t.join(30)
    res = result["r"]
    assert res.state == "stored" and res.stats.attempts >= 2
    resent_after_restart = set(up.sends[sends_before_kill:]) & acked_before_kill
    assert acked_before_kill and not resent_after_restart
    assert res.stats.chunks_skipped >= len(acked_before_kill)
    assert tree_digest(store / "pick" / "r1" / meta.episode_id) == tree_digest(path)
    assert [s.meta.episode_id for s in stored] == [meta.episode_id]
    assert len(index_entries(store)) == 1
    srv.close()


def _acked_on_disk(store: Path, meta) -> list[tuple[int, str]]:
    log = store / ".partial" / "r1" / meta.episode_id / "acks.jsonl"
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    return [(e["index"], e["file"]) for e in entries if e["file"].endswith(".mcap")]


def test_truncated_bag_is_quarantined_with_reason(fleet, bag_factory, tmp_path):
    store, stored = tmp_path / "store", []
    srv = server(fleet.client(), store, stored)
    path, _ = bag_factory("r2")
    mcap = next(path.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])
    with pytest.raises(BagRejectedError) as info:
        uploader(fleet.client(), "r2").upload(path)
    assert info.value.quarantine_path.startswith("quarantine/r2/")
    kept = store / info.value.quarantine_path
    assert tree_digest(kept) == tree_digest(path)
    reason = json.loads(kept.with_name(kept.name + ".reason.json").read_text())["reason"]
    assert reason and reason in info.value.reason
    assert not stored and not (store / "index.jsonl").exists()
    assert path.exists()  # the robot keeps its copy
    srv.close()


def test_unreachable_learner_raises_transport_error_after_budget(fleet, bag_factory):
    path, _ = bag_factory("r1", messages=2)
    sleeps: list[float] = []
    config = UploadConfig(
        fleet="t",
        robot_id="r1",
        chunk_size_bytes=CHUNK,
        retry=RetryPolicy(timeout_s=0.2, max_attempts=3, backoff_s=0.01, max_backoff_s=0.02),
    )
    with pytest.raises(TransportError, match="after 3 attempts"):
        BagUploader(fleet.client(), config, sleep=sleeps.append).upload(path)
    assert sleeps == [0.01, 0.02]
    assert path.exists()


class LinkDropsAfter(BagUploader):
    """Loses the link after ``limit`` chunk sends."""

    def __init__(self, *args, limit: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.limit = limit

    def _settle(self, item, key, stats, report):
        if stats.chunks_sent > self.limit:
            raise TransportError("link lost")
        super()._settle(item, key, stats, report)


def test_bag_changed_between_attempts_sends_the_changed_chunk_again(fleet, bag_factory, tmp_path):
    store = tmp_path / "store"
    srv = server(fleet.client(), store, [])
    path, meta = bag_factory("r1")
    once = RetryPolicy(timeout_s=2.0, max_attempts=1)
    config = UploadConfig(fleet="t", robot_id="r1", chunk_size_bytes=CHUNK, max_in_flight=1, retry=once)
    with pytest.raises(TransportError):
        LinkDropsAfter(fleet.client(), config, limit=4).upload(path)
    mcap = next(path.glob("*.mcap"))
    data = bytearray(mcap.read_bytes())
    data[10] ^= 0xFF  # same size, different first chunk
    mcap.write_bytes(bytes(data))
    second = CountingUploader(fleet.client(), config)
    result = second.upload(path)
    assert result.state == "stored"
    # Chunk 0 of the .mcap was acknowledged with the old bytes, so it is sent again; the others are not.
    assert second.sends[0] == 0 and 1 not in second.sends and result.stats.chunks_skipped >= 3
    assert tree_digest(store / "pick" / "r1" / meta.episode_id) == tree_digest(path)
    srv.close()


def test_an_upload_summary_reads_as_one_log_line() -> None:
    stats = UploadStats(chunks_sent=5, bytes_sent=2_500_000, chunks_skipped=3, chunks_resent=1, attempts=2)
    result = UploadResult(
        episode_id="g1-ep", state="already_stored", path="t/g1/g1-ep", duration_s=3.2, stats=stats
    )
    assert result.summary() == (
        "g1-ep already stored as t/g1/g1-ep: "
        "2.50 MB in 5 chunks, 3 already held, 1 resent, 2 attempts, 3.20 s"
    )


def test_a_busy_learner_gets_chunks_again_without_failing_the_attempt(fleet, bag_factory, tmp_path):
    store = tmp_path / "store"
    config = IngestConfig(fleet="t", workers=1, max_queued=1)
    srv = IngestServer(fleet.client(), store, validate_bag=validate_bag, config=config)
    path, meta = bag_factory("r1", messages=40)
    retry = RetryPolicy(timeout_s=5.0, max_attempts=50, backoff_s=0.001, max_backoff_s=0.01)
    up = BagUploader(
        fleet.client(),
        UploadConfig(fleet="t", robot_id="r1", chunk_size_bytes=CHUNK, max_in_flight=16, retry=retry),
    )
    result = up.upload(path)
    assert result.state == "stored" and result.stats.attempts == 1
    assert result.stats.busy_resends > 0 and "resent to a busy learner" in result.summary()
    assert tree_digest(store / "pick" / "r1" / meta.episode_id) == tree_digest(path)
    srv.close()

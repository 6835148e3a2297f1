"""A robot with valid credentials sends hostile requests: each gets a final, specific refusal.

Requests go over a real loopback router as raw protocol queries (what a
tampered robot could send), or as real bags through the real uploader and
spool; a final refusal is ``retry: false``, so the robot quarantines the bag
instead of retrying for ever.
"""

from __future__ import annotations

import json
import os
import time

import pytest
from transport_helpers import RssSampler, validate_bag, write_bag

from sop_ros.core.errors import TransportError
from sop_ros.transport.ingest import IngestConfig, IngestServer
from sop_ros.transport.session import RemoteError, RetryPolicy, encode_header, query_once
from sop_ros.transport.spool import SpoolConfig, SpoolUploader
from sop_ros.transport.upload import BagUploader, UploadConfig

pytestmark = pytest.mark.timeout(90)

# Learner RSS growth allowed while it refuses an alias bomb or a 1-byte-chunk plan. Before these
# limits the same inputs cost +848 MB (alias bomb) and +278 MB (a small 1-byte-chunk plan probe).
RSS_BOUND_BYTES = 64 << 20
GOOD_SHA = "0" * 64


@pytest.fixture
def learner(fleet, tmp_path):
    server = IngestServer(
        fleet.client(), tmp_path / "store", validate_bag=validate_bag, config=IngestConfig(fleet="t")
    )
    yield server
    server.close()


def ask(session, robot: str, episode: str, op: str, payload=None, attachment=None) -> bytes:
    key = f"sop/t/upload/{robot}/{episode}/{op}"
    for _ in range(3):  # a fresh client may query before the learner's queryable reached it
        try:
            return query_once(session, key, payload=payload, attachment=attachment, timeout_s=5.0)[0]
        except RemoteError:
            raise
        except TransportError:
            time.sleep(0.2)
    return query_once(session, key, payload=payload, attachment=attachment, timeout_s=5.0)[0]


def refused(session, robot, episode, op, payload=None, attachment=None) -> str:
    with pytest.raises(RemoteError) as info:
        ask(session, robot, episode, op, payload, attachment)
    header = info.value.header
    assert header["retry"] is False and header["code"] in ("bad_request", "rejected"), header
    return info.value.reason


def plan(chunk: int = 64 << 10, files=(("metadata.yaml", 100),)) -> bytes:
    return encode_header(
        "plan", chunk_size_bytes=chunk, files=[{"name": n, "size_bytes": s} for n, s in files]
    )


@pytest.mark.parametrize(
    ("robot", "episode", "body", "says"),
    [
        ("r1", "e1", plan(chunk=1), "chunk size 1 outside 65536"),
        ("r1", "e1", plan(chunk=1 << 30), "chunk size 1073741824 outside"),
        ("r1", "e1", plan(files=(("a.mcap", 64 << 30),)), "above 17179869184"),
        ("r1", "e1", plan(files=(("a.mcap", -5),)), "negative"),
        ("r1", "e1", plan(files=(("a.mcap", 8 << 30),)), "131072 chunks exceeds 65536"),
        ("r1", "e1", plan(files=tuple((f"f{i}", 1) for i in range(65))), "1..64 files"),
        ("r1", "e1", plan(files=(("a", 1), ("a", 1))), "names a file twice"),
        ("r1", "e1", plan(files=(("index.jsonl", 10),)), "reserved by the store"),
        ("r1", "e1", plan(files=(("../x", 10),)), "not a plain name"),
        ("r1", "e1", plan(files=(("x" * 300, 10),)), "300 chars"),
        ("r1", "e1", encode_header("plan", chunk_size_bytes="65536", files=[]), "is not an integer"),
        ("r1", "e1", encode_header("plan", files=[]), "missing or mistyped 'chunk_size_bytes'"),
        ("r1", "e1", b"[1, 2", "not JSON"),
        ("r" * 200, "e1", plan(), "robot id"),
        ("quarantine", "e1", plan(), "reserved by the store"),
        ("r1", "index.jsonl", plan(), "reserved by the store"),
        ("r1", "-e1", plan(), "not a plain name"),
    ],
)
def test_hostile_plan_gets_a_final_specific_refusal(fleet, learner, robot, episode, body, says):
    reason = refused(fleet.client(), robot, episode, "status", body)
    assert says in reason
    assert not list((learner.store_dir / ".partial").glob("*/*"))


def test_oversized_header_is_refused_before_parsing(fleet, tmp_path):
    config = IngestConfig(fleet="t", max_header_bytes=4096)
    with IngestServer(fleet.client(), tmp_path / "store", validate_bag=validate_bag, config=config):
        body = encode_header("plan", chunk_size_bytes=65536, files=[], pad="x" * 5000)
        assert "exceeds 4096" in refused(fleet.client(), "r1", "e1", "status", body)


@pytest.mark.parametrize(
    ("attachment", "says"),
    [
        (None, "expected a chunk header"),
        (encode_header("chunk", file="metadata.yaml", index=0), "missing or mistyped 'sha256'"),
        (encode_header("chunk", file="metadata.yaml", index="0", sha256=GOOD_SHA), "is not an integer"),
        (encode_header("chunk", file="metadata.yaml", index=0, sha256="abc"), "not 64 hex digits"),
        (encode_header("chunk", file="y" * 500, index=0, sha256=GOOD_SHA), "500 chars"),
        (encode_header("chunk", file="other.mcap", index=0, sha256=GOOD_SHA), "not in the upload plan"),
        (encode_header("chunk", file="metadata.yaml", index=7, sha256=GOOD_SHA), "out of range 0..0"),
    ],
)
def test_malformed_chunk_header_gets_a_final_refusal(fleet, learner, attachment, says):
    session = fleet.client()
    ask(session, "r1", "e1", "status", plan())
    assert says in refused(session, "r1", "e1", "chunk", b"x" * 100, attachment)


def test_commit_answer_stays_small_for_the_largest_plan(fleet, learner):
    """65536 declared chunks, none sent: the answer lists ranges and a count, not 65536 indices."""
    session = fleet.client()
    sampler = RssSampler()
    ask(session, "r1", "e1", "status", plan(files=(("a.mcap", 4 << 30),)))
    with pytest.raises(RemoteError) as info:
        ask(session, "r1", "e1", "commit", encode_header("commit", files=[]))
    growth = sampler.stop()
    header = info.value.header
    assert header["retry"] is True and header["code"] == "incomplete"
    assert header["missing_count"] == 65536 and header["missing"] == {"a.mcap": [[0, 65535]]}
    assert len(json.dumps(header)) < 512
    assert growth < RSS_BOUND_BYTES, f"learner RSS grew {growth / 1e6:.0f} MB"


def test_one_byte_chunk_plans_are_refused_within_the_rss_bound(fleet, learner):
    session = fleet.client()
    sampler = RssSampler()
    for i in range(20):
        body = plan(chunk=1, files=(("a.mcap", 16 << 30),))
        assert "chunk size 1 outside" in refused(session, "r1", f"e{i}", "status", body)
    growth = sampler.stop()
    assert growth < RSS_BOUND_BYTES, f"learner RSS grew {growth / 1e6:.0f} MB"


def bomb_metadata(bag) -> None:
    """Put a 10^9-fold YAML alias bomb (under 1 KB) into the bag's custom_data."""
    path = bag / "metadata.yaml"
    lines = path.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip() == "custom_data:")
    indent = " " * (len(lines[at + 1]) - len(lines[at + 1].lstrip()))
    bomb = [f"{indent}sop.l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    bomb += [f"{indent}sop.l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 10)]
    path.write_text("\n".join([*lines[: at + 1], *bomb, *lines[at + 1 :]]) + "\n")


def spool_with(tmp_path, fleet) -> SpoolUploader:
    retry = RetryPolicy(timeout_s=5.0, max_attempts=2, backoff_s=0.05, max_backoff_s=0.1)
    config = UploadConfig(fleet="t", robot_id="r1", chunk_size_bytes=64 << 10, retry=retry)
    return SpoolUploader(BagUploader(fleet.client(), config), tmp_path / "spool", config=SpoolConfig())


def test_alias_bomb_is_quarantined_fast_within_the_rss_bound(fleet, learner, tmp_path):
    ready = tmp_path / "spool" / "ready"
    ready.mkdir(parents=True)
    bomb, _ = write_bag(ready, "r1", messages=3, seed=1)
    bomb_metadata(bomb)
    _, good_meta = write_bag(ready, "r1", messages=3, seed=2)
    os.utime(bomb, ns=(0, 0))  # the bomb goes first: it must not block the good bag behind it
    robot = spool_with(tmp_path, fleet)
    sampler = RssSampler()
    start = time.monotonic()
    results = robot.run_once()
    elapsed = time.monotonic() - start
    growth = sampler.stop()
    assert [r.episode_id for r in results] == [good_meta.episode_id]
    reason = (tmp_path / "spool" / "quarantine" / bomb.name / "REASON.txt").read_text()
    assert "learner rejected it" in reason and "YAML alias *l0 refused" in reason
    assert growth < RSS_BOUND_BYTES, f"learner RSS grew {growth / 1e6:.0f} MB"
    assert elapsed < 30
    kept = list((learner.store_dir / "quarantine" / "r1").glob("*.reason.json"))
    assert len(kept) == 1 and "YAML alias" in json.loads(kept[0].read_text())["reason"]


def test_task_named_like_the_store_index_is_quarantined_not_retried(fleet, learner, tmp_path):
    ready = tmp_path / "spool" / "ready"
    ready.mkdir(parents=True)
    bad, _ = write_bag(ready, "r1", messages=3, task="index.jsonl", seed=1)
    _, good_meta = write_bag(ready, "r1", messages=3, seed=2)
    os.utime(bad, ns=(0, 0))
    results = spool_with(tmp_path, fleet).run_once()
    assert [r.episode_id for r in results] == [good_meta.episode_id]
    reason = (tmp_path / "spool" / "quarantine" / bad.name / "REASON.txt").read_text()
    assert "task 'index.jsonl' is reserved by the store" in reason
    assert (learner.store_dir / "index.jsonl").is_file()
    assert [
        json.loads(x)["episode_id"] for x in (learner.store_dir / "index.jsonl").read_text().splitlines()
    ] == [good_meta.episode_id]


def test_robot_partial_uploads_are_bounded(fleet, tmp_path):
    config = IngestConfig(fleet="t", max_partial_uploads_per_robot=2, max_partial_bytes_per_robot=3 << 20)
    with IngestServer(fleet.client(), tmp_path / "store", validate_bag=validate_bag, config=config) as server:
        session = fleet.client()
        for i in range(5):
            ask(session, "r1", f"e{i}", "status", plan(files=(("a.mcap", 1 << 20),)))
            time.sleep(0.01)  # distinct plan mtimes: the oldest is dropped first
        assert sorted(p.name for p in (server.store_dir / ".partial" / "r1").iterdir()) == ["e3", "e4"]
        # The disk quota counts declared bytes: a 2 MiB plan leaves room for one 1 MiB upload only.
        ask(session, "r1", "e5", "status", plan(files=(("a.mcap", 2 << 20),)))
        assert sorted(p.name for p in (server.store_dir / ".partial" / "r1").iterdir()) == ["e4", "e5"]
        # Another robot's uploads are not touched.
        ask(session, "r2", "e0", "status", plan())
        assert (server.store_dir / ".partial" / "r2" / "e0").is_dir()

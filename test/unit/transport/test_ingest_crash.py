"""Fault injection: the learner dies at each durable step of a commit; every bag is stored once after restart.

The server runs in a child process whose ``commit_hook`` calls ``os._exit`` at
the chosen step (no clean-up, no buffered write reaches the disk later), so the
crash lands at the same instruction every run, not by timing luck. The robot
is a real SpoolUploader with two bags; after a fresh server starts on the same
store, both bags must be stored exactly once, byte-identical, and nothing of
the first commit may block the second.
"""

from __future__ import annotations

import json
import multiprocessing
import os

import pytest
from transport_helpers import serve_until_crash, tree_digest, validate_bag, write_bag

from sop_ros.transport.ingest import COMMIT_STEPS, IngestConfig, IngestServer
from sop_ros.transport.session import RetryPolicy
from sop_ros.transport.spool import SpoolConfig, SpoolUploader
from sop_ros.transport.upload import BagUploader, UploadConfig

pytestmark = pytest.mark.timeout(120)

# What start-up recovery must report for a crash right after each step.
EXPECTED_RECOVERY = {
    "validated": {},
    "intent_written": {},
    "renamed": {"finished": 1},
    "dirs_synced": {"finished": 1},
    "indexed": {"dropped": 1},
    "cleaned": {},
}


@pytest.mark.parametrize("step", COMMIT_STEPS)
def test_crash_at_each_commit_step_stores_every_bag_exactly_once(fleet, tmp_path, step):
    assert set(EXPECTED_RECOVERY) == set(COMMIT_STEPS)
    store, spool = tmp_path / "store", tmp_path / "spool"
    (spool / "ready").mkdir(parents=True)
    bags = []
    for i in range(2):
        path, meta = write_bag(spool / "ready", "r1", messages=6, seed=i)
        os.utime(path, ns=(i * 10**9, i * 10**9))
        bags.append((meta, tree_digest(path)))

    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    child = ctx.Process(target=serve_until_crash, args=(fleet.endpoint, str(store), step, ready))
    child.start()
    try:
        assert ready.wait(60), "crashing server did not start"
        retry = RetryPolicy(timeout_s=2.0, max_attempts=2, backoff_s=0.05, max_backoff_s=0.1)
        config = UploadConfig(
            fleet="t", robot_id="r1", chunk_size_bytes=64 << 10, retry=retry, commit_timeout_s=4.0
        )
        robot = SpoolUploader(
            BagUploader(fleet.client(), config), spool, config=SpoolConfig(poll_period_s=0.05)
        )
        # Fails mid-commit of the first bag: the learner died without answering.
        assert robot.run_once() == []
        child.join(30)
        assert child.exitcode == 17, f"the server did not crash at {step!r}"
    finally:
        if child.is_alive():
            child.kill()
            child.join()

    server = IngestServer(fleet.client(), store, validate_bag=validate_bag, config=IngestConfig(fleet="t"))
    try:
        report = server.recovery
        counts = {k: len(v) for k, v in vars(report).items() if v}
        assert counts == EXPECTED_RECOVERY[step], f"recovery after {step!r}: {report}"
        # The robot is unblocked: both bags go in one pass, the crashed one first.
        results = []
        for _ in range(20):
            results += robot.run_once()
            if not robot.pending():
                break
        assert [r.episode_id for r in results] == [meta.episode_id for meta, _ in bags]
        assert not list((spool / "quarantine").iterdir())
    finally:
        server.close()

    lines = [json.loads(line) for line in (store / "index.jsonl").read_text().splitlines()]
    assert sorted(e["episode_id"] for e in lines) == sorted(meta.episode_id for meta, _ in bags)
    for meta, digest in bags:
        copies = list(store.glob(f"*/r1/{meta.episode_id}"))
        assert copies == [store / "pick" / "r1" / meta.episode_id]
        assert tree_digest(copies[0]) == digest
    assert not list((store / ".partial").glob("r1/*"))
    assert not (store / "quarantine").exists()

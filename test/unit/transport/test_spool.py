"""The robot's spool: bags queue while the learner is away and leave only after their commit."""

from __future__ import annotations

import os
import shutil

import pytest
from transport_helpers import validate_bag, write_bag

from sop_ros.transport.ingest import IngestConfig, IngestServer
from sop_ros.transport.session import RetryPolicy
from sop_ros.transport.spool import SpoolConfig, SpoolUploader
from sop_ros.transport.upload import BagUploader, UploadConfig

pytestmark = pytest.mark.timeout(60)


def test_bags_queue_while_learner_is_away_then_upload_oldest_first(fleet, tmp_path):
    spool = tmp_path / "spool"
    (spool / "ready").mkdir(parents=True)
    bags = []
    for i in range(3):
        path, meta = write_bag(spool / "ready", "r1", messages=3, seed=i)
        os.utime(path, ns=(i * 10**9, i * 10**9))
        bags.append(meta.episode_id)
    broken, _ = write_bag(spool / "ready", "r1", messages=3)
    os.utime(broken, ns=(10**10, 10**10))
    mcap = next(broken.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[:100])

    retry = RetryPolicy(timeout_s=0.3, max_attempts=2, backoff_s=0.01, max_backoff_s=0.01)
    uploader = BagUploader(fleet.client(), UploadConfig(fleet="t", robot_id="r1", retry=retry))
    committed = []
    runner = SpoolUploader(uploader, spool, config=SpoolConfig(keep_uploaded=2), on_uploaded=committed.append)

    assert runner.run_once() == []  # no learner yet: nothing moves
    assert sorted(p.name for p in runner.pending()) == sorted([*bags, broken.name])

    store = tmp_path / "store"
    server = IngestServer(fleet.client(), store, validate_bag=validate_bag, config=IngestConfig(fleet="t"))
    results = runner.run_once()
    assert [r.episode_id for r in results] == bags
    assert [r.episode_id for r in committed] == bags
    assert runner.pending() == []
    # Retention keeps the two newest uploaded bags; the refused one waits in quarantine/ with its reason.
    assert len(list((spool / "uploaded").iterdir())) == 2
    assert "learner rejected it" in (spool / "quarantine" / broken.name / "REASON.txt").read_text()
    assert all((store / "pick" / "r1" / e).is_dir() for e in bags)
    server.close()


def test_a_bag_the_learner_keeps_failing_backs_off_and_the_bags_behind_it_go_on(fleet, tmp_path):
    spool, store = tmp_path / "spool", tmp_path / "store"
    (spool / "ready").mkdir(parents=True)
    stuck, _ = write_bag(spool / "ready", "r1", messages=3, seed=0)
    _, behind_meta = write_bag(spool / "ready", "r1", messages=3, seed=1)
    os.utime(stuck, ns=(0, 0))
    # A file where the learner keeps the stuck bag's partial upload: every attempt is an internal error.
    (store / ".partial" / "r1").mkdir(parents=True)
    (store / ".partial" / "r1" / stuck.name).write_text("in the way")
    server = IngestServer(fleet.client(), store, validate_bag=validate_bag, config=IngestConfig(fleet="t"))
    now = [100.0]
    retry = RetryPolicy(timeout_s=2.0, max_attempts=2, backoff_s=0.01, max_backoff_s=0.01)
    runner = SpoolUploader(
        BagUploader(fleet.client(), UploadConfig(fleet="t", robot_id="r1", retry=retry)),
        spool,
        config=SpoolConfig(poll_period_s=5.0, max_backoff_s=60.0),
        clock=lambda: now[0],
    )
    assert [r.episode_id for r in runner.run_once()] == [behind_meta.episode_id]
    assert runner.backoff(stuck.name) == (1, 5.0)
    assert runner.run_once() == [] and runner.backoff(stuck.name) == (1, 5.0)  # not tried while backing off
    now[0] += 5.0
    assert runner.run_once() == [] and runner.backoff(stuck.name) == (2, 10.0)  # tried, failed, doubled
    (store / ".partial" / "r1" / stuck.name).unlink()
    now[0] += 10.0
    assert [r.episode_id for r in runner.run_once()] == [stuck.name]
    assert runner.backoff(stuck.name) == (0, 0.0) and runner.pending() == []
    assert not list((spool / "quarantine").iterdir())
    server.close()


def test_a_bag_sent_again_after_its_commit_keeps_the_earlier_uploaded_copy(fleet, tmp_path):
    spool, store = tmp_path / "spool", tmp_path / "store"
    (spool / "ready").mkdir(parents=True)
    _, meta = write_bag(spool / "ready", "r1", messages=3)
    server = IngestServer(fleet.client(), store, validate_bag=validate_bag, config=IngestConfig(fleet="t"))
    runner = SpoolUploader(BagUploader(fleet.client(), UploadConfig(fleet="t", robot_id="r1")), spool)
    first = runner.run_once()
    assert [(r.episode_id, r.state) for r in first] == [(meta.episode_id, "stored")]
    # The same episode turns up in ready/ again (restored by hand, say): stored once, both copies kept.
    shutil.copytree(spool / "uploaded" / meta.episode_id, spool / "ready" / meta.episode_id)
    again = runner.run_once()
    assert [(r.episode_id, r.state) for r in again] == [(meta.episode_id, "already_stored")]
    uploaded = sorted(p.name for p in (spool / "uploaded").iterdir())
    assert uploaded == [meta.episode_id, f"{meta.episode_id}~2"]
    assert runner.pending() == [] and not list((spool / "quarantine").iterdir())
    server.close()

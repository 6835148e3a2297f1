"""Start-up recovery: bags in the store without index line, acks pointing at nothing, torn intents."""

from __future__ import annotations

import json
import shutil

import pytest
from transport_helpers import tree_digest, validate_bag, write_bag

from sop_ros.transport.ingest import IngestConfig, IngestServer
from sop_ros.transport.ingest_recovery import COMMIT_INTENT

pytestmark = pytest.mark.timeout(60)


def start(fleet, store) -> IngestServer:
    return IngestServer(fleet.client(), store, validate_bag=validate_bag, config=IngestConfig(fleet="t"))


def test_store_index_and_partials_are_reconciled_at_start(fleet, tmp_path):
    store = tmp_path / "store"
    # A sound bag in the store without an index line (e.g. written by an older learner that crashed).
    orphan, orphan_meta = write_bag(tmp_path / "src", "r1", messages=3, seed=1)
    orphan_digest = tree_digest(orphan)
    shutil.copytree(orphan, store / "pick" / "r1" / orphan.name)
    # A damaged one: validated again, it goes to quarantine with the reason, not into the index.
    broken, _ = write_bag(tmp_path / "src", "r1", messages=3, seed=2)
    target = store / "pick" / "r1" / broken.name
    shutil.copytree(broken, target)
    mcap = next(target.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[:200])
    # A partial upload whose bag/ is gone: its acks point at nothing.
    gone = store / ".partial" / "r2" / "r2-episode"
    gone.mkdir(parents=True)
    (gone / "plan.json").write_text(json.dumps({"schema": 1, "chunk_size_bytes": 65536, "files": []}))
    (gone / "acks.jsonl").write_text('{"file": "a.mcap", "index": 0, "sha256": "00"}\n')
    # A torn commit intent next to a bag that was never renamed: the intent goes, the upload stays.
    torn = store / ".partial" / "r3" / "r3-episode"
    (torn / "bag").mkdir(parents=True)
    (torn / COMMIT_INTENT).write_text('{"path": "pick/r3/r3-epi')

    server = start(fleet, store)
    try:
        report = server.recovery
        assert report.indexed == [f"r1/{orphan.name}"] and report.finished == []
        assert report.dropped == ["r2/r2-episode"]
        assert len(report.quarantined) == 1
        assert report.quarantined[0].startswith(f"quarantine/r1/{broken.name}-")
        entry = server.index.get("r1", orphan_meta.episode_id)
        assert entry is not None and entry["path"] == f"pick/r1/{orphan.name}"
        assert tree_digest(store / entry["path"]) == orphan_digest
        reason = json.loads((store / f"{report.quarantined[0]}.reason.json").read_text())["reason"]
        assert reason.startswith("recovery: ")
        assert not gone.exists()
        assert (torn / "bag").is_dir() and not (torn / COMMIT_INTENT).exists()
    finally:
        server.close()
    # A second start finds nothing to repair.
    again = start(fleet, store)
    try:
        assert not again.recovery and len(again.index) == 1
    finally:
        again.close()

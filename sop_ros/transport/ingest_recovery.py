"""Start-up reconciliation of the learner's episode store, its index and the partial uploads.

A commit (see :mod:`sop_ros.transport.ingest`) runs these steps, each durable
before the next: validate the bag, write ``commit.json`` (the index line about
to be written) into the partial upload, rename ``bag/`` into the store, append
the index line, remove the partial upload. A crash between any two leaves one
of the states that :func:`reconcile_store` repairs before the server answers
its first query:

- a partial upload whose episode is indexed: the clean-up was cut short; remove it.
- ``commit.json`` with ``bag/`` gone and the bag in the store: the index line
  was not written; write it from ``commit.json``.
- ``commit.json`` with ``bag/`` still there: the rename did not happen; drop the
  intent, the robot's next commit redoes it.
- a partial upload without ``bag/``: its acknowledgements point at nothing; drop it,
  the robot starts the bag again.
- a bag in the store without an index line (and no ``commit.json`` naming it):
  validated again and indexed, or moved to ``quarantine/`` with the reason.

Runs on the caller's thread before any worker starts, so it owns the store alone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sop_ros.core.durable import fsync_dir, write_durably
from sop_ros.core.errors import IntegrityError
from sop_ros.core.types import EpisodeMeta
from sop_ros.transport.ingest_state import (
    RESERVED_NAMES,
    EpisodeIndex,
    StoredEpisode,
    chunk_list_digest,
    safe_name,
)

__all__ = ["COMMIT_INTENT", "RecoveryReport", "quarantine_dir", "reconcile_store"]

_log = logging.getLogger(__name__)

# File in a partial upload naming the index entry a commit in progress is about to write.
COMMIT_INTENT = "commit.json"
# Chunk size used to digest a bag that is indexed at recovery (its upload's chunk size is unknown).
_RECOVERY_CHUNK_BYTES = 4 << 20


@dataclass(kw_only=True)
class RecoveryReport:
    """What :func:`reconcile_store` repaired (episode keys as ``robot/episode``)."""

    # Commits finished from their commit.json (bag in the store, index line missing).
    finished: list[str] = field(default_factory=list)
    # Bags found in the store without index line, validated again and indexed.
    indexed: list[str] = field(default_factory=list)
    # Partial uploads removed: already committed, or their files gone.
    dropped: list[str] = field(default_factory=list)
    # Store paths (relative) moved to quarantine/ because they failed validation.
    quarantined: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.finished or self.indexed or self.dropped or self.quarantined)


def quarantine_dir(store_dir: Path, source: Path, robot: str, episode: str, reason: str) -> Path:
    """Move ``source`` to ``<store>/quarantine/<robot>/<episode>-<stamp>`` with a ``.reason.json``."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    target = store_dir / "quarantine" / robot / f"{episode}-{stamp}"
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.exists():
        source.rename(target)
    else:
        target.mkdir()
    record = {"schema": 1, "robot_id": robot, "episode_id": episode, "reason": reason, "at": stamp}
    write_durably(target.parent / f"{target.name}.reason.json", json.dumps(record, indent=1))
    return target


def reconcile_store(
    store_dir: Path, index: EpisodeIndex, validate_bag: Callable[[Path], EpisodeMeta]
) -> RecoveryReport:
    """Bring store, index and partial uploads back to a consistent state after a crash."""
    report = RecoveryReport()
    partial_root = store_dir / ".partial"
    claimed: set[Path] = set()
    for root in sorted(partial_root.glob("*/*")):
        if root.is_dir():
            _reconcile_partial(store_dir, index, root, report, claimed)
    for bag in sorted(store_dir.glob("*/*/*")):
        task, robot, episode = bag.relative_to(store_dir).parts
        if task.startswith(".") or task.lower() in RESERVED_NAMES or not bag.is_dir():
            continue
        if index.get(robot, episode) is None and bag not in claimed:
            _index_orphan(store_dir, index, bag, validate_bag, report)
    if report:
        _log.warning(
            "store %s recovered: %d commits finished, %d orphan bags indexed, %d partial uploads "
            "dropped, %d bags quarantined",
            store_dir,
            len(report.finished),
            len(report.indexed),
            len(report.dropped),
            len(report.quarantined),
        )
    return report


def _reconcile_partial(
    store_dir: Path, index: EpisodeIndex, root: Path, report: RecoveryReport, claimed: set[Path]
) -> None:
    robot, episode = root.parent.name, root.name
    key = f"{robot}/{episode}"
    intent_path = root / COMMIT_INTENT
    bag_present = (root / "bag").is_dir()
    if index.get(robot, episode) is not None:
        shutil.rmtree(root, ignore_errors=True)
        report.dropped.append(key)
        return
    if intent_path.exists():
        try:
            entry: dict[str, Any] = json.loads(intent_path.read_text())
            final = store_dir / str(entry["path"])
        except (OSError, ValueError, KeyError, TypeError):
            entry, final = {}, root  # a torn intent: it was written before the rename, never after
        if entry and not bag_present and (final / "metadata.yaml").is_file():
            fsync_dir(final.parent)
            index.append_entry(entry)
            claimed.add(final)
            shutil.rmtree(root, ignore_errors=True)
            report.finished.append(key)
            return
        intent_path.unlink()  # the rename did not happen: the robot's next commit redoes it
    if not bag_present:
        shutil.rmtree(root, ignore_errors=True)
        report.dropped.append(key)


def _index_orphan(
    store_dir: Path,
    index: EpisodeIndex,
    bag: Path,
    validate_bag: Callable[[Path], EpisodeMeta],
    report: RecoveryReport,
) -> None:
    task, robot, episode = bag.relative_to(store_dir).parts
    try:
        meta = validate_bag(bag)
        if (meta.task, meta.robot_id, meta.episode_id) != (task, robot, episode):
            raise IntegrityError(
                f"bag says task {meta.task!r} robot {meta.robot_id!r} episode {meta.episode_id!r}"
            )
        safe_name(meta.task, "task")
        digests, size = _digest_files(bag)
    except Exception as err:  # whatever the validator raises, the bag is kept, not lost
        target = quarantine_dir(store_dir, bag, robot, episode, f"recovery: {type(err).__name__}: {err}")
        report.quarantined.append(str(target.relative_to(store_dir)))
        return
    stored = StoredEpisode(
        meta=meta,
        path=bag,
        chunk_list_sha256=digests,
        chunk_size_bytes=_RECOVERY_CHUNK_BYTES,
        size_bytes=size,
    )
    index.append(stored, store_dir)
    report.indexed.append(f"{robot}/{episode}")


def _digest_files(bag: Path) -> tuple[dict[str, str], int]:
    digests, size = {}, 0
    for path in sorted(bag.iterdir()):
        chunks = []
        with path.open("rb") as stream:
            while data := stream.read(_RECOVERY_CHUNK_BYTES):
                chunks.append(hashlib.sha256(data).hexdigest())
                size += len(data)
        digests[path.name] = chunk_list_digest(chunks)
    return digests, size

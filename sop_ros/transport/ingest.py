"""The learner's ingest queryable: receives bags chunk by chunk, verifies, validates and stores them.

Wire protocol (all keys ``sop/<fleet>/upload/<robot>/<episode>/<op>``, headers
are JSON with ``schema`` and ``kind``, errors are ``reply_err`` headers of kind
``error`` with ``reason``, ``code`` and ``retry``):

- ``status``: payload ``plan`` {chunk_size_bytes, files: [{name, size_bytes}]}
  → ``status`` {state: absent|partial|stored, acked: {file: [index...]}}.
- ``chunk``: attachment ``chunk`` {file, index, sha256}, payload the raw bytes
  → ``ack`` {file, index, sha256 (as computed here)}.
- ``commit``: payload ``commit`` {files: [{name, size_bytes, sha256}]}
  → ``stored`` {state: stored|already_stored, path, task}.

Threads: Zenoh's callback thread only routes each query to the worker that owns
its (robot, episode) (a bounded queue per worker; when it is full the query is
answered "busy, retry"). Each worker thread owns the PartialUploads of its
episodes, so chunks of one episode are handled in order and need no lock; the
EpisodeIndex locks itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sop_ros.core.config import check_ranges, setting
from sop_ros.core.errors import IntegrityError, SopError
from sop_ros.core.types import EpisodeMeta
from sop_ros.transport.ingest_state import EpisodeIndex, FilePlan, PartialUpload, StoredEpisode, safe_name
from sop_ros.transport.session import decode_header, encode_header, fleet_key, reply_error

__all__ = ["IngestConfig", "IngestServer", "StoredEpisode"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class IngestConfig:
    """Settings of the learner's bag ingest."""

    # Fleet name: the key space is sop/<fleet>/upload/...
    fleet: str = setting("default", "fleet name, first segment of the key space")
    # Worker threads; one episode is always handled by the same worker.
    workers: int = setting(2, "worker threads verifying and writing chunks", low=1, high=64)
    # Queries waiting per worker before new ones are answered "busy".
    max_queued: int = setting(16, "queries queued per worker before answering busy", low=1, high=4096)
    # Largest chunk a robot may send (bytes).
    max_chunk_size_bytes: int = setting(64 << 20, "largest accepted chunk", unit="B", low=1, high=1 << 30)
    # Largest bag a robot may send (bytes).
    max_bag_size_bytes: int = setting(64 << 30, "largest accepted bag", unit="B", low=1)

    def __post_init__(self) -> None:
        check_ranges(self)


class _Rejected(SopError):
    """A request the server answers with an error header (internal control flow)."""

    def __init__(self, reason: str, *, code: str, retry: bool, **fields: Any):
        super().__init__(reason)
        self.code, self.retry, self.fields = code, retry, fields


class IngestServer:
    """Serves ``sop/<fleet>/upload/**`` and keeps every accepted bag in ``store_dir``.

    Args:
        session: An open Zenoh session (the caller closes it).
        store_dir: Root of the episode store; bags land in ``<task>/<robot>/<episode_id>/``,
            rejected ones in ``quarantine/``, partial uploads in ``.partial/``.
        validate_bag: Reads a bag directory and returns its metadata; raises on a bad bag.
        on_episode: Called (from a worker thread) with each newly stored episode.
        config: Settings.
    """

    def __init__(
        self,
        session: Any,
        store_dir: Path,
        *,
        validate_bag: Callable[[Path], EpisodeMeta],
        on_episode: Callable[[StoredEpisode], None] | None = None,
        config: IngestConfig | None = None,
    ):
        self.config = config or IngestConfig()
        self.store_dir = Path(store_dir)
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.index = EpisodeIndex(self.store_dir)
        self._validate_bag = validate_bag
        self._on_episode = on_episode
        self._prefix = fleet_key(self.config.fleet, "upload")
        self._queues = [queue.Queue(maxsize=self.config.max_queued) for _ in range(self.config.workers)]
        # Per worker: (robot, episode) -> PartialUpload; only that worker touches its dict.
        self._uploads: list[dict[tuple[str, str], PartialUpload]] = [{} for _ in self._queues]
        self._workers = [
            threading.Thread(target=self._work, args=(i,), name=f"sop-ingest-{i}", daemon=True)
            for i in range(self.config.workers)
        ]
        for worker in self._workers:
            worker.start()
        self._queryable = session.declare_queryable(f"{self._prefix}/**", self._route)

    def close(self) -> None:
        """Stop serving; chunks already acknowledged stay on disk for the robot to resume."""
        self._queryable.undeclare()
        for q in self._queues:
            q.put(None)
        for worker in self._workers:
            worker.join(timeout=30)

    def __enter__(self) -> IngestServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _route(self, query: Any) -> None:
        parts = str(query.key_expr)[len(self._prefix) + 1 :].split("/")
        if len(parts) != 3:
            reply_error(query, f"unknown upload key {query.key_expr}", code="bad_request", retry=False)
            return
        slot = hash((parts[0], parts[1])) % len(self._queues)
        try:
            self._queues[slot].put_nowait((query, parts))
        except queue.Full:
            reply_error(query, "ingest busy", code="busy", retry=True)

    def _work(self, slot: int) -> None:
        while (item := self._queues[slot].get()) is not None:
            query, (robot, episode, op) = item
            handler = {"status": self._status, "chunk": self._chunk, "commit": self._commit}.get(op)
            try:
                if handler is None:
                    raise _Rejected(f"unknown upload operation {op!r}", code="bad_request", retry=False)
                safe_name(robot, "robot id")
                safe_name(episode, "episode id")
                query.reply(query.key_expr, handler(slot, robot, episode, query))
            except _Rejected as err:
                reply_error(query, str(err), code=err.code, retry=err.retry, **err.fields)
            except IntegrityError as err:
                reply_error(query, str(err), code="bad_request", retry=False)
            except Exception as err:  # a server bug must not kill the worker; the robot retries
                _log.exception("ingest of %s/%s failed", robot, episode)
                reply_error(query, f"internal error: {err}", code="internal", retry=True)
            finally:
                query.drop()

    def _partial_root(self, robot: str, episode: str) -> Path:
        return self.store_dir / ".partial" / robot / episode

    def _upload(self, slot: int, robot: str, episode: str) -> PartialUpload:
        upload = self._uploads[slot].get((robot, episode))
        if upload is None:
            upload = PartialUpload.load(self._partial_root(robot, episode))
            if upload is None:
                raise _Rejected("no upload in progress; ask status first", code="no_plan", retry=True)
            self._uploads[slot][(robot, episode)] = upload
        return upload

    def _stored_reply(self, entry: dict[str, Any], state: str) -> bytes:
        return encode_header("stored", state=state, path=entry["path"], task=entry["task"])

    def _status(self, slot: int, robot: str, episode: str, query: Any) -> bytes:
        if (entry := self.index.get(robot, episode)) is not None:
            return encode_header("status", state="stored", acked={}, path=entry["path"])
        plan = decode_header(query.payload.to_bytes() if query.payload is not None else None, "plan")
        try:
            chunk_size = int(plan["chunk_size_bytes"])
            files = tuple(
                FilePlan(name=safe_name(str(f["name"]), "file name"), size_bytes=int(f["size_bytes"]))
                for f in plan["files"]
            )
        except (KeyError, TypeError, ValueError) as err:
            raise IntegrityError(f"malformed upload plan: {err}") from None
        if not 0 < chunk_size <= self.config.max_chunk_size_bytes:
            raise IntegrityError(
                f"chunk size {chunk_size} outside 1..{self.config.max_chunk_size_bytes} bytes"
            )
        total = sum(f.size_bytes for f in files)
        if not files or min(f.size_bytes for f in files) < 0 or total > self.config.max_bag_size_bytes:
            raise IntegrityError(f"bag of {len(files)} files, {total} bytes is empty or too large")
        upload = PartialUpload.open(self._partial_root(robot, episode), chunk_size, files)
        self._uploads[slot][(robot, episode)] = upload
        state = "partial" if upload.acked else "absent"
        return encode_header("status", state=state, acked=upload.acked_indices())

    def _chunk(self, slot: int, robot: str, episode: str, query: Any) -> bytes:
        header = decode_header(query.attachment.to_bytes() if query.attachment is not None else None, "chunk")
        if self.index.get(robot, episode) is not None:
            raise _Rejected("episode is already stored", code="already_stored", retry=False)
        upload = self._upload(slot, robot, episode)
        name, index, claimed = str(header["file"]), int(header["index"]), str(header["sha256"])
        expected_len = upload.chunk_length(name, index)
        data = query.payload.to_bytes() if query.payload is not None else b""
        digest = hashlib.sha256(data).hexdigest()
        if len(data) != expected_len or digest != claimed:
            raise _Rejected(
                f"chunk {index} of {name!r}: {len(data)} bytes with sha256 {digest[:12]}…, "
                f"expected {expected_len} bytes with {claimed[:12]}…",
                code="digest_mismatch",
                retry=True,
            )
        if upload.acked.get((name, index)) != digest:
            upload.write_chunk(name, index, data, digest)
        return encode_header("ack", file=name, index=index, sha256=digest)

    def _commit(self, slot: int, robot: str, episode: str, query: Any) -> bytes:
        if (entry := self.index.get(robot, episode)) is not None:
            return self._stored_reply(entry, "already_stored")
        request = decode_header(query.payload.to_bytes() if query.payload is not None else None, "commit")
        upload = self._upload(slot, robot, episode)
        if missing := upload.missing():
            raise _Rejected("chunks missing", code="incomplete", retry=True, missing=missing)
        claimed = {str(f["name"]): str(f["sha256"]) for f in request["files"]}
        if set(claimed) != set(upload.files):
            raise IntegrityError(f"commit lists files {sorted(claimed)}, plan has {sorted(upload.files)}")
        digests = {}
        for name in sorted(upload.files):
            digests[name] = upload.file_digest(name)
            if digests[name] == claimed[name]:
                continue
            if bad := upload.drop_bad_chunks(name):
                raise _Rejected(
                    f"{name}: chunks damaged on disk", code="incomplete", retry=True, missing={name: bad}
                )
            # Every chunk matches what the robot acknowledged, yet the file does not: the bag
            # changed on the robot while it was being sent.
            return self._quarantine(
                slot, upload, robot, episode, f"{name}: sha256 {digests[name]} != {claimed[name]} claimed"
            )
        try:
            meta = self._validate_bag(upload.bag_dir)
            if (meta.robot_id, meta.episode_id) != (robot, episode):
                raise IntegrityError(f"bag says robot {meta.robot_id!r} episode {meta.episode_id!r}")
            safe_name(meta.task, "task")
        except Exception as err:  # whatever the validator raises, the bag is kept, not lost
            return self._quarantine(slot, upload, robot, episode, f"{type(err).__name__}: {err}")
        final = self.store_dir / meta.task / robot / episode
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            shutil.rmtree(final)  # left by a crash between move and index append; ours is verified
        upload.bag_dir.rename(final)
        size = sum(f.size_bytes for f in upload.files.values())
        stored = StoredEpisode(meta=meta, path=final, sha256=digests, size_bytes=size)
        entry = self.index.append(stored, self.store_dir)
        self._forget(slot, upload, robot, episode)
        if self._on_episode is not None:
            try:
                self._on_episode(stored)
            except Exception:
                _log.exception("on_episode callback failed for %s/%s", robot, episode)
        return self._stored_reply(entry, "stored")

    def _quarantine(self, slot: int, upload: PartialUpload, robot: str, episode: str, reason: str) -> bytes:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        target = self.store_dir / "quarantine" / robot / f"{episode}-{stamp}"
        target.parent.mkdir(parents=True, exist_ok=True)
        upload.bag_dir.rename(target)
        record = {"schema": 1, "robot_id": robot, "episode_id": episode, "reason": reason, "at": stamp}
        (target.parent / f"{target.name}.reason.json").write_text(json.dumps(record, indent=1))
        self._forget(slot, upload, robot, episode)
        rel = str(target.relative_to(self.store_dir))
        _log.warning("quarantined %s/%s in %s: %s", robot, episode, rel, reason)
        raise _Rejected(reason, code="rejected", retry=False, quarantined=rel)

    def _forget(self, slot: int, upload: PartialUpload, robot: str, episode: str) -> None:
        self._uploads[slot].pop((robot, episode), None)
        shutil.rmtree(upload.root, ignore_errors=True)

"""The learner's ingest queryable: receives bags chunk by chunk, verifies, validates and stores them.

Wire protocol (all keys ``sop/<fleet>/upload/<robot>/<episode>/<op>``, headers
are JSON with ``schema`` and ``kind``, errors are ``reply_err`` headers of kind
``error`` with ``reason``, ``code`` and ``retry``):

- ``status``: payload ``plan`` {chunk_size_bytes, files: [{name, size_bytes}]}
  → ``status`` {state: absent|partial|stored, acked: {file: [[index, sha256]...]}}.
- ``chunk``: attachment ``chunk`` {file, index, sha256}, payload the raw bytes
  → ``ack`` {file, index, sha256 (as computed here)}.
- ``commit``: payload ``commit`` {files: [{name, size_bytes, chunk_sha256: [...],
  chunk_list_sha256}]} → ``stored`` {state: stored|already_stored, path, task}.
  The server checks every file's chunk list against the chunks it verified
  and stored; differing chunks are forgotten and the commit is answered
  ``incomplete`` (retry) with their indices, so the robot sends them again.

Threads: Zenoh's callback thread only puts each query on one bounded queue
(when it is full the query is answered "busy, retry"); ``workers`` threads take
queries from it, so chunks of one upload are verified and written in parallel.
``_uploads`` is guarded by ``_lock``, each PartialUpload by its own lock; the
EpisodeIndex locks itself. Status and commit of one (robot, episode) are
serialised by ``_episode_lock``.
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
from sop_ros.transport.ingest_state import (
    EpisodeIndex,
    FilePlan,
    PartialUpload,
    StoredEpisode,
    chunk_list_digest,
    safe_name,
)
from sop_ros.transport.session import decode_header, encode_header, fleet_key, reply_error

__all__ = ["IngestConfig", "IngestServer", "StoredEpisode"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class IngestConfig:
    """Settings of the learner's bag ingest."""

    # Fleet name: the key space is sop/<fleet>/upload/...
    fleet: str = setting("default", "fleet name, first segment of the key space")
    # Worker threads verifying and writing chunks (hashing releases the GIL, so they run in parallel).
    workers: int = setting(4, "worker threads verifying and writing chunks", low=1, high=64)
    # Queries waiting before new ones are answered "busy" (memory: up to this many chunks).
    max_queued: int = setting(32, "queries queued before answering busy", low=1, high=4096)
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
        self._queue: queue.Queue = queue.Queue(maxsize=self.config.max_queued)
        self._lock = threading.Lock()
        self._uploads: dict[tuple[str, str], PartialUpload] = {}
        self._episode_locks: dict[tuple[str, str], threading.Lock] = {}
        self._workers = [
            threading.Thread(target=self._work, name=f"sop-ingest-{i}", daemon=True)
            for i in range(self.config.workers)
        ]
        for worker in self._workers:
            worker.start()
        self._queryable = session.declare_queryable(f"{self._prefix}/**", self._route)

    def close(self) -> None:
        """Stop serving; chunks already acknowledged stay on disk for the robot to resume."""
        self._queryable.undeclare()
        for _ in self._workers:
            self._queue.put(None)
        for worker in self._workers:
            worker.join(timeout=30)
        with self._lock:
            for upload in self._uploads.values():
                upload.close()
            self._uploads.clear()

    def __enter__(self) -> IngestServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _route(self, query: Any) -> None:
        parts = str(query.key_expr)[len(self._prefix) + 1 :].split("/")
        if len(parts) != 3:
            reply_error(query, f"unknown upload key {query.key_expr}", code="bad_request", retry=False)
            return
        try:
            self._queue.put_nowait((query, parts))
        except queue.Full:
            reply_error(query, "ingest busy", code="busy", retry=True)

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            query, (robot, episode, op) = item
            handler = {"status": self._status, "chunk": self._chunk, "commit": self._commit}.get(op)
            try:
                if handler is None:
                    raise _Rejected(f"unknown upload operation {op!r}", code="bad_request", retry=False)
                safe_name(robot, "robot id")
                safe_name(episode, "episode id")
                if op == "chunk":
                    reply = handler(robot, episode, query)
                else:
                    with self._episode_lock(robot, episode):
                        reply = handler(robot, episode, query)
                query.reply(query.key_expr, reply)
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

    def _episode_lock(self, robot: str, episode: str) -> threading.Lock:
        with self._lock:
            return self._episode_locks.setdefault((robot, episode), threading.Lock())

    def _upload(self, robot: str, episode: str) -> PartialUpload:
        with self._lock:
            upload = self._uploads.get((robot, episode))
            if upload is None:
                upload = PartialUpload.load(self._partial_root(robot, episode))
                if upload is None:
                    raise _Rejected("no upload in progress; ask status first", code="no_plan", retry=True)
                self._uploads[(robot, episode)] = upload
            return upload

    def _stored_reply(self, entry: dict[str, Any], state: str) -> bytes:
        return encode_header("stored", state=state, path=entry["path"], task=entry["task"])

    def _status(self, robot: str, episode: str, query: Any) -> bytes:
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
        with self._lock:
            old = self._uploads.pop((robot, episode), None)
            if old is not None:
                old.close()
            upload = PartialUpload.open(self._partial_root(robot, episode), chunk_size, files)
            self._uploads[(robot, episode)] = upload
        state = "partial" if upload.acked else "absent"
        return encode_header("status", state=state, acked=upload.acked_chunks())

    def _chunk(self, robot: str, episode: str, query: Any) -> bytes:
        header = decode_header(query.attachment.to_bytes() if query.attachment is not None else None, "chunk")
        if self.index.get(robot, episode) is not None:
            # Retryable: the robot's next attempt asks status first and learns it is done.
            raise _Rejected("episode is already stored", code="already_stored", retry=True)
        upload = self._upload(robot, episode)
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

    def _commit(self, robot: str, episode: str, query: Any) -> bytes:
        if (entry := self.index.get(robot, episode)) is not None:
            return self._stored_reply(entry, "already_stored")
        request = decode_header(query.payload.to_bytes() if query.payload is not None else None, "commit")
        upload = self._upload(robot, episode)
        if missing := upload.missing():
            raise _Rejected("chunks missing", code="incomplete", retry=True, missing=missing)
        try:
            claimed = {str(f["name"]): [str(d) for d in f["chunk_sha256"]] for f in request["files"]}
            roots = {str(f["name"]): str(f["chunk_list_sha256"]) for f in request["files"]}
        except (KeyError, TypeError) as err:
            raise IntegrityError(f"malformed commit: {err}") from None
        if set(claimed) != set(upload.files):
            raise IntegrityError(f"commit lists files {sorted(claimed)}, plan has {sorted(upload.files)}")
        digests, differing = {}, {}
        for name in sorted(upload.files):
            stored = upload.acked_digests(name)
            if chunk_list_digest(claimed[name]) != roots[name] or len(claimed[name]) != len(stored):
                raise IntegrityError(f"{name}: the commit's chunk list does not match its own digest")
            if bad := [i for i, (a, b) in enumerate(zip(stored, claimed[name], strict=True)) if a != b]:
                differing[name] = bad
            digests[name] = chunk_list_digest(stored)
        if differing:
            # The bag changed on the robot after some chunks were sent: take the new bytes.
            for name, bad in differing.items():
                upload.forget(name, bad)
            reason = "chunks differ from the robot's bag"
            raise _Rejected(reason, code="incomplete", retry=True, missing=differing)
        try:
            meta = self._validate_bag(upload.bag_dir)
            if (meta.robot_id, meta.episode_id) != (robot, episode):
                raise IntegrityError(f"bag says robot {meta.robot_id!r} episode {meta.episode_id!r}")
            safe_name(meta.task, "task")
        except Exception as err:  # whatever the validator raises, the bag is kept, not lost
            return self._quarantine(upload, robot, episode, f"{type(err).__name__}: {err}")
        final = self.store_dir / meta.task / robot / episode
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            shutil.rmtree(final)  # left by a crash between move and index append; ours is verified
        upload.close()
        upload.bag_dir.rename(final)
        size = sum(f.size_bytes for f in upload.files.values())
        stored = StoredEpisode(
            meta=meta,
            path=final,
            chunk_list_sha256=digests,
            chunk_size_bytes=upload.chunk_size_bytes,
            size_bytes=size,
        )
        entry = self.index.append(stored, self.store_dir)
        self._forget(upload, robot, episode)
        if self._on_episode is not None:
            try:
                self._on_episode(stored)
            except Exception:
                _log.exception("on_episode callback failed for %s/%s", robot, episode)
        return self._stored_reply(entry, "stored")

    def _quarantine(self, upload: PartialUpload, robot: str, episode: str, reason: str) -> bytes:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        target = self.store_dir / "quarantine" / robot / f"{episode}-{stamp}"
        target.parent.mkdir(parents=True, exist_ok=True)
        upload.close()
        upload.bag_dir.rename(target)
        record = {"schema": 1, "robot_id": robot, "episode_id": episode, "reason": reason, "at": stamp}
        (target.parent / f"{target.name}.reason.json").write_text(json.dumps(record, indent=1))
        self._forget(upload, robot, episode)
        rel = str(target.relative_to(self.store_dir))
        _log.warning("quarantined %s/%s in %s: %s", robot, episode, rel, reason)
        raise _Rejected(reason, code="rejected", retry=False, quarantined=rel)

    def _forget(self, upload: PartialUpload, robot: str, episode: str) -> None:
        with self._lock:
            self._uploads.pop((robot, episode), None)
            self._episode_locks.pop((robot, episode), None)
        upload.close()
        shutil.rmtree(upload.root, ignore_errors=True)

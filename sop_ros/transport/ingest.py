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
  ``incomplete`` (retry) with at most ``max_missing_ranges`` [first, last]
  index ranges and a ``missing_count``, so the robot sends them again and the
  answer stays small whatever the plan.

Every robot-controlled field is checked before it touches the disk: names
against ``NAME_PATTERN`` and the store's reserved names, chunk size within
[``min_chunk_size_bytes``, ``max_chunk_size_bytes``], bag size, file and chunk
counts and header sizes within their limits. A request that breaks one is
answered ``bad_request`` with ``retry: false``: the robot quarantines the bag
with that reason instead of retrying for ever.

Crash consistency: a commit runs the steps named in ``COMMIT_STEPS``, each
durable (fsync of files and directories) before the next, and
:func:`~sop_ros.transport.ingest_recovery.reconcile_store` repairs whatever a
crash between two of them leaves, before the first query is served.

Resources per robot are bounded: at most ``max_partial_uploads_per_robot``
partial uploads and ``max_partial_bytes_per_robot`` declared bytes on disk (the
least recently planned one is dropped to make room), and at most
``max_open_uploads`` uploads of all robots hold open files and ack tables in
memory (least recently used ones are closed; their state stays on disk).
Memory of queued chunks is at most ``max_queued × max_chunk_size_bytes`` (512 MiB
with the robots' default 4 MiB chunks); open files at most one per worker plus
one ack log per open upload.

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
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zenoh

from sop_ros.core.config import check_ranges, setting
from sop_ros.core.durable import fsync_dir, write_durably
from sop_ros.core.errors import ConfigError, IntegrityError, SopError
from sop_ros.core.types import EpisodeMeta
from sop_ros.transport.ingest_recovery import COMMIT_INTENT, RecoveryReport, quarantine_dir, reconcile_store
from sop_ros.transport.ingest_state import (
    EpisodeIndex,
    FilePlan,
    PartialUpload,
    StoredEpisode,
    chunk_list_digest,
    make_dirs,
    safe_name,
    strict_int,
)
from sop_ros.transport.session import decode_header, encode_header, fleet_field, fleet_key, reply_error

__all__ = ["COMMIT_STEPS", "IngestConfig", "IngestServer", "StoredEpisode"]

# The durable steps of a commit, in order; ``commit_hook`` is called after each with its name.
COMMIT_STEPS = ("validated", "intent_written", "renamed", "dirs_synced", "indexed", "cleaned")
# Locks serialising status and commit per (robot, episode), shared by hash.
_EPISODE_LOCKS = 256

_log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class IngestConfig:
    """Settings of the learner's bag ingest."""

    # Fleet name: the key space is sop/<fleet>/upload/...
    fleet: str = fleet_field()
    # Worker threads verifying and writing chunks (hashing releases the GIL, so they run in parallel).
    workers: int = setting(4, "worker threads verifying and writing chunks", low=1, high=64)
    # Queries waiting before new ones are answered "busy" (memory: up to this many chunks; 128 lets
    # 32 robots keep their default 4 chunks in flight).
    max_queued: int = setting(128, "queries queued before answering busy", low=1, high=4096)
    # Smallest chunk a robot may plan with (bytes; the last chunk of a file may be shorter).
    min_chunk_size_bytes: int = setting(64 << 10, "smallest accepted chunk", unit="B", low=1, high=1 << 30)
    # Largest chunk a robot may send (bytes).
    max_chunk_size_bytes: int = setting(16 << 20, "largest accepted chunk", unit="B", low=1, high=1 << 30)
    # Largest bag a robot may send (bytes).
    max_bag_size_bytes: int = setting(16 << 30, "largest accepted bag", unit="B", low=1)
    # Most chunks one bag may be split into (memory: ~200 B of ack table per chunk).
    max_chunks_per_bag: int = setting(65536, "most chunks per bag", low=1, high=1 << 24)
    # Most files one bag may hold.
    max_files_per_bag: int = setting(64, "most files per bag", low=1, high=4096)
    # Largest JSON header (plan, commit) a robot may send (bytes).
    max_header_bytes: int = setting(8 << 20, "largest plan or commit header", unit="B", low=1024)
    # Partial uploads one robot may have on disk; the least recently planned one makes room.
    max_partial_uploads_per_robot: int = setting(4, "partial uploads kept per robot", low=1, high=1024)
    # Declared bytes of one robot's partial uploads on disk; the least recently planned one makes room.
    max_partial_bytes_per_robot: int = setting(
        32 << 30, "disk quota of one robot's partial uploads", unit="B", low=1
    )
    # Uploads (all robots) holding open files and ack tables in memory; least recently used are closed.
    max_open_uploads: int = setting(64, "uploads kept open in memory", low=1, high=65536)
    # Index ranges listed in an "incomplete" commit answer (the count covers the rest).
    max_missing_ranges: int = setting(64, "missing-chunk ranges listed per answer", low=1, high=65536)

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.min_chunk_size_bytes > self.max_chunk_size_bytes:
            raise ConfigError(
                f"min_chunk_size_bytes {self.min_chunk_size_bytes} > max_chunk_size_bytes "
                f"{self.max_chunk_size_bytes}"
            )


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
        on_episode: Called (from a worker thread) with each newly stored episode. Episodes whose
            commit is finished by the start-up recovery are not passed (they are in the store and
            the index, where a restarting learner finds them).
        config: Settings.
        commit_hook: Called with each name of ``COMMIT_STEPS`` once that step is durable; the
            fault-injection tests crash the process there.
    """

    def __init__(
        self,
        session: zenoh.Session,
        store_dir: Path,
        *,
        validate_bag: Callable[[Path], EpisodeMeta],
        on_episode: Callable[[StoredEpisode], None] | None = None,
        config: IngestConfig | None = None,
        commit_hook: Callable[[str], None] | None = None,
    ):
        self.config = config or IngestConfig()
        self.store_dir = Path(store_dir)
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.index = EpisodeIndex(self.store_dir)
        self._validate_bag = validate_bag
        self._on_episode = on_episode
        self._commit_hook = commit_hook or (lambda step: None)
        # Before any query: a crash mid-commit must not leave a robot blocked or a bag unindexed.
        self.recovery: RecoveryReport = reconcile_store(self.store_dir, self.index, validate_bag)
        self._prefix = fleet_key(self.config.fleet, "upload")
        self._queue: queue.Queue[tuple[zenoh.Query, list[str]] | None] = queue.Queue(
            maxsize=self.config.max_queued
        )
        self._lock = threading.Lock()
        # Open uploads, least recently used first (at most max_open_uploads).
        self._uploads: OrderedDict[tuple[str, str], PartialUpload] = OrderedDict()
        self._episode_locks = [threading.Lock() for _ in range(_EPISODE_LOCKS)]
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

    def _route(self, query: zenoh.Query) -> None:
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

    def _header(self, data: Any, kind: str) -> dict[str, Any]:
        raw = data.to_bytes() if data is not None else None
        if raw is not None and len(raw) > self.config.max_header_bytes:
            raise IntegrityError(f"{kind} header of {len(raw)} bytes exceeds {self.config.max_header_bytes}")
        return decode_header(raw, kind)

    def _partial_root(self, robot: str, episode: str) -> Path:
        return self.store_dir / ".partial" / robot / episode

    def _episode_lock(self, robot: str, episode: str) -> threading.Lock:
        # A fixed set of locks, not one per episode ever named: a robot naming millions of episodes
        # costs no memory; two episodes sharing a lock only wait for each other's status or commit.
        return self._episode_locks[hash((robot, episode)) % len(self._episode_locks)]

    def _keep_open(self, key: tuple[str, str], upload: PartialUpload) -> None:
        """Remember ``upload`` as most recently used; close the least recently used beyond the limit."""
        self._uploads[key] = upload
        self._uploads.move_to_end(key)
        while len(self._uploads) > self.config.max_open_uploads:
            _, oldest = self._uploads.popitem(last=False)
            oldest.close()  # its plan, acks and chunks stay on disk; it is reopened on demand

    def _upload(self, robot: str, episode: str) -> PartialUpload:
        with self._lock:
            upload = self._uploads.get((robot, episode))
            if upload is None:
                upload = PartialUpload.load(self._partial_root(robot, episode))
                if upload is None:
                    raise _Rejected("no upload in progress; ask status first", code="no_plan", retry=True)
            self._keep_open((robot, episode), upload)
            return upload

    def _stored_reply(self, entry: dict[str, Any], state: str) -> bytes:
        return encode_header("stored", state=state, path=entry["path"], task=entry["task"])

    def _parse_plan(self, plan: dict[str, Any]) -> tuple[int, tuple[FilePlan, ...]]:
        cfg = self.config
        try:
            chunk_size = strict_int(plan["chunk_size_bytes"], "chunk_size_bytes")
            entries = plan["files"]
            if not isinstance(entries, list) or not 0 < len(entries) <= cfg.max_files_per_bag:
                raise IntegrityError(f"a bag holds 1..{cfg.max_files_per_bag} files")
            files = tuple(
                FilePlan(
                    name=safe_name(f["name"], "file name"), size_bytes=strict_int(f["size_bytes"], "size")
                )
                for f in entries
            )
        except (KeyError, TypeError) as err:
            raise IntegrityError(f"malformed upload plan: missing or mistyped {err}") from None
        if len({f.name for f in files}) != len(files):
            raise IntegrityError("upload plan names a file twice")
        if not cfg.min_chunk_size_bytes <= chunk_size <= cfg.max_chunk_size_bytes:
            raise IntegrityError(
                f"chunk size {chunk_size} outside "
                f"{cfg.min_chunk_size_bytes}..{cfg.max_chunk_size_bytes} bytes"
            )
        total = sum(f.size_bytes for f in files)
        if min(f.size_bytes for f in files) < 0 or total > cfg.max_bag_size_bytes:
            raise IntegrityError(f"bag of {total} bytes is negative or above {cfg.max_bag_size_bytes}")
        chunks = sum(f.chunk_count(chunk_size) for f in files)
        if chunks > cfg.max_chunks_per_bag:
            raise IntegrityError(
                f"bag of {chunks} chunks exceeds {cfg.max_chunks_per_bag}; use larger chunks"
            )
        return chunk_size, files

    def _status(self, robot: str, episode: str, query: zenoh.Query) -> bytes:
        if (entry := self.index.get(robot, episode)) is not None:
            return encode_header("status", state="stored", acked={}, path=entry["path"])
        chunk_size, files = self._parse_plan(self._header(query.payload, "plan"))
        with self._lock:
            old = self._uploads.pop((robot, episode), None)
            if old is not None:
                old.close()
            self._make_room(robot, episode, sum(f.size_bytes for f in files))
            upload = PartialUpload.open(self._partial_root(robot, episode), chunk_size, files)
            self._keep_open((robot, episode), upload)
        state = "partial" if upload.acked else "absent"
        return encode_header("status", state=state, acked=upload.acked_chunks())

    def _make_room(self, robot: str, episode: str, size_bytes: int) -> None:
        """Drop this robot's least recently planned partial uploads beyond its count and disk quota."""
        cfg = self.config
        others = []
        for root in (self.store_dir / ".partial" / robot).glob("*"):
            upload = PartialUpload.load(root) if root.name != episode else None
            if upload is not None:
                others.append(((root / "plan.json").stat().st_mtime_ns, root, upload.size_bytes))
            elif root.name != episode:
                shutil.rmtree(root, ignore_errors=True)  # no plan or files gone: nothing to resume
        others.sort()
        used = sum(size for _, _, size in others)
        while others and (
            len(others) + 1 > cfg.max_partial_uploads_per_robot
            or used + size_bytes > cfg.max_partial_bytes_per_robot
        ):
            _, root, size = others.pop(0)
            dropped = self._uploads.pop((robot, root.name), None)
            if dropped is not None:
                dropped.close()
            shutil.rmtree(root, ignore_errors=True)
            used -= size
            _log.warning("dropped partial upload %s/%s to keep %s within its quota", robot, root.name, robot)

    def _chunk(self, robot: str, episode: str, query: zenoh.Query) -> bytes:
        header = decode_header(query.attachment.to_bytes() if query.attachment is not None else None, "chunk")
        try:
            name = safe_name(header["file"], "file name")
            index = strict_int(header["index"], "chunk index")
            claimed = header["sha256"]
            if not isinstance(claimed, str) or len(claimed) != 64:
                raise IntegrityError(f"chunk sha256 {str(claimed)[:80]!r} is not 64 hex digits")
        except (KeyError, TypeError) as err:
            raise IntegrityError(f"malformed chunk header: missing or mistyped {err}") from None
        if self.index.get(robot, episode) is not None:
            # Retryable: the robot's next attempt asks status first and learns it is done.
            raise _Rejected("episode is already stored", code="already_stored", retry=True)
        upload = self._upload(robot, episode)
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

    def _incomplete(self, upload: PartialUpload, reason: str) -> _Rejected:
        ranges, count = upload.missing(max_ranges=self.config.max_missing_ranges)
        return _Rejected(
            f"{reason} ({count} chunks)", code="incomplete", retry=True, missing=ranges, missing_count=count
        )

    def _commit(self, robot: str, episode: str, query: zenoh.Query) -> bytes:
        if (entry := self.index.get(robot, episode)) is not None:
            return self._stored_reply(entry, "already_stored")
        request = self._header(query.payload, "commit")
        upload = self._upload(robot, episode)
        if upload.missing(max_ranges=0)[1]:
            raise self._incomplete(upload, "chunks missing")
        try:
            claimed = {str(f["name"]): [str(d) for d in f["chunk_sha256"]] for f in request["files"]}
            roots = {str(f["name"]): str(f["chunk_list_sha256"]) for f in request["files"]}
        except (KeyError, TypeError) as err:
            raise IntegrityError(f"malformed commit: missing or mistyped {err}") from None
        if set(claimed) != set(upload.files):
            raise IntegrityError(
                f"commit lists files {sorted(claimed)[:8]}, plan has {sorted(upload.files)[:8]}"
            )
        digests, differing = {}, {}
        for name in sorted(upload.files):
            stored = upload.acked_digests(name)
            if len(claimed[name]) != len(stored) or chunk_list_digest(claimed[name]) != roots[name]:
                raise IntegrityError(f"{name}: the commit's chunk list does not match its own digest or plan")
            if bad := [i for i, (a, b) in enumerate(zip(stored, claimed[name], strict=True)) if a != b]:
                differing[name] = bad
            digests[name] = chunk_list_digest(stored)
        if differing:
            # The bag changed on the robot after some chunks were sent: take the new bytes.
            for name, bad in differing.items():
                upload.forget(name, bad)
            raise self._incomplete(upload, "chunks differ from the robot's bag")
        try:
            meta = self._validate_bag(upload.bag_dir)
            if (meta.robot_id, meta.episode_id) != (robot, episode):
                raise IntegrityError(f"bag says robot {meta.robot_id!r} episode {meta.episode_id!r}")
            safe_name(meta.task, "task")
        except Exception as err:  # whatever the validator raises, the bag is kept, not lost
            # The reason goes back to the robot: name the bag's files, not the learner's disk layout.
            reason = f"{type(err).__name__}: {err}".replace(f"{upload.bag_dir}/", "").replace(
                str(upload.bag_dir), "bag"
            )
            return self._quarantine(upload, robot, episode, reason)
        self._commit_hook("validated")
        return self._store(upload, meta, digests)

    def _store(self, upload: PartialUpload, meta: EpisodeMeta, digests: dict[str, str]) -> bytes:
        """Move a validated bag into the store and index it; each step durable before the next."""
        robot, episode = meta.robot_id, meta.episode_id
        final = self.store_dir / meta.task / robot / episode
        stored = StoredEpisode(
            meta=meta,
            path=final,
            chunk_list_sha256=digests,
            chunk_size_bytes=upload.chunk_size_bytes,
            size_bytes=upload.size_bytes,
        )
        entry = self.index.entry_for(stored, self.store_dir)
        upload.close()
        upload.sync()
        write_durably(upload.root / COMMIT_INTENT, json.dumps(entry))
        self._commit_hook("intent_written")
        make_dirs(final.parent)
        if final.exists():  # not indexed, yet recovery found it valid or moved it: only a human puts one here
            quarantine_dir(
                self.store_dir, final, robot, episode, "replaced by a newer upload of the same episode"
            )
        upload.bag_dir.rename(final)
        self._commit_hook("renamed")
        fsync_dir(final.parent)
        fsync_dir(upload.root)
        self._commit_hook("dirs_synced")
        entry = self.index.append_entry(entry)
        self._commit_hook("indexed")
        self._forget(upload, robot, episode)
        self._commit_hook("cleaned")
        if self._on_episode is not None:
            try:
                self._on_episode(stored)
            except Exception:
                _log.exception("on_episode callback failed for %s/%s", robot, episode)
        return self._stored_reply(entry, "stored")

    def _quarantine(self, upload: PartialUpload, robot: str, episode: str, reason: str) -> bytes:
        upload.close()
        target = quarantine_dir(self.store_dir, upload.bag_dir, robot, episode, reason)
        self._forget(upload, robot, episode)
        rel = str(target.relative_to(self.store_dir))
        _log.warning("quarantined %s/%s in %s: %s", robot, episode, rel, reason)
        raise _Rejected(reason, code="rejected", retry=False, quarantined=rel)

    def _forget(self, upload: PartialUpload, robot: str, episode: str) -> None:
        with self._lock:
            self._uploads.pop((robot, episode), None)
        upload.close()
        shutil.rmtree(upload.root, ignore_errors=True)
        fsync_dir(upload.root.parent)

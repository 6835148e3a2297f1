"""Robot side of the bag upload: resumable, chunked, verified, rate-capped.

See :mod:`sop_ros.transport.ingest` for the wire protocol. One BagUploader is
used by one thread at a time (the bridge's upload thread, never an executor
thread serving control callbacks). During an upload a reader thread
(``sop-upload-read``) reads and hashes chunks ahead into a bounded queue while
the calling thread sends them, so hashing overlaps the network; at most
``2 × max_in_flight + 1`` chunks are in memory, whatever the bag's size.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import zenoh

from sop_ros.core.config import check_ranges, setting
from sop_ros.core.errors import BagError, TransportError
from sop_ros.core.weights import iter_chunks, sha256_bytes
from sop_ros.transport.errors import BagRejectedError
from sop_ros.transport.ingest_state import chunk_list_digest
from sop_ros.transport.session import (
    RateLimiter,
    RemoteError,
    RetryPolicy,
    decode_header,
    encode_header,
    fleet_field,
    fleet_key,
    query_once,
    start_query,
    wait_reply,
)

if TYPE_CHECKING:
    from zenoh.handlers import Handler

__all__ = ["BagUploader", "UploadConfig", "UploadProgress", "UploadResult", "UploadStats"]


@dataclass(frozen=True, kw_only=True)
class UploadConfig:
    """Settings of one robot's bag uploader."""

    fleet: str = fleet_field()
    robot_id: str = setting("robot", "this robot's id; its upload keys are sop/<fleet>/upload/<robot_id>/...")
    # Bytes per chunk; each is acknowledged separately, so this is also the resend unit.
    chunk_size_bytes: int = setting(4 << 20, "bytes per chunk", unit="B", low=64 << 10, high=16 << 20)
    # Chunks sent before waiting for the oldest acknowledgement (memory = this × chunk size).
    max_in_flight: int = setting(4, "unacknowledged chunks in flight", low=1, high=64)
    # Upload bandwidth cap (bytes/s); 0 sends as fast as the link allows.
    rate_limit_bytes_per_s: float = setting(0.0, "upload bandwidth cap, 0 = none", unit="B/s", low=0.0)
    # Resends of one chunk whose digest the learner found wrong, before the attempt fails.
    chunk_retries: int = setting(3, "resends of a chunk damaged in transit", low=0, high=100)
    # Time the commit (digest check, validation and move on the learner) may take (s).
    commit_timeout_s: float = setting(120.0, "time the learner may take to commit", unit="s", low=0.1)
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        check_ranges(self)
        fleet_key(self.fleet, self.robot_id)


@dataclass(frozen=True, kw_only=True)
class UploadProgress:
    """Where an upload stands; handed to the progress callback after every chunk."""

    episode_id: str
    # Bytes the learner holds (acknowledged now or before a resume).
    done_bytes: int
    total_bytes: int


@dataclass(kw_only=True)
class UploadStats:
    """Counters over one upload (all attempts)."""

    chunks_sent: int = 0
    bytes_sent: int = 0
    # Chunks the learner already held from an earlier attempt, so not sent again.
    chunks_skipped: int = 0
    # Chunks sent again because the learner found them damaged.
    chunks_resent: int = 0
    # Chunks sent again because the learner's queue was full ("busy").
    busy_resends: int = 0
    attempts: int = 0


@dataclass(frozen=True, kw_only=True)
class UploadResult:
    """Outcome of a successful upload."""

    episode_id: str
    # "stored" (this upload committed it) or "already_stored" (an earlier one did).
    state: str
    # Path of the episode in the learner's store, relative to the store root.
    path: str
    duration_s: float
    stats: UploadStats

    def summary(self) -> str:
        """One log line: where the episode went and what it took."""
        stats = self.stats
        parts = [f"{stats.bytes_sent / 1e6:.2f} MB in {stats.chunks_sent} chunks"]
        if stats.chunks_skipped:
            parts.append(f"{stats.chunks_skipped} already held")
        if stats.chunks_resent:
            parts.append(f"{stats.chunks_resent} resent")
        if stats.busy_resends:
            parts.append(f"{stats.busy_resends} resent to a busy learner")
        if stats.attempts > 1:
            parts.append(f"{stats.attempts} attempts")
        parts.append(f"{self.duration_s:.2f} s")
        return f"{self.episode_id} {self.state.replace('_', ' ')} as {self.path}: {', '.join(parts)}"


@dataclass
class _InFlight:
    name: str
    index: int
    data: bytes
    sha256: str
    replies: Handler[zenoh.Reply]
    sends: int = 1


# Threads hashing chunks ahead of the sender.
_HASH_THREADS = 2
# One chunk read ahead: file name, chunk index, bytes, and its digest being computed.
_ReadChunk = tuple[str, int, bytes, Future[str]]


class _ReadAhead:
    """Reads the chunks of a bag on a thread, ``depth`` chunks ahead of the sender.

    Digests are computed by a small pool (hashlib releases the GIL), so one
    core's sha256 speed does not cap the upload.
    """

    def __init__(self, bag_dir: Path, files: list[tuple[str, int]], chunk_size_bytes: int, depth: int):
        # Chunks in file order, then None at the end (or the BagError that ended the reading).
        self._queue: queue.Queue[_ReadChunk | BagError | None] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._hashers = ThreadPoolExecutor(max_workers=_HASH_THREADS, thread_name_prefix="sop-upload-hash")
        self._thread = threading.Thread(
            target=self._read, args=(bag_dir, files, chunk_size_bytes), name="sop-upload-read", daemon=True
        )
        self._thread.start()

    def _read(self, bag_dir: Path, files: list[tuple[str, int]], chunk_size_bytes: int) -> None:
        try:
            for name, _ in files:
                with (bag_dir / name).open("rb") as stream:
                    for index, data in enumerate(iter_chunks(stream, chunk_size_bytes)):
                        if not self._put((name, index, data, self._hashers.submit(sha256_bytes, data))):
                            return
            self._put(None)
        except OSError as err:
            self._put(BagError(f"cannot read {bag_dir}: {err}"))

    def _put(self, item: _ReadChunk | BagError | None) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[tuple[str, int, bytes, str]]:
        while (item := self._queue.get()) is not None:
            if isinstance(item, BagError):
                raise item
            name, index, data, digest = item
            yield name, index, data, digest.result()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._hashers.shutdown(wait=True, cancel_futures=True)


def bag_files(bag_dir: Path) -> list[tuple[str, int]]:
    """(name, size) of every regular file of a bag directory, sorted by name.

    Raises:
        BagError: ``bag_dir`` is not a directory, is empty, or holds subdirectories.
    """
    if not bag_dir.is_dir():
        raise BagError(f"{bag_dir} is not a bag directory")
    entries = sorted(bag_dir.iterdir())
    if not entries or any(not p.is_file() for p in entries):
        raise BagError(f"{bag_dir} must hold only regular files (and at least one)")
    return [(p.name, p.stat().st_size) for p in entries]


class BagUploader:
    """Sends bag directories to the learner's IngestServer.

    Args:
        session: An open Zenoh session (the caller closes it).
        config: Settings.
        sleep: Called to wait between attempts (tests pass a fast one).
    """

    def __init__(
        self, session: zenoh.Session, config: UploadConfig, *, sleep: Callable[[float], None] = time.sleep
    ):
        self.session = session
        self.config = config
        self._sleep = sleep

    def upload(
        self,
        bag_dir: Path,
        *,
        episode_id: str | None = None,
        progress: Callable[[UploadProgress], None] | None = None,
    ) -> UploadResult:
        """Upload one bag and return once the learner has committed it.

        Args:
            bag_dir: The bag directory (metadata.yaml and its .mcap file).
            episode_id: Defaults to the directory name.
            progress: Called after every chunk the learner holds.

        Raises:
            TransportError: the retry budget is spent; the bag is untouched, try again later.
            BagRejectedError: the learner refused the bag for good (and quarantined its copy).
            BagError: ``bag_dir`` is not a readable bag directory.
        """
        bag_dir = Path(bag_dir)
        episode_id = episode_id or bag_dir.name
        fleet_key(self.config.fleet, episode_id)
        stats = UploadStats()
        start = time.monotonic()
        policy = self.config.retry
        while True:
            stats.attempts += 1
            try:
                state, path = self._attempt(bag_dir, episode_id, stats, progress)
                return UploadResult(
                    episode_id=episode_id,
                    state=state,
                    path=path,
                    duration_s=time.monotonic() - start,
                    stats=stats,
                )
            except RemoteError as err:
                if not err.retry:
                    raise BagRejectedError(
                        err.reason, quarantine_path=err.header.get("quarantined", "")
                    ) from None
                failure: TransportError = err
            except TransportError as err:
                failure = err
            if stats.attempts >= policy.max_attempts:
                raise TransportError(
                    f"upload of {episode_id} failed after {stats.attempts} attempts ({failure}); "
                    f"the bag is kept in {bag_dir}"
                ) from failure
            self._sleep(policy.delay_s(stats.attempts))

    def _key(self, episode_id: str, op: str) -> str:
        return fleet_key(self.config.fleet, "upload", self.config.robot_id, episode_id, op)

    def _attempt(
        self,
        bag_dir: Path,
        episode_id: str,
        stats: UploadStats,
        progress: Callable[[UploadProgress], None] | None,
    ) -> tuple[str, str]:
        cfg = self.config
        files = bag_files(bag_dir)
        total = sum(size for _, size in files)
        plan = encode_header(
            "plan",
            chunk_size_bytes=cfg.chunk_size_bytes,
            files=[{"name": name, "size_bytes": size} for name, size in files],
        )
        payload, _ = query_once(
            self.session, self._key(episode_id, "status"), payload=plan, timeout_s=cfg.retry.timeout_s
        )
        status = decode_header(payload, "status")
        if status["state"] == "stored":
            return "already_stored", str(status.get("path", ""))
        acked = {
            (name, int(i)): str(d) for name, chunks in status.get("acked", {}).items() for i, d in chunks
        }
        limiter = RateLimiter(cfg.rate_limit_bytes_per_s, burst_bytes=cfg.chunk_size_bytes)
        chunk_key = self._key(episode_id, "chunk")
        window: deque[_InFlight] = deque()
        done = [0]

        def report(size: int) -> None:
            done[0] += size
            if progress is not None:
                progress(UploadProgress(episode_id=episode_id, done_bytes=done[0], total_bytes=total))

        chunk_lists: dict[str, list[str]] = {name: [] for name, _ in files}
        reader = _ReadAhead(bag_dir, files, cfg.chunk_size_bytes, depth=cfg.max_in_flight)
        try:
            for name, index, data, digest in reader:
                chunk_lists[name].append(digest)
                if acked.get((name, index)) == digest:
                    stats.chunks_skipped += 1
                    report(len(data))
                    continue
                while len(window) >= cfg.max_in_flight:
                    self._settle(window.popleft(), chunk_key, stats, report)
                limiter.acquire(len(data))
                replies = self._send_chunk(chunk_key, name, index, data, digest)
                stats.chunks_sent += 1
                stats.bytes_sent += len(data)
                window.append(_InFlight(name, index, data, digest, replies))
            while window:
                self._settle(window.popleft(), chunk_key, stats, report)
        finally:
            reader.close()
            window.clear()
        commit = encode_header(
            "commit",
            files=[
                {
                    "name": name,
                    "size_bytes": size,
                    "chunk_sha256": chunk_lists[name],
                    "chunk_list_sha256": chunk_list_digest(chunk_lists[name]),
                }
                for name, size in files
            ],
        )
        payload, _ = query_once(
            self.session, self._key(episode_id, "commit"), payload=commit, timeout_s=cfg.commit_timeout_s
        )
        stored = decode_header(payload, "stored")
        return str(stored["state"]), str(stored["path"])

    def _settle(self, item: _InFlight, key: str, stats: UploadStats, report: Callable[[int], None]) -> None:
        """Wait for one chunk's acknowledgement, resending it while the learner finds it damaged or is busy.

        A busy learner gets the chunk again after the retry policy's back-off (up to
        ``retry.max_attempts`` times) instead of failing the whole attempt, which would
        re-read and re-hash the bag while the learner is overloaded.
        """
        busy = 0
        while True:
            try:
                payload, _ = wait_reply(item.replies, key)
                ack = decode_header(payload, "ack")
                if ack.get("sha256") == item.sha256 and ack.get("index") == item.index:
                    report(len(item.data))
                    return
                reason = f"ack for chunk {item.index} of {item.name} does not match what was sent"
            except RemoteError as err:
                code = err.header.get("code")
                if code == "busy" and busy < self.config.retry.max_attempts:
                    busy += 1
                    stats.busy_resends += 1
                    stats.chunks_sent += 1
                    stats.bytes_sent += len(item.data)
                    self._sleep(self.config.retry.delay_s(busy))
                    item.replies = self._send_chunk(key, item.name, item.index, item.data, item.sha256)
                    continue
                if code != "digest_mismatch":
                    raise
                reason = err.reason
            if item.sends > self.config.chunk_retries:
                raise TransportError(f"{reason}; gave up after {item.sends} sends")
            item.sends += 1
            stats.chunks_resent += 1
            stats.chunks_sent += 1
            stats.bytes_sent += len(item.data)
            item.replies = self._send_chunk(key, item.name, item.index, item.data, item.sha256)

    def _send_chunk(self, key: str, name: str, index: int, data: bytes, sha256: str) -> Handler[zenoh.Reply]:
        """Start one chunk query and return its reply handler (one place to observe every send)."""
        header = encode_header("chunk", file=name, index=index, sha256=sha256)
        return start_query(
            self.session, key, timeout_s=self.config.retry.timeout_s, payload=data, attachment=header
        )

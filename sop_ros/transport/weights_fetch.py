"""Robot side of weights distribution: follow the newest manifest, collect, verify, stage.

See :mod:`sop_ros.transport.weights_publish` for the keys. A version is handed
to ``on_ready`` only after every chunk matched the manifest's digest, the whole
file matched its digest, it was fsynced and renamed into the staging directory
as ``v<NNNN>.safetensors``, and its tensor table fits the running policy. An
interrupted or tampered download is never handed over: it lives in a hidden
``.v<NNNN>.partial`` file until it is complete and verified.

Threads: Zenoh's callback threads store pushed chunks into the current
download and note new manifests, under ``_lock``; the fetcher's own thread
(``sop-weights-fetch``) owns everything else: picking the version, fetching
missing chunks, verifying, staging and calling ``on_ready``/``on_error``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zenoh

from sop_ros.core.config import check_ranges, setting
from sop_ros.core.durable import fsync_dir, fsync_file, write_durably
from sop_ros.core.errors import (
    IncompatibleWeightsError,
    IntegrityError,
    SopError,
    TransportError,
    WeightsError,
)
from sop_ros.core.types import format_version, parse_version
from sop_ros.core.weights import (
    TensorSpec,
    WeightsManifest,
    check_compatible,
    iter_chunks,
    read_safetensors_specs,
)
from sop_ros.transport.session import (
    RetryPolicy,
    decode_header,
    fleet_field,
    fleet_key,
    query_once,
    start_query,
    wait_reply,
)
from sop_ros.transport.weights_publish import weights_keys

__all__ = ["FetchStats", "WeightsFetcher", "WeightsFetcherConfig"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class WeightsFetcherConfig:
    """Settings of a robot's weights fetcher."""

    fleet: str = fleet_field()
    # Chunk queries outstanding at once when repairing a download.
    max_parallel_fetches: int = setting(4, "chunk queries in flight while repairing", low=1, high=64)
    # Time without a pushed chunk after which the missing ones are fetched (s).
    push_idle_s: float = setting(
        1.0, "quiet time before fetching missing chunks", unit="s", low=0.0, high=600.0
    )
    # Period of asking for the latest manifest (late joiners, missed puts, failed downloads) (s).
    manifest_poll_s: float = setting(10.0, "period of asking for the latest manifest", unit="s", low=0.05)
    # Staged versions kept on disk, newest first (the active one must be among them).
    keep_versions: int = setting(2, "staged versions kept", low=1, high=100)
    # Timeout and attempts of each manifest or chunk query.
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclass(kw_only=True)
class FetchStats:
    """Counters since the fetcher started."""

    chunks_pushed: int = 0
    chunks_fetched: int = 0
    # Chunks whose bytes did not match the manifest (dropped and fetched again).
    chunks_rejected: int = 0
    versions_ready: int = 0
    versions_abandoned: int = 0


class _Download:
    """One version being assembled in ``partial`` (fields guarded by the fetcher's lock)."""

    def __init__(self, manifest: WeightsManifest, partial: Path):
        self.manifest = manifest
        self.partial = partial
        self.have: set[int] = set()
        self.last_push = time.monotonic()
        # Whole-file digest over the chunks stored so far, while they come in order (a push
        # delivers them in order); any gap, repair or bad chunk makes total_sha256() re-read
        # the file. It runs on its own thread, beside the per-chunk check of the next chunk.
        self._next = 0
        self._total = hashlib.sha256()
        self._total_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sop-weights-total")
        with partial.open("wb") as out:
            out.truncate(manifest.size_bytes)

    def store(self, index: int, data: bytes) -> bool:
        """Write chunk ``index`` if it matches the manifest; return False if it does not."""
        m = self.manifest
        in_order = index == self._next
        if in_order:
            self._total_thread.submit(self._total.update, data)
            self._next += 1
        if len(data) != m.chunk_length(index) or hashlib.sha256(data).hexdigest() != m.chunk_sha256[index]:
            if in_order:
                self._next = -1  # the running digest has taken bad bytes: re-read at the end
            return False
        fd = os.open(self.partial, os.O_WRONLY)
        try:
            os.pwrite(fd, data, index * m.chunk_size_bytes)
        finally:
            os.close(fd)
        self.have.add(index)
        if not in_order:
            self._next = -1
        return True

    def missing(self) -> list[int]:
        return [i for i in range(self.manifest.chunk_count) if i not in self.have]

    def total_sha256(self) -> str:
        """sha256 of the assembled file (call once every chunk is stored)."""
        self._total_thread.shutdown(wait=True)
        if self._next == self.manifest.chunk_count:
            return self._total.hexdigest()
        total = hashlib.sha256()
        with self.partial.open("rb") as stream:
            for data in iter_chunks(stream, 1 << 20):
                total.update(data)
        return total.hexdigest()

    def discard(self) -> None:
        """Drop the download and its partial file."""
        self._total_thread.shutdown(wait=False, cancel_futures=True)
        self.partial.unlink(missing_ok=True)


class WeightsFetcher:
    """Keeps the newest weights version of a fleet staged and verified on this robot.

    Args:
        session: An open Zenoh session (the caller closes it).
        staging_dir: Where verified versions land (``v<NNNN>.safetensors`` + ``.json`` manifest).
        on_ready: Called from the fetcher thread with (manifest, path) of each new verified version.
        expected_tensors: The running policy's trainable tensor table; None skips the check.
        config_hash: The running policy's config hash (checked with ``expected_tensors``).
        on_error: Called with the error when a version is refused (incompatible, corrupt, unreachable).
        config: Settings.
    """

    def __init__(
        self,
        session: zenoh.Session,
        staging_dir: Path,
        *,
        on_ready: Callable[[WeightsManifest, Path], None],
        expected_tensors: tuple[TensorSpec, ...] | None = None,
        config_hash: str = "",
        on_error: Callable[[WeightsError], None] | None = None,
        config: WeightsFetcherConfig | None = None,
    ):
        self.config = config or WeightsFetcherConfig()
        self.staging_dir = Path(staging_dir)
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        self.keys = weights_keys(self.config.fleet)
        self.stats = FetchStats()
        self._session = session
        self._on_ready = on_ready
        self._on_error = on_error
        self._expected = expected_tensors
        self._config_hash = config_hash
        self._lock = threading.Condition()
        self._offered: WeightsManifest | None = None  # newest manifest heard, not yet handled
        self._current: _Download | None = None
        self._newest = -1  # newest version handled (staged, or refused for good)
        # version -> file sha256 of manifests whose download proved corrupt; not fetched again.
        self._corrupt: dict[int, str] = {}
        self._stop = threading.Event()
        self._subs = [
            session.declare_subscriber(self.keys["manifest"], self._on_manifest_sample),
            session.declare_subscriber(self.keys["push"], self._on_push),
        ]
        self._thread = threading.Thread(target=self._run, name="sop-weights-fetch", daemon=True)
        self._thread.start()

    @property
    def newest_version(self) -> int:
        """Newest version staged or refused; -1 before the first."""
        with self._lock:
            return self._newest

    def close(self) -> None:
        """Stop following the fleet; a download in progress is dropped (never handed over)."""
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        for sub in self._subs:
            sub.undeclare()
        self._thread.join(timeout=30)

    # Zenoh callback threads -------------------------------------------------------------

    def _offer(self, manifest: WeightsManifest) -> None:
        with self._lock:
            current = self._current.manifest.version if self._current is not None else -1
            if manifest.version <= self._newest or manifest.version < current:
                return  # latest wins: older or equal versions are ignored
            if self._corrupt.get(manifest.version) == manifest.sha256:
                return  # refused as corrupt already (see _refuse)
            if manifest.version > current:
                # Start collecting at once, on this thread, so no pushed chunk that follows is missed.
                if self._current is not None:
                    self._current.discard()
                partial = self.staging_dir / f".{format_version(manifest.version)}.partial"
                self._current = _Download(manifest, partial)
            if self._offered is None or manifest.version > self._offered.version:
                self._offered = manifest
            self._lock.notify_all()

    def _on_manifest_sample(self, sample: zenoh.Sample) -> None:
        try:
            self._offer(WeightsManifest.from_json(sample.payload.to_bytes()))
        except IntegrityError as err:
            _log.error("ignored a malformed weights manifest: %s", err)

    def _on_push(self, sample: zenoh.Sample) -> None:
        try:
            header = decode_header(sample.attachment.to_bytes() if sample.attachment else None)
            if header["kind"] == "manifest":
                self._offer(WeightsManifest.from_json(sample.payload.to_bytes()))
                return
            version, index = int(header["version"]), int(header["index"])
        except (IntegrityError, KeyError, TypeError, ValueError) as err:
            _log.warning("ignored a malformed weights push sample: %s", err)
            return
        with self._lock:
            download = self._current
            if download is None or download.manifest.version != version or index in download.have:
                return
            if not 0 <= index < download.manifest.chunk_count:
                return
            if download.store(index, sample.payload.to_bytes()):
                self.stats.chunks_pushed += 1
            else:
                self.stats.chunks_rejected += 1
            download.last_push = time.monotonic()
            self._lock.notify_all()

    # Fetcher thread ---------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._follow()
            except Exception:  # a bug must not end the following of the fleet without a word
                failures += 1
                delay = min(60.0, 2.0**failures)
                _log.exception("weights fetcher failed; restarting in %.0f s", delay)
                self._stop.wait(delay)

    def _follow(self) -> None:
        next_poll = 0.0
        while not self._stop.is_set():
            if time.monotonic() >= next_poll:
                self._poll_manifest()
                next_poll = time.monotonic() + self.config.manifest_poll_s
            with self._lock:
                if self._offered is None:
                    self._lock.wait(timeout=max(0.0, next_poll - time.monotonic()))
                manifest, self._offered = self._offered, None
            if manifest is None or self._stop.is_set() or manifest.version <= self.newest_version:
                continue
            try:
                self._download(manifest)
            except _Superseded:
                self.stats.versions_abandoned += 1
            except SopError as err:
                self._refuse(manifest, err)
            except OSError as err:  # disk full, staging removed: report, keep following the fleet
                self._refuse(manifest, WeightsError(f"cannot write weights to {self.staging_dir}: {err}"))

    def _poll_manifest(self) -> None:
        try:
            payload, _ = query_once(
                self._session, self.keys["manifest"], timeout_s=self.config.retry.timeout_s
            )
            self._offer(WeightsManifest.from_json(payload))
        except SopError as err:
            _log.debug("no weights manifest yet: %s", err)

    def _refuse(self, manifest: WeightsManifest, err: SopError) -> None:
        with self._lock:
            if isinstance(err, IncompatibleWeightsError):
                self._newest = max(self._newest, manifest.version)  # retrying cannot help
            elif isinstance(err, IntegrityError):
                # The learner serves this exact file corrupt: fetching it again at every manifest poll
                # would only burn the link. A new manifest (another digest or a newer version) is tried.
                self._corrupt[manifest.version] = manifest.sha256
                for old in sorted(self._corrupt)[:-16]:  # bounded: only recent versions come back
                    del self._corrupt[old]
            current = self._current
            same = current is not None and current.manifest.version == manifest.version
            # A transport failure keeps the verified chunks for the next try; anything else restarts.
            if current is not None and same and not isinstance(err, TransportError):
                current.discard()
                self._current = None
        _log.error("weights %s not staged: %s", format_version(manifest.version), err)
        if self._on_error is not None:
            self._on_error(err if isinstance(err, WeightsError) else WeightsError(str(err)))

    def _check_superseded(self, version: int) -> None:
        if self._stop.is_set():
            raise _Superseded()
        offered = self._offered
        if offered is not None and offered.version > version:
            raise _Superseded()

    def _download(self, manifest: WeightsManifest) -> None:
        with self._lock:
            download = self._current
            if manifest.version <= self._newest or download is None or download.manifest != manifest:
                raise _Superseded()
            # Pushed chunks are arriving: wait until they stop before asking for the rest.
            while download.missing() and time.monotonic() - download.last_push < self.config.push_idle_s:
                self._check_superseded(manifest.version)
                self._lock.wait(timeout=self.config.push_idle_s)
            self._check_superseded(manifest.version)
        self._fetch_missing(download)
        self._stage(download)

    def _fetch_missing(self, download: _Download) -> None:
        m = download.manifest
        with self._lock:
            todo = deque((i, 0) for i in download.missing())
        in_flight: deque[tuple[int, int, Any]] = deque()
        attempts = self.config.retry.max_attempts
        while todo or in_flight:
            while todo and len(in_flight) < self.config.max_parallel_fetches:
                index, tries = todo.popleft()
                key = fleet_key(self.config.fleet, "weights", "chunk", str(m.version), str(index))
                replies = start_query(self._session, key, timeout_s=self.config.retry.timeout_s)
                in_flight.append((index, tries + 1, replies))
            index, tries, replies = in_flight.popleft()
            try:
                data, _ = wait_reply(replies, f"{self.keys['chunk']}/{m.version}/{index}")
            except TransportError as err:
                if tries >= attempts:
                    raise TransportError(f"chunk {index} of v{m.version} unavailable: {err}") from None
                todo.append((index, tries))
                continue
            with self._lock:
                self._check_superseded(m.version)
                if index in download.have:
                    continue
                if download.store(index, data):
                    self.stats.chunks_fetched += 1
                    continue
                self.stats.chunks_rejected += 1
            if tries >= attempts:
                raise IntegrityError(f"chunk {index} of v{m.version} failed its digest {tries} times")
            todo.append((index, tries))

    def _stage(self, download: _Download) -> None:
        m = download.manifest
        total = download.total_sha256()  # no lock: every chunk is in, nothing changes it now
        if total != m.sha256:
            raise IntegrityError(f"v{m.version}: file sha256 {total} != manifest {m.sha256}")
        if read_safetensors_specs(download.partial) != tuple(sorted(m.tensors, key=lambda t: t.name)):
            raise IntegrityError(f"v{m.version}: the file's tensor table differs from its manifest")
        if self._expected is not None:
            check_compatible(m, self._expected, self._config_hash)
        name = format_version(m.version)
        final = self.staging_dir / f"{name}.safetensors"
        fsync_file(download.partial)
        write_durably(self.staging_dir / f"{name}.json", m.to_json())
        with self._lock:
            self._check_superseded(m.version)
            os.replace(download.partial, final)
            fsync_dir(self.staging_dir)
            self._current = None
            self._newest = max(self._newest, m.version)
            self.stats.versions_ready += 1
        self._prune()
        try:
            self._on_ready(m, final)
        except Exception:  # the caller's bug must not stop updates
            _log.exception("on_ready failed for weights %s", name)

    def _prune(self) -> None:
        staged = sorted(self.staging_dir.glob("v*.safetensors"), key=lambda p: parse_version(p.stem))
        for old in staged[: -self.config.keep_versions]:
            old.unlink(missing_ok=True)
            old.with_suffix(".json").unlink(missing_ok=True)


class _Superseded(SopError):
    """A newer manifest arrived (or the fetcher closes): drop the download in progress."""

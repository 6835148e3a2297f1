"""On-disk state of the ingest server: partial uploads and the index of stored episodes.

A partial upload lives in ``<store>/.partial/<robot>/<episode>/``: ``plan.json``
(file names, sizes, chunk size), ``acks.jsonl`` (one line per acknowledged
chunk) and ``bag/`` (the files, written in place at each chunk's offset). It
survives a server restart, which is what lets a robot resume. A chunk's bytes
reach the disk (``fdatasync``) before its acknowledgement is logged, so after
a power loss an acknowledged chunk is never zeros; a lost log line only makes
the robot send that chunk again. While a commit moves the bag into the store,
``commit.json`` (the index entry it is about to write) marks the upload, so a
restart can finish the commit instead of guessing (see ``IngestServer.recover``).

Every name a robot controls (robot, episode, task, file) must match
:data:`NAME_PATTERN` and not be one of :data:`RESERVED_NAMES`, the names the
store and a partial upload use for themselves.

Several ingest workers may write chunks of one PartialUpload at once: chunks
go to disjoint offsets with ``pwrite`` and the acknowledgement table and log
are guarded by ``PartialUpload.lock``. The EpisodeIndex locks itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sop_ros.core.durable import fsync_dir, fsync_tree, write_durably
from sop_ros.core.errors import IntegrityError
from sop_ros.core.types import EpisodeMeta

__all__ = [
    "NAME_PATTERN",
    "RESERVED_NAMES",
    "EpisodeIndex",
    "FilePlan",
    "PartialUpload",
    "StoredEpisode",
    "chunk_list_digest",
    "make_dirs",
    "safe_name",
    "strict_int",
]

_INDEX_SCHEMA = 1

# Robot, episode, task and file names: one plain path segment and one Zenoh key segment, at most 128 chars.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}")
# Names the store (``index.jsonl``, ``quarantine/``) and a partial upload use for their own files.
RESERVED_NAMES = frozenset({"index.jsonl", "quarantine", "bag", "plan.json", "acks.jsonl", "commit.json"})


def chunk_list_digest(chunk_sha256: list[str] | tuple[str, ...]) -> str:
    """The digest of a whole file sent in chunks: sha256 over its chunk digests (32 bytes each, in order).

    Like a multipart ETag it changes with any byte of the file, yet each side
    computes it from the per-chunk digests it needs anyway, so the file is
    hashed once, not twice, and chunks can be checked in any order.
    """
    return hashlib.sha256(b"".join(bytes.fromhex(d) for d in chunk_sha256)).hexdigest()


def safe_name(name: object, what: str) -> str:
    """Return ``name`` if it matches NAME_PATTERN and is not reserved, else raise IntegrityError."""
    if not isinstance(name, str) or NAME_PATTERN.fullmatch(name) is None:
        shown = repr(name) if len(repr(name)) <= 80 else f"{repr(name)[:60]}… ({len(str(name))} chars)"
        raise IntegrityError(
            f"{what} {shown} is not a plain name (letters, digits, '_.+-', at most 128 chars, "
            "not starting with '.' or '-')"
        )
    if name.lower() in RESERVED_NAMES:
        raise IntegrityError(
            f"{what} {name!r} is reserved by the store ({', '.join(sorted(RESERVED_NAMES))})"
        )
    return name


def strict_int(value: Any, what: str) -> int:
    """``value`` if it is a JSON integer (not a bool, float or string), else IntegrityError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise IntegrityError(f"{what} {str(value)[:40]!r} is not an integer")
    return value


def make_dirs(path: Path) -> None:
    """Create ``path`` and its missing parents, making each new entry durable in its parent."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for new in reversed(missing):
        new.mkdir(exist_ok=True)
        fsync_dir(new.parent)


@dataclass(frozen=True, kw_only=True)
class FilePlan:
    """One file of a bag as the robot announced it."""

    name: str
    size_bytes: int

    def chunk_count(self, chunk_size_bytes: int) -> int:
        """Number of chunks of ``chunk_size_bytes`` the file splits into."""
        return -(-self.size_bytes // chunk_size_bytes)


@dataclass(frozen=True, kw_only=True)
class StoredEpisode:
    """An episode that is committed to the store."""

    meta: EpisodeMeta
    # Absolute path of the episode's bag directory.
    path: Path
    # File name -> chunk_list_digest of every file of the bag.
    chunk_list_sha256: dict[str, str]
    chunk_size_bytes: int
    size_bytes: int


class PartialUpload:
    """Chunks received so far for one (robot, episode), persisted under ``root``."""

    def __init__(self, root: Path, chunk_size_bytes: int, files: tuple[FilePlan, ...]):
        self.root = root
        self.chunk_size_bytes = chunk_size_bytes
        self.files = {f.name: f for f in files}
        # (file, index) -> sha256 of every acknowledged chunk; guarded by lock with the log.
        self.acked: dict[tuple[str, int], str] = {}
        self.lock = threading.Lock()
        self._log: Any = None

    @property
    def bag_dir(self) -> Path:
        """Directory holding the bag's files as they are assembled."""
        return self.root / "bag"

    @classmethod
    def open(cls, root: Path, chunk_size_bytes: int, files: tuple[FilePlan, ...]) -> PartialUpload:
        """Resume the upload in ``root`` if its plan matches and its files are there, else start afresh."""
        plan = {
            "schema": _INDEX_SCHEMA,
            "chunk_size_bytes": chunk_size_bytes,
            "files": [asdict(f) for f in files],
        }
        plan_path = root / "plan.json"
        upload = cls(root, chunk_size_bytes, files)
        try:
            if json.loads(plan_path.read_text()) == plan and upload._files_intact():
                upload._load_acks()
                return upload
        except (OSError, ValueError):
            pass
        # A different plan means the robot re-recorded or changed chunk size: old chunks are useless.
        # Files gone or resized (a crash mid-commit, a human) make the acks point at nothing: drop them.
        shutil.rmtree(root, ignore_errors=True)
        upload.bag_dir.mkdir(parents=True)
        for f in files:
            with (upload.bag_dir / f.name).open("wb") as out:
                out.truncate(f.size_bytes)
        write_durably(plan_path, json.dumps(plan))
        return upload

    def _files_intact(self) -> bool:
        for name, plan in self.files.items():
            try:
                if (self.bag_dir / name).stat().st_size != plan.size_bytes:
                    return False
            except OSError:
                return False
        return True

    @classmethod
    def load(cls, root: Path) -> PartialUpload | None:
        """Reopen an upload from its saved plan, or None when there is none (or its files are gone)."""
        try:
            plan = json.loads((root / "plan.json").read_text())
            files = tuple(FilePlan(name=f["name"], size_bytes=f["size_bytes"]) for f in plan["files"])
            upload = cls(root, plan["chunk_size_bytes"], files)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not upload._files_intact():
            return None
        upload._load_acks()
        return upload

    @property
    def size_bytes(self) -> int:
        """Declared size of the whole bag."""
        return sum(f.size_bytes for f in self.files.values())

    @property
    def chunk_total(self) -> int:
        """Number of chunks of the whole bag."""
        return sum(f.chunk_count(self.chunk_size_bytes) for f in self.files.values())

    def _load_acks(self) -> None:
        try:
            lines = (self.root / "acks.jsonl").read_text().splitlines()
        except FileNotFoundError:
            return
        for line in lines:
            try:
                ack = json.loads(line)
                name, index = str(ack["file"]), int(ack["index"])
                if name in self.files and 0 <= index < self.files[name].chunk_count(self.chunk_size_bytes):
                    self.acked[(name, index)] = str(ack["sha256"])
            except (ValueError, KeyError, TypeError):
                continue  # a line torn by a crash: that chunk is simply sent again

    def chunk_length(self, name: str, index: int) -> int:
        """Expected length of chunk ``index`` of file ``name``; raises IntegrityError if out of plan."""
        plan = self.files.get(name)
        if plan is None:
            raise IntegrityError(f"file {name!r} is not in the upload plan")
        count = plan.chunk_count(self.chunk_size_bytes)
        if not 0 <= index < count:
            raise IntegrityError(f"chunk {index} of {name!r} out of range 0..{count - 1}")
        return min(self.chunk_size_bytes, plan.size_bytes - index * self.chunk_size_bytes)

    def write_chunk(self, name: str, index: int, data: bytes, sha256: str) -> None:
        """Write a verified chunk at its offset and record its acknowledgement.

        Each write opens its own descriptor: an upload closed meanwhile (evicted from
        memory, re-planned) never has a descriptor pulled from under a writer, and
        open files are bounded by the number of workers, not of uploads.
        """
        fd = os.open(self.bag_dir / name, os.O_WRONLY)
        try:
            # Chunks go to disjoint offsets, so writes of one upload may run in parallel.
            os.pwrite(fd, data, index * self.chunk_size_bytes)
            # The bytes are on disk before the ack is logged: a logged ack never points at zeros.
            os.fdatasync(fd)
        finally:
            os.close(fd)
        with self.lock:
            if self._log is None:
                self._log = (self.root / "acks.jsonl").open("a")
            self._log.write(json.dumps({"file": name, "index": index, "sha256": sha256}) + "\n")
            self._log.flush()
            self.acked[(name, index)] = sha256

    def close(self) -> None:
        """Release the open ack log (the data stays on disk; a later write reopens it)."""
        with self.lock:
            if self._log is not None:
                self._log.close()
                self._log = None

    def acked_chunks(self) -> dict[str, list[list[Any]]]:
        """File name -> sorted [index, sha256] of acknowledged chunks."""
        out: dict[str, list[list[Any]]] = {name: [] for name in self.files}
        with self.lock:
            for (name, index), sha256 in sorted(self.acked.items()):
                out[name].append([index, sha256])
        return out

    def missing(self, *, max_ranges: int = 64) -> tuple[dict[str, list[list[int]]], int]:
        """Chunks not yet acknowledged, as ([first, last] index ranges per file, total count).

        At most ``max_ranges`` ranges are listed, so the answer's size does not
        grow with the plan; the count covers them all.
        """
        ranges: dict[str, list[list[int]]] = {}
        count = listed = 0
        with self.lock:
            acked = set(self.acked)
        for name, plan in sorted(self.files.items()):
            run_start = None
            total = plan.chunk_count(self.chunk_size_bytes)
            for i in range(total + 1):
                gap = i < total and (name, i) not in acked
                if gap:
                    count += 1
                    if run_start is None:
                        run_start = i
                elif run_start is not None:
                    if listed < max_ranges:
                        ranges.setdefault(name, []).append([run_start, i - 1])
                        listed += 1
                    run_start = None
        return ranges, count

    def sync(self) -> None:
        """Flush the bag's files and directory to disk (before they are renamed into the store)."""
        fsync_tree(self.bag_dir)

    def acked_digests(self, name: str) -> list[str]:
        """Acknowledged chunk digests of ``name`` in order (call once nothing is missing)."""
        with self.lock:
            return [self.acked[(name, i)] for i in range(self.files[name].chunk_count(self.chunk_size_bytes))]

    def forget(self, name: str, indices: list[int]) -> None:
        """Drop the acknowledgements of chunks the robot says differ, so they are sent again."""
        with self.lock:
            for index in indices:
                self.acked.pop((name, index), None)
            lines = [json.dumps({"file": f, "index": i, "sha256": s}) for (f, i), s in self.acked.items()]
            if self._log is not None:
                self._log.close()
                self._log = None
            (self.root / "acks.jsonl").write_text("".join(line + "\n" for line in lines))


class EpisodeIndex:
    """The append-only JSON-lines index ``<store>/index.jsonl`` of stored episodes. Thread-safe."""

    def __init__(self, store_dir: Path):
        self.path = store_dir / "index.jsonl"
        self._lock = threading.Lock()
        self._stored: dict[tuple[str, str], dict[str, Any]] = {}
        for entry in self._read():
            self._stored[(entry["robot_id"], entry["episode_id"])] = entry

    def _read(self) -> Iterator[dict[str, Any]]:
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return
        for line in lines:
            try:
                entry = json.loads(line)
                if entry.get("schema") == _INDEX_SCHEMA:
                    yield entry
            except ValueError:
                continue  # a torn last line after a crash; recovery at start-up indexes the bag again

    def get(self, robot_id: str, episode_id: str) -> dict[str, Any] | None:
        """The index entry of an episode, or None when it is not stored."""
        with self._lock:
            return self._stored.get((robot_id, episode_id))

    @staticmethod
    def entry_for(episode: StoredEpisode, store_dir: Path) -> dict[str, Any]:
        """The index line (as a mapping) that records ``episode``."""
        meta = episode.meta
        return {
            "schema": _INDEX_SCHEMA,
            "robot_id": meta.robot_id,
            "episode_id": meta.episode_id,
            "task": meta.task,
            "outcome": meta.outcome.value,
            "policy_versions": list(meta.policy_versions),
            "start_ns": meta.start_ns,
            "end_ns": meta.end_ns,
            "intervention_count": meta.intervention_count,
            "intervention_s": meta.intervention_s,
            "path": str(episode.path.relative_to(store_dir)),
            "size_bytes": episode.size_bytes,
            "chunk_size_bytes": episode.chunk_size_bytes,
            "chunk_list_sha256": episode.chunk_list_sha256,
        }

    def append(self, episode: StoredEpisode, store_dir: Path) -> dict[str, Any]:
        """Record a newly stored episode durably (flush + fsync) and return its entry."""
        return self.append_entry(self.entry_for(episode, store_dir))

    def append_entry(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Append one index line durably, unless the episode is indexed already; return the entry kept."""
        key = (entry["robot_id"], entry["episode_id"])
        with self._lock:
            if key in self._stored:
                return self._stored[key]
            created = not self.path.exists()
            with self.path.open("a") as out:
                out.write(json.dumps(entry, sort_keys=True) + "\n")
                out.flush()
                os.fsync(out.fileno())
            if created:
                fsync_dir(self.path.parent)
            self._stored[key] = entry
        return entry

    def entries(self) -> list[dict[str, Any]]:
        """Every indexed entry (a snapshot)."""
        with self._lock:
            return list(self._stored.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._stored)

"""The robot's spool directory: where episode bags wait between recording and upload.

Layout (every move between these folders is one atomic ``rename`` on one file system)::

    <spool>/recording/<episode_id>.partial/   bag being written (or left by a crash)
    <spool>/ready/<episode_id>/                closed bag, waiting for upload
    <spool>/uploaded/<episode_id>/             acknowledged by the learner
    <spool>/quarantine/<name>/                 kept for a human, with REASON.txt

Nothing here deletes a bag. The uploader (``sop_ros.transport.spool``) moves
bags from ``ready/`` to ``uploaded/`` and prunes ``uploaded/``. A :class:`Spool` holds
no state besides its root path, so the recorder thread and the uploader
thread may each hold one; they touch different folders except through
``rename``, which the file system serialises.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from sop_ros.core.durable import fsync_dir
from sop_ros.storage.errors import BagError

__all__ = ["PARTIAL_SUFFIX", "REASON_FILE", "Spool", "dir_size_bytes", "fsync_dir", "fsync_tree"]

PARTIAL_SUFFIX = ".partial"
REASON_FILE = "REASON.txt"


def dir_size_bytes(path: Path) -> int:
    """Return the total size of the regular files under ``path`` (0 if it vanished)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                continue  # moved by another thread while we walked
    return total


def fsync_tree(path: Path) -> None:
    """Flush every file under ``path`` and the directory itself to stable storage."""
    for child in path.iterdir():
        if child.is_file():
            with child.open("rb") as file:
                os.fsync(file.fileno())
    fsync_dir(path)


class Spool:
    """Paths and atomic moves of the spool directory rooted at ``root``."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.recording = self.root / "recording"
        self.ready = self.root / "ready"
        self.uploaded = self.root / "uploaded"
        self.quarantine = self.root / "quarantine"

    def create(self) -> Spool:
        """Create the four folders if missing; returns ``self``.

        Raises:
            BagError: a folder cannot be created.
        """
        for folder in (self.recording, self.ready, self.uploaded, self.quarantine):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise BagError(f"cannot create spool folder {folder}: {err}") from None
        return self

    def partial_path(self, episode_id: str) -> Path:
        """Return where the bag of a running episode lives."""
        return self.recording / f"{episode_id}{PARTIAL_SUFFIX}"

    def partials(self) -> list[Path]:
        """Return the bags left in ``recording/``, oldest first."""
        return _by_mtime(p for p in self.recording.glob(f"*{PARTIAL_SUFFIX}") if p.is_dir())

    def ready_bags(self) -> list[Path]:
        """Return the closed bags waiting for upload, oldest first."""
        return _by_mtime(p for p in self.ready.iterdir() if p.is_dir() and not p.name.startswith("."))

    def pending_bytes(self) -> int:
        """Return the bytes of bags not yet uploaded (``ready/`` plus ``recording/``)."""
        return dir_size_bytes(self.ready) + dir_size_bytes(self.recording)

    def publish(self, bag: Path, episode_id: str) -> Path:
        """Atomically move the closed bag ``bag`` to ``ready/<episode_id>``; returns the new path.

        Raises:
            BagError: a bag of that episode is already waiting (nothing is moved).
        """
        return self._move(bag, self.ready / episode_id)

    def quarantine_bag(self, bag: Path, reason: str) -> Path:
        """Move ``bag`` to ``quarantine/`` (never overwriting) and record ``reason`` beside it.

        Returns:
            The bag's new path; its ``REASON.txt`` says why it is there.
        """
        name = bag.name
        target = self.quarantine / name
        counter = 1
        while target.exists():
            counter += 1
            target = self.quarantine / f"{name}.{counter}"
        moved = self._move(bag, target)
        (moved / REASON_FILE).write_text(reason.rstrip() + "\n")
        fsync_tree(moved)
        return moved

    def _move(self, source: Path, target: Path) -> Path:
        if not source.is_dir():
            raise BagError(f"{source} is not a bag directory, nothing moved")
        if target.exists():
            raise BagError(f"{target} exists already, not overwriting; {source} kept where it is")
        try:
            # rename() silently replaces an empty directory; the check above guards the rest.
            source.rename(target)
        except OSError as err:
            raise BagError(f"cannot move {source} to {target}: {err}; it stays where it was") from None
        fsync_dir(target.parent)
        fsync_dir(source.parent)
        return target


def _by_mtime(paths: Iterable[Path]) -> list[Path]:
    return sorted(paths, key=lambda p: (p.stat().st_mtime_ns, p.name))

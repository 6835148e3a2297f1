"""The robot's spool directory: where episode bags wait between recording and upload.

Layout (every move between these folders is one atomic ``rename`` on one file system)::

    <spool>/recording/<episode_id>.partial/   bag being written (or left by a crash)
    <spool>/ready/<episode_id>/                closed bag, waiting for upload
    <spool>/uploaded/<name>/                   committed by the learner
    <spool>/quarantine/<name>/                 kept for a human, with REASON.txt

This module is the only place that knows the layout: the recorder
(``sop_ros.storage``) writes, publishes and quarantines bags through a
:class:`Spool`, the uploader (``sop_ros.transport.spool``) marks them
uploaded, quarantines the ones the learner refuses and prunes ``uploaded/``.

Every move is a ``rename`` followed by an fsync of both directories, and no
move overwrites anything: a name already taken in ``quarantine/`` or
``uploaded/`` gets a ``~2``, ``~3``… suffix, and a bag already waiting in
``ready/`` makes :meth:`Spool.publish` fail with the source kept where it is.
The one deletion is :meth:`Spool.prune_uploaded`, and it deletes only bags
the learner committed.

Threads: a :class:`Spool` holds no state besides its paths, so the recorder
thread and the uploader thread may each hold one. They write different
folders (the recorder ``recording/`` and ``ready/``, the uploader
``uploaded/``) and meet only through ``rename``, which the file system
serialises; both may quarantine, which is why a quarantine never overwrites.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from sop_ros.core.durable import fsync_dir, fsync_tree
from sop_ros.core.errors import BagError

__all__ = ["PARTIAL_SUFFIX", "REASON_FILE", "Spool", "dir_size_bytes"]

PARTIAL_SUFFIX = ".partial"
REASON_FILE = "REASON.txt"
# Joins a bag's name and a copy number when an earlier copy of its episode is kept.
COPY_MARK = "~"


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
        """Return the closed bags waiting for upload, oldest (by modification time, then name) first."""
        return _by_mtime(p for p in self.ready.iterdir() if p.is_dir() and not p.name.startswith("."))

    def closed_bags(self) -> list[Path]:
        """Every closed bag: waiting in ``ready/``, committed in ``uploaded/`` or kept in ``quarantine/``."""
        folders = (self.ready, self.uploaded, self.quarantine)
        return [p for folder in folders if folder.is_dir() for p in folder.iterdir() if p.is_dir()]

    def episode_id(self, bag: Path) -> str:
        """Return the episode a closed bag holds.

        That is its name, less the ``~<n>`` that :meth:`mark_uploaded` or
        :meth:`quarantine_bag` appends to keep an earlier copy of the same episode
        (``~`` is never part of an episode id).
        """
        stem, tilde, counter = bag.name.rpartition(COPY_MARK)
        if tilde and counter.isdigit() and bag.parent in (self.uploaded, self.quarantine):
            return stem
        return bag.name

    def pending_bytes(self) -> int:
        """Return the bytes of bags not yet uploaded (``ready/`` plus ``recording/``)."""
        return dir_size_bytes(self.ready) + dir_size_bytes(self.recording)

    def publish(self, bag: Path, episode_id: str) -> Path:
        """Atomically move the closed bag ``bag`` to ``ready/<episode_id>``; returns the new path.

        Raises:
            BagError: a bag of that episode is already waiting (nothing is moved).
        """
        return self._move(bag, self.ready / episode_id)

    def mark_uploaded(self, bag: Path) -> Path:
        """Move ``bag`` (committed by the learner) to ``uploaded/``, never overwriting; returns its new path.

        An earlier copy of the same episode already in ``uploaded/`` is kept: this one
        gets a numbered name, and :meth:`prune_uploaded` decides what goes.

        Raises:
            BagError: ``bag`` is not a directory or cannot be moved (it stays where it was).
        """
        return self._move(bag, _free_name(self.uploaded, bag.name))

    def quarantine_bag(self, bag: Path, reason: str) -> Path:
        """Move ``bag`` to ``quarantine/`` (never overwriting) and record ``reason`` beside it.

        Returns:
            The bag's new path; its ``REASON.txt`` says why it is there.

        Raises:
            BagError: ``bag`` is not a directory or cannot be moved (it stays where it was).
        """
        moved = self._move(bag, _free_name(self.quarantine, bag.name))
        (moved / REASON_FILE).write_text(reason.rstrip() + "\n")
        fsync_tree(moved)
        return moved

    def prune_uploaded(self, *, keep: int, keep_bytes: int) -> list[Path]:
        """Delete the oldest uploaded bags beyond ``keep`` bags or ``keep_bytes`` bytes.

        Args:
            keep: Uploaded bags kept, newest first; -1 keeps any number.
            keep_bytes: Total size of uploaded bags kept; 0 means no size limit.

        Returns:
            The bags deleted.
        """
        if keep < 0 and keep_bytes == 0:
            return []
        bags = sorted(self.uploaded.iterdir(), key=lambda p: p.stat().st_mtime_ns, reverse=True)
        removed = []
        total = 0
        for i, bag in enumerate(bags):
            total += dir_size_bytes(bag)
            if (keep >= 0 and i >= keep) or (keep_bytes and total > keep_bytes):
                shutil.rmtree(bag, ignore_errors=True)
                removed.append(bag)
        return removed

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


def _free_name(folder: Path, name: str) -> Path:
    """Return ``folder/name``, or ``folder/name~<n>`` for the first ``n`` not taken."""
    target = folder / name
    counter = 1
    while target.exists():
        counter += 1
        target = folder / f"{name}{COPY_MARK}{counter}"
    return target


def _by_mtime(paths: Iterable[Path]) -> list[Path]:
    return sorted(paths, key=lambda p: (p.stat().st_mtime_ns, p.name))

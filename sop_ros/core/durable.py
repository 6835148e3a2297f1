"""Durable file-system steps: data and directory entries on disk before the next step relies on them."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["fsync_dir", "fsync_file", "fsync_tree", "write_durably"]


def fsync_dir(path: Path) -> None:
    """Make the entries of directory ``path`` (creations, renames, removals) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Flush the data of file ``path`` to stable storage."""
    with path.open("rb") as file:
        os.fsync(file.fileno())


def fsync_tree(path: Path) -> None:
    """Flush every file directly under ``path`` and the directory itself to stable storage."""
    for child in path.iterdir():
        if child.is_file():
            fsync_file(child)
    fsync_dir(path)


def write_durably(path: Path, data: bytes | str) -> None:
    """Replace ``path`` with ``data`` atomically and durably (temp file, fsync, rename, fsync dir).

    A reader sees the old file or the new one, never a mix; after a crash the new one
    is there only if the rename reached the disk, and then whole.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as out:
        out.write(data.encode() if isinstance(data, str) else data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)

"""The robot's upload spool: finished bags wait in ``ready/`` until the learner commits them.

Layout under ``spool_dir``:

- ``ready/<episode_id>/``: finished bags. The recorder writes a bag elsewhere
  and renames it in here when it is closed, so a bag in ``ready/`` is complete.
- ``uploaded/<episode_id>/``: bags the learner committed (moved only after the
  commit ack); the oldest are deleted beyond the retention limits.
- ``quarantine/<episode_id>/`` with ``REASON.txt`` inside: bags the learner
  refused for good; kept for a human to look at, never deleted automatically.
  (The same layout as ``sop_ros.storage.Spool``, which the recorder uses.)

Threads: a SpoolUploader is driven by one thread (``run`` or repeated
``run_once`` calls); recording never waits for it, so a dead learner only makes
bags queue in ``ready/``.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sop_ros.core.config import check_ranges, setting
from sop_ros.core.errors import BagError, TransportError
from sop_ros.transport.errors import BagRejectedError
from sop_ros.transport.upload import BagUploader, UploadProgress, UploadResult

__all__ = ["SpoolConfig", "SpoolUploader"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class SpoolConfig:
    """Settings of the robot's upload spool."""

    # Time between scans of ready/ when it is empty or the learner is unreachable (s).
    poll_period_s: float = setting(2.0, "time between scans of ready/", unit="s", low=0.01, high=3600.0)
    # Uploaded bags kept on the robot (newest first); 0 deletes each after its commit; -1 keeps all.
    keep_uploaded: int = setting(-1, "uploaded bags kept; -1 keeps all", low=-1)
    # Total size of uploaded bags kept (bytes); 0 means no size limit.
    keep_uploaded_bytes: int = setting(0, "size of uploaded bags kept; 0 = no limit", unit="B", low=0)

    def __post_init__(self) -> None:
        check_ranges(self)


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class SpoolUploader:
    """Uploads every bag in ``<spool_dir>/ready/``, oldest first.

    Args:
        uploader: The robot's BagUploader.
        spool_dir: Spool root (``ready/``, ``uploaded/``, ``quarantine/`` are made on demand).
        config: Settings.
        on_uploaded: Called with each committed upload's result.
        progress: Passed to every upload.
    """

    def __init__(
        self,
        uploader: BagUploader,
        spool_dir: Path,
        *,
        config: SpoolConfig | None = None,
        on_uploaded: Callable[[UploadResult], None] | None = None,
        progress: Callable[[UploadProgress], None] | None = None,
    ):
        self.uploader = uploader
        self.config = config or SpoolConfig()
        self.ready = Path(spool_dir) / "ready"
        self.uploaded = Path(spool_dir) / "uploaded"
        self.quarantine = Path(spool_dir) / "quarantine"
        for path in (self.ready, self.uploaded, self.quarantine):
            path.mkdir(parents=True, exist_ok=True)
        self._on_uploaded = on_uploaded
        self._progress = progress

    def pending(self) -> list[Path]:
        """Bags waiting in ready/, oldest (by modification time, then name) first."""
        bags = [p for p in self.ready.iterdir() if p.is_dir() and not p.name.startswith(".")]
        return sorted(bags, key=lambda p: (p.stat().st_mtime_ns, p.name))

    def run_once(self) -> list[UploadResult]:
        """Upload every pending bag; stop at the first one the learner cannot take now.

        Returns:
            The results of the bags committed in this pass.
        """
        results = []
        for bag in self.pending():
            try:
                result = self.uploader.upload(bag, episode_id=bag.name, progress=self._progress)
            except BagRejectedError as err:
                kept = self._quarantine(bag, f"learner rejected it: {err.reason}")
                _log.error("learner rejected %s (kept in %s): %s", bag.name, kept, err.reason)
                continue
            except BagError as err:
                kept = self._quarantine(bag, f"not an uploadable bag: {err}")
                _log.error("%s is not an uploadable bag (kept in %s): %s", bag.name, kept, err)
                continue
            except TransportError as err:
                _log.warning("learner unreachable, %d bags wait: %s", len(self.pending()), err)
                break
            self._move(bag, self.uploaded)
            results.append(result)
            if self._on_uploaded is not None:
                self._on_uploaded(result)
        self._apply_retention()
        return results

    def run(self, stop: threading.Event) -> None:
        """Call :meth:`run_once` until ``stop`` is set, sleeping ``poll_period_s`` between passes."""
        while not stop.is_set():
            self.run_once()
            stop.wait(self.config.poll_period_s)

    def _quarantine(self, bag: Path, reason: str) -> Path:
        target = self.quarantine / bag.name
        counter = 1
        while target.exists():  # never overwrite an earlier quarantined copy
            counter += 1
            target = self.quarantine / f"{bag.name}.{counter}"
        bag.rename(target)
        (target / "REASON.txt").write_text(reason.rstrip() + "\n")
        return target

    def _move(self, bag: Path, target_dir: Path) -> None:
        target = target_dir / bag.name
        if target.exists():
            shutil.rmtree(target)  # an older copy of the same episode; the new one is the one acked
        bag.rename(target)

    def _apply_retention(self) -> None:
        keep, keep_bytes = self.config.keep_uploaded, self.config.keep_uploaded_bytes
        if keep < 0 and keep_bytes == 0:
            return
        bags = sorted(self.uploaded.iterdir(), key=lambda p: p.stat().st_mtime_ns, reverse=True)
        total = 0
        for i, bag in enumerate(bags):
            total += _dir_size(bag)
            if (keep >= 0 and i >= keep) or (keep_bytes and total > keep_bytes):
                shutil.rmtree(bag, ignore_errors=True)

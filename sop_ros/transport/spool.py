"""The robot's upload spool: finished bags wait in ``ready/`` until the learner commits them.

The spool's layout and its durable, never-overwriting moves are
:class:`sop_ros.core.spool.Spool`'s, the same the recorder writes through: a
bag leaves ``ready/`` for ``uploaded/`` only after the learner's commit ack,
and the oldest uploaded bags are deleted beyond the retention limits; a bag
the learner refuses for good goes to ``quarantine/`` with ``REASON.txt``,
never deleted automatically.

One bad bag never blocks the ones behind it: a bag whose upload fails while
the learner answers (an internal error, a busy learner) waits out its own
back-off (doubling from ``poll_period_s`` up to ``max_backoff_s``) while the
bags behind it go on; only an unreachable learner (no answer at all) ends a
pass early, since every other bag would fail the same way. A bag the learner
refuses for good (``retry: false``) is quarantined with the learner's reason.

Threads: a SpoolUploader is driven by one thread (``run`` or repeated
``run_once`` calls), which alone owns the back-off table; recording never
waits for it, so a dead learner only makes bags queue in ``ready/``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sop_ros.core.config import check_ranges, setting
from sop_ros.core.errors import BagError, TransportError
from sop_ros.core.spool import Spool
from sop_ros.transport.errors import BagRejectedError
from sop_ros.transport.session import RemoteError
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
    # Longest wait before a bag whose uploads keep failing is tried again (s).
    max_backoff_s: float = setting(
        600.0, "longest back-off of one failing bag", unit="s", low=0.0, high=86400.0
    )

    def __post_init__(self) -> None:
        check_ranges(self)


class SpoolUploader:
    """Uploads every bag in ``<spool_dir>/ready/``, oldest first.

    Args:
        uploader: The robot's BagUploader.
        spool_dir: Spool root (its folders are created if missing).
        config: Settings.
        on_uploaded: Called with each committed upload's result.
        progress: Passed to every upload.
        clock: Monotonic clock of the per-bag back-off (tests pass a fake one).
    """

    def __init__(
        self,
        uploader: BagUploader,
        spool_dir: Path,
        *,
        config: SpoolConfig | None = None,
        on_uploaded: Callable[[UploadResult], None] | None = None,
        progress: Callable[[UploadProgress], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.uploader = uploader
        self.config = config or SpoolConfig()
        self.spool = Spool(spool_dir).create()
        self._on_uploaded = on_uploaded
        self._progress = progress
        self._clock = clock
        # Bag name -> (consecutive failures, clock time before which it is not tried again).
        self._backoff: dict[str, tuple[int, float]] = {}

    def pending(self) -> list[Path]:
        """Bags waiting in ready/, oldest (by modification time, then name) first."""
        return self.spool.ready_bags()

    def run_once(self) -> list[UploadResult]:
        """Upload every pending bag not waiting out a back-off; stop early only if the learner is unreachable.

        Returns:
            The results of the bags committed in this pass.
        """
        results = []
        pending = self.pending()
        waiting = {p.name for p in pending}
        self._backoff = {name: b for name, b in self._backoff.items() if name in waiting}
        for bag in pending:
            failures, not_before = self._backoff.get(bag.name, (0, 0.0))
            if self._clock() < not_before:
                continue
            try:
                result = self.uploader.upload(bag, episode_id=bag.name, progress=self._progress)
            except BagRejectedError as err:
                self._quarantine(bag, f"learner rejected it: {err.reason}")
                continue
            except BagError as err:
                self._quarantine(bag, f"not an uploadable bag: {err}")
                continue
            except TransportError as err:
                if not isinstance(err.__cause__, RemoteError):  # no answer: not this bag's fault
                    _log.warning("learner unreachable, %d bags wait: %s", len(pending), err)
                    break
                delay = min(self.config.max_backoff_s, self.config.poll_period_s * 2**failures)
                self._backoff[bag.name] = (failures + 1, self._clock() + delay)
                _log.warning(
                    "%s failed (%s); next try in %.0f s, the bags behind it go on", bag.name, err, delay
                )
                continue
            self._backoff.pop(bag.name, None)
            try:
                self.spool.mark_uploaded(bag)
            except BagError as err:  # committed all the same; the next pass finds it stored and retries
                _log.error("%s is committed but stays in ready/: %s", bag.name, err)
            results.append(result)
            if self._on_uploaded is not None:
                self._on_uploaded(result)
        self._apply_retention()
        return results

    def backoff(self, name: str) -> tuple[int, float]:
        """(consecutive failures, seconds until the next try) of bag ``name``; (0, 0.0) when none."""
        failures, not_before = self._backoff.get(name, (0, 0.0))
        return failures, max(0.0, not_before - self._clock())

    def run(self, stop: threading.Event) -> None:
        """Call :meth:`run_once` until ``stop`` is set, sleeping ``poll_period_s`` between passes."""
        while not stop.is_set():
            self.run_once()
            stop.wait(self.config.poll_period_s)

    def _quarantine(self, bag: Path, reason: str) -> None:
        self._backoff.pop(bag.name, None)
        try:
            kept = self.spool.quarantine_bag(bag, reason)
        except BagError as err:  # e.g. removed by hand meanwhile; nothing else to keep
            _log.error("%s should be quarantined (%s) but stays: %s", bag.name, reason, err)
            return
        _log.error("%s quarantined in %s: %s", bag.name, kept, reason)

    def _apply_retention(self) -> None:
        self.spool.prune_uploaded(keep=self.config.keep_uploaded, keep_bytes=self.config.keep_uploaded_bytes)

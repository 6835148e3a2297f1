"""Loads newly stored episodes off the training thread, handing them back in arrival order.

Threads: :meth:`EpisodeIndexer.submit` may be called from any thread (the
ingest server's workers) and only appends to a bounded, locked queue. A
small pool of loader threads reads bags (the slow part: every JPEG frame of
an episode comes off disk). Everything else is called from the training
thread, which alone decides when loaded episodes join the buffers.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from sop_ros.core.errors import SopError
from sop_ros.learner.buffers import EpisodeLoader
from sop_ros.learner.types import EpisodeLike

__all__ = ["EpisodeIndexer"]

_log = logging.getLogger(__name__)


class EpisodeIndexer:
    """Queue of stored bags to load, with de-duplication and background loading.

    Args:
        load: Reads one bag directory.
        max_pending: Most submitted paths waiting; beyond it a submission is dropped with a
            warning (the bag stays in the store and is indexed at the next restart).
        workers: Loader threads (0 loads on the calling thread).
    """

    def __init__(self, load: EpisodeLoader, *, max_pending: int, workers: int = 1) -> None:
        self._load = load
        self._max_pending = max_pending
        self._submitted: deque[Path] = deque()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="sop-load") if workers else None
        # Training thread only: paths ever scheduled, and loads in flight in scheduling order.
        self._seen: set[Path] = set()
        self._loading: deque[tuple[Path, Future[EpisodeLike]]] = deque()
        self.failed = 0

    def submit(self, path: Path) -> bool:
        """Queue a stored bag; safe from any thread. False when the queue was full."""
        with self._lock:
            if len(self._submitted) >= self._max_pending:
                _log.warning(
                    "episode queue full (%d); %s waits for the next restart", self._max_pending, path
                )
                return False
            self._submitted.append(Path(path))
            return True

    def take_submitted(self) -> list[Path]:
        """Remove and return everything submitted so far."""
        with self._lock:
            paths, self._submitted = list(self._submitted), deque()
        return paths

    def schedule(self, paths: list[Path]) -> None:
        """Start loading every path not seen before."""
        for path in map(Path, paths):
            if path in self._seen:
                continue
            self._seen.add(path)
            future: Future[EpisodeLike]
            if self._pool is None:
                future = Future()
                try:
                    future.set_result(self._load(path))
                except Exception as err:  # reported in ready(), like a pool failure
                    future.set_exception(err)
            else:
                future = self._pool.submit(self._load, path)
            self._loading.append((path, future))

    def ready(self, *, wait: bool = False) -> list[EpisodeLike]:
        """Loaded episodes, oldest first, stopping at the first still loading (unless ``wait``).

        A bag that fails to load is logged and skipped; it stays in the store.
        """
        out = []
        while self._loading and (wait or self._loading[0][1].done()):
            path, future = self._loading.popleft()
            try:
                out.append(future.result())
            except SopError as err:
                self.failed += 1
                _log.warning("cannot index %s: %s", path, err)
        return out

    @property
    def in_flight(self) -> int:
        """Bags scheduled but not yet handed back."""
        return len(self._loading)

    def close(self) -> None:
        """Stop the loader threads (pending loads finish first)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)

"""Replay buffers: per task an online buffer that grows and an offline buffer that does not.

A buffer keeps the episodes it was given (whose camera frames stay compressed
until a sample is decoded) and an index of the steps that may be trained on.
The index is one int array of step numbers per episode plus a running count,
so a million indexed steps cost a few megabytes.

Threads: an :class:`OnlineBuffer` is appended to by whichever thread indexes
new episodes (the learner's training thread in :class:`sop_ros.learner.loop.Learner`,
but an ingest thread may do it directly) while the training thread samples
from it; one lock guards its episode list and index. An :class:`OfflineBuffer`
is filled once at start-up and is read-only afterwards.
"""

from __future__ import annotations

import bisect
import functools
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from pathlib import Path

import numpy as np

from sop_ros.core.errors import BagError, ConfigError
from sop_ros.learner.types import EpisodeLike, SampleRef, TrainingSample

__all__ = [
    "EpisodeLoader",
    "FrameCache",
    "OfflineBuffer",
    "OnlineBuffer",
    "ReplayBuffers",
    "StepSelector",
    "all_steps",
    "find_bags",
    "make_sample",
    "stored_episode_dirs",
]

_log = logging.getLogger(__name__)

# Loads one bag directory into an episode (``sop_ros.storage.load_episode`` in production).
EpisodeLoader = Callable[[Path], EpisodeLike]
# Returns the step numbers of ``episode`` worth training on (an algorithm decides).
StepSelector = Callable[[EpisodeLike], np.ndarray]


def all_steps(episode: EpisodeLike) -> np.ndarray:
    """Select every step of ``episode``."""
    return np.arange(len(episode), dtype=np.int32)


class FrameCache:
    """Decoded camera frames kept in memory up to a byte budget; the least recently used go first.

    A learner draws each stored frame many times (a 4-robot study run samples
    every step about forty times), and for small frames JPEG decoding is most of
    the input pipeline's work. Cached frames are read-only and shared: callers
    must copy before writing. Thread-safe (the decoding threads share one cache).

    Args:
        max_bytes: Budget for the decoded pixels (0 keeps nothing).
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._frames: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._frames)

    def get(self, key: Hashable, decode: Callable[[], np.ndarray]) -> np.ndarray:
        """Return the frame cached under ``key``, decoding (outside the lock) and keeping it on a miss."""
        with self._lock:
            frame = self._frames.get(key)
            if frame is not None:
                self._frames.move_to_end(key)
                self.hits += 1
                return frame
            self.misses += 1
        frame = decode()
        frame.flags.writeable = False
        if frame.nbytes > self.max_bytes:
            return frame
        with self._lock:
            if key not in self._frames:
                self._frames[key] = frame
                self.bytes += frame.nbytes
            while self.bytes > self.max_bytes:
                _, old = self._frames.popitem(last=False)
                self.bytes -= old.nbytes
        return frame


def make_sample(episode: EpisodeLike, ref: SampleRef, frames: FrameCache | None = None) -> TrainingSample:
    """Decode step ``ref.step`` of ``episode`` into a training sample (frames through ``frames``)."""
    steps = len(episode)
    if not 0 <= ref.step < steps:
        raise ConfigError(f"step {ref.step} out of range 0..{steps - 1} in episode {episode.meta.episode_id}")
    if frames is None:
        images = {camera: episode.image(camera, ref.step) for camera in episode.cameras}
    else:
        images = {
            camera: frames.get((ref, camera), functools.partial(episode.image, camera, ref.step))
            for camera in episode.cameras
        }
    return TrainingSample(
        ref=ref,
        images=images,
        state=np.asarray(episode.states[ref.step], dtype=np.float32),
        instruction=episode.meta.instruction,
        actions=np.asarray(episode.action_chunk(ref.step), dtype=np.float32),
        is_human=bool(episode.is_human[ref.step]),
        steps_to_end=steps - ref.step,
        outcome=episode.meta.outcome,
    )


def find_bags(root: Path) -> list[Path]:
    """Return every bag directory (one holding ``metadata.yaml``) under ``root``, sorted by path."""
    if not root.is_dir():
        raise ConfigError(f"{root} is not a directory of bags")
    return sorted(p.parent for p in root.rglob("metadata.yaml"))


def stored_episode_dirs(store_dir: Path) -> list[Path]:
    """Bag directories of an episode store (``<task>/<robot>/<episode_id>/``) in arrival order.

    Arrival order comes from the store's ``index.jsonl``; bags committed but
    missing from the index (a crash between the two) follow, sorted by path.
    Hidden directories (partial uploads) and ``quarantine/`` are never listed.
    """
    if not store_dir.is_dir():
        return []
    ordered: dict[Path, None] = {}
    index = store_dir / "index.jsonl"
    if index.is_file():
        for line in index.read_text().splitlines():
            try:
                path = store_dir / json.loads(line)["path"]
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line after a crash; the bag itself is found below
            if (path / "metadata.yaml").is_file():
                ordered[path] = None
    for meta in sorted(store_dir.glob("*/*/*/metadata.yaml")):
        top = meta.relative_to(store_dir).parts[0]
        if not top.startswith(".") and top != "quarantine":
            ordered.setdefault(meta.parent, None)
    return list(ordered)


class _StepIndex:
    """Episodes of one task and the steps of each that may be sampled. Not thread-safe."""

    def __init__(self, task: str, online: bool) -> None:
        self.task = task
        self.online = online
        self.episodes: list[EpisodeLike] = []
        self.steps: list[np.ndarray] = []
        # ends[i] = number of indexed steps in episodes 0..i.
        self.ends: list[int] = []

    @property
    def size(self) -> int:
        return self.ends[-1] if self.ends else 0

    def add(self, episode: EpisodeLike, steps: np.ndarray) -> int:
        if episode.meta.task != self.task:
            raise ConfigError(
                f"episode {episode.meta.episode_id} is for task {episode.meta.task!r}, "
                f"not this buffer's {self.task!r}"
            )
        steps = np.asarray(steps, dtype=np.int32)
        if steps.size and (steps.min() < 0 or steps.max() >= len(episode)):
            raise ConfigError(f"selected steps out of range for episode {episode.meta.episode_id}")
        self.episodes.append(episode)
        self.steps.append(steps)
        self.ends.append(self.size + int(steps.size))
        return int(steps.size)

    def refs(self, positions: Iterable[int]) -> list[SampleRef]:
        out = []
        for position in positions:
            episode = bisect.bisect_right(self.ends, position)
            start = self.ends[episode - 1] if episode else 0
            out.append(SampleRef(self.task, self.online, episode, int(self.steps[episode][position - start])))
        return out


class _Buffer:
    """Shared read side of both buffers."""

    def __init__(self, task: str, *, online: bool, select: StepSelector = all_steps) -> None:
        self._index = _StepIndex(task, online)
        self._select = select
        self._lock = threading.Lock()

    @property
    def task(self) -> str:
        """Task every episode here belongs to."""
        return self._index.task

    @property
    def num_steps(self) -> int:
        """Number of steps that may be sampled."""
        with self._lock:
            return self._index.size

    @property
    def num_episodes(self) -> int:
        """Number of episodes held (including ones with no selected step)."""
        with self._lock:
            return len(self._index.episodes)

    def episodes(self) -> list[EpisodeLike]:
        """A snapshot of the episodes held, in arrival order."""
        with self._lock:
            return list(self._index.episodes)

    def sample_refs(self, count: int, rng: np.random.Generator) -> list[SampleRef]:
        """Draw ``count`` indexed steps uniformly with replacement."""
        with self._lock:
            if self._index.size == 0:
                raise ConfigError(f"cannot sample from the empty buffer of task {self.task!r}")
            positions = rng.integers(0, self._index.size, size=count)
            return self._index.refs(int(p) for p in positions)

    def get(self, ref: SampleRef, frames: FrameCache | None = None) -> TrainingSample:
        """Decode the sample ``ref`` points at (frames through ``frames`` when given)."""
        with self._lock:
            episode = self._index.episodes[ref.episode]
        # Decoding happens outside the lock so appends never wait on JPEG work.
        return make_sample(episode, ref, frames)

    def _add(self, episode: EpisodeLike) -> int:
        steps = self._select(episode)
        with self._lock:
            return self._index.add(episode, steps)


class OnlineBuffer(_Buffer):
    """Episodes the fleet uploaded for one task; grows while training runs."""

    def __init__(self, task: str, *, select: StepSelector = all_steps) -> None:
        super().__init__(task, online=True, select=select)

    def append(self, episode: EpisodeLike) -> int:
        """Index ``episode``'s selected steps; safe to call from any thread. Returns how many."""
        return self._add(episode)


class OfflineBuffer(_Buffer):
    """Static demonstrations of one task, loaded once (replaying recorded bags)."""

    def __init__(
        self, task: str, episodes: Sequence[EpisodeLike] = (), *, select: StepSelector = all_steps
    ) -> None:
        super().__init__(task, online=False, select=select)
        for episode in episodes:
            self._add(episode)

    @classmethod
    def from_directory(
        cls,
        root: Path,
        *,
        load: EpisodeLoader,
        select: StepSelector = all_steps,
    ) -> dict[str, OfflineBuffer]:
        """Load every bag under ``root`` into one offline buffer per task.

        A bag that fails to load is skipped with a warning naming it, so one
        broken recording does not stop training on the rest.

        Raises:
            ConfigError: ``root`` is not a directory or holds no loadable bag.
        """
        by_task: dict[str, list[EpisodeLike]] = {}
        bags = find_bags(root)
        for bag in bags:
            try:
                episode = load(bag)
            except BagError as err:
                _log.warning("skipping offline bag %s: %s", bag, err)
                continue
            by_task.setdefault(episode.meta.task, []).append(episode)
        if not by_task:
            raise ConfigError(f"no loadable bag under {root} ({len(bags)} found)")
        return {task: cls(task, episodes, select=select) for task, episodes in sorted(by_task.items())}


class ReplayBuffers:
    """The online and offline buffers of every task, as the sampler and learner see them.

    Threads: the training thread owns this object; only the buffers' own
    ``append`` may be called from elsewhere.
    """

    def __init__(
        self,
        *,
        offline: dict[str, OfflineBuffer] | None = None,
        select_online: StepSelector = all_steps,
        frame_cache_bytes: int = 0,
    ) -> None:
        self.offline: dict[str, OfflineBuffer] = dict(offline or {})
        self.online: dict[str, OnlineBuffer] = {}
        self._select_online = select_online
        # Episodes are never dropped, so a ref names the same frame for the buffers' lifetime.
        self.frames = FrameCache(frame_cache_bytes) if frame_cache_bytes > 0 else None

    def add_online(self, episode: EpisodeLike) -> int:
        """Index an uploaded episode in its task's online buffer (made on first use)."""
        task = episode.meta.task
        if task not in self.online:
            self.online[task] = OnlineBuffer(task, select=self._select_online)
        return self.online[task].append(episode)

    def tasks(self) -> list[str]:
        """Tasks with at least one sampleable step, sorted."""
        names = {t for t, b in self.online.items() if b.num_steps} | {
            t for t, b in self.offline.items() if b.num_steps
        }
        return sorted(names)

    def online_steps(self, task: str) -> int:
        """Sampleable online steps of ``task``."""
        buffer = self.online.get(task)
        return buffer.num_steps if buffer else 0

    def offline_steps(self, task: str) -> int:
        """Sampleable offline steps of ``task``."""
        buffer = self.offline.get(task)
        return buffer.num_steps if buffer else 0

    def buffer(self, task: str, online: bool) -> _Buffer:
        """The buffer of ``task`` on the given side."""
        side = self.online if online else self.offline
        if task not in side:
            raise ConfigError(f"task {task!r} has no {'online' if online else 'offline'} buffer")
        return side[task]

    def get(self, ref: SampleRef) -> TrainingSample:
        """Decode the sample ``ref`` points at (its frames from the cache when they are there)."""
        return self.buffer(ref.task, ref.online).get(ref, self.frames)

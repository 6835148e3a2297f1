"""The cloud learner: ingest → sample → update, publishing weights every K steps.

One :class:`Learner` runs per process; under ``torchrun --nproc-per-node N``
every rank runs one. Rank 0 takes newly stored episodes from the ingest
server and tells the other ranks which bags to load (they read the same
store), so every rank holds identical buffers; each rank samples its own
share of the global batch with its own seed, gradients are averaged by DDP
inside the algorithm, and rank 0 alone publishes, logs and checkpoints.

Threads: :meth:`Learner.submit_episode` may be called from any thread (the
ingest server's workers); it only appends a path to the indexer's bounded,
locked queue. One loader thread (see :mod:`sop_ros.learner.indexer`) reads
bags; a small pool decodes a batch's JPEG frames. Everything else (buffers'
contents, sampler, algorithm, policy, logging, checkpoints) belongs to the
single thread that calls :meth:`Learner.train_step` / :meth:`Learner.run`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sop_ros.core.config import check_ranges, setting
from sop_ros.core.errors import ConfigError, InputError, SopError
from sop_ros.core.types import format_version, parse_version
from sop_ros.core.weights import WeightsManifest
from sop_ros.learner.algorithms import Algorithm, UpdateResult
from sop_ros.learner.buffers import (
    EpisodeLoader,
    OfflineBuffer,
    OnlineBuffer,
    ReplayBuffers,
    stored_episode_dirs,
)
from sop_ros.learner.checkpoint import Checkpoint, latest_checkpoint, load_checkpoint, save_checkpoint
from sop_ros.learner.distributed import DistContext
from sop_ros.learner.indexer import EpisodeIndexer
from sop_ros.learner.metrics import FleetStats, TrainingLog
from sop_ros.learner.sampler import TaskBalancedSampler
from sop_ros.learner.stability import PublishGuards, validation_refs
from sop_ros.learner.types import SampleRef, TrainablePolicy, TrainingSample

__all__ = ["Learner", "LearnerConfig", "PublishFn"]

_log = logging.getLogger(__name__)

# Hands a finished weights file and its manifest to the fleet (e.g. WeightsPublisher.publish).
PublishFn = Callable[[Path, WeightsManifest], None]


@dataclass(frozen=True, kw_only=True)
class LearnerConfig:
    """Cadences and sizes of the training loop."""

    batch_size: int = setting(32, "samples per rank per step (the global batch is this × ranks)", low=1)
    publish_every_steps: int = setting(25, "publish the trainable weights every this many steps", low=1)
    checkpoint_every_steps: int = setting(100, "write a checkpoint every this many steps", low=1)
    keep_checkpoints: int = setting(2, "checkpoints kept on disk", low=1)
    keep_weights_files: int = setting(3, "published weights files kept on disk", low=1)
    chunk_size_bytes: int = setting(4 << 20, "chunk size of published weights", unit="B", low=1)
    max_pending_episodes: int = setting(
        100_000, "stored episodes waiting to be indexed; beyond it new ones wait for a restart", low=1
    )
    fit_norm_stats: bool = setting(
        True, "fit state/action normalisation on the first data (off when initial weights carry their own)"
    )
    norm_stats_max_steps: int = setting(20_000, "steps read to fit state/action normalisation", low=1)
    load_in_background: bool = setting(
        True, "load new bags on a loader thread; they join the buffers at a later step"
    )
    decode_workers: int = setting(
        4, "threads decoding a batch's JPEG frames (0 = decode on the training thread)", low=0, high=64
    )
    frame_cache_mib: int = setting(
        1024,
        "decoded camera frames kept in memory (each is sampled many times; 0 = decode every time)",
        unit="MiB",
        low=0,
    )
    publish_average_decay: float = setting(
        0.99,
        "publish an exponential moving average of the trainable weights, this much of the old average "
        "kept per step (0 = publish the raw weights)",
        low=0.0,
        high=0.9999,
    )
    gate_samples: int = setting(
        0,
        "demonstration samples the publish gate checks each version's loss on "
        "(0 = no gate: every version is published)",
        low=0,
    )
    gate_tolerance: float = setting(
        0.1,
        "the gate refuses a version whose validation loss exceeds the last published one's "
        "by more than this fraction",
        low=0.0,
    )
    idle_sleep_s: float = setting(0.5, "wait between polls while no task has data", unit="s", low=0.0)
    progress_bar: bool = setting(True, "show a tqdm progress bar on rank 0")

    def __post_init__(self) -> None:
        check_ranges(self)


class Learner:
    """Trains one policy on every task's online and offline data and publishes it.

    Args:
        policy: The policy being trained (its trainable part is what travels).
        algorithm: Post-training algorithm built around ``policy``.
        buffers: Offline buffers already loaded; online ones are made as episodes arrive.
        sampler: Task-balanced sampler, seeded for this rank.
        load_episode: Reads one stored bag directory.
        publish: Called on rank 0 with each new weights file and its manifest.
        checkpoint_dir: Where checkpoints are written and resumed from.
        weights_dir: Where published weights files are written (default ``checkpoint_dir/weights``).
        store_dir: The episode store, re-indexed at :meth:`start` (None: nothing to re-index).
        log_dir: TensorBoard directory (None: no event file).
        config: Loop settings.
        clock: Monotonic seconds, for timings.
        dist: This process's rank and device.
    """

    def __init__(
        self,
        *,
        policy: TrainablePolicy,
        algorithm: Algorithm,
        buffers: ReplayBuffers,
        sampler: TaskBalancedSampler,
        load_episode: EpisodeLoader,
        publish: PublishFn,
        checkpoint_dir: Path,
        weights_dir: Path | None = None,
        store_dir: Path | None = None,
        log_dir: Path | None = None,
        config: LearnerConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        dist: DistContext | None = None,
    ) -> None:
        self.config = config or LearnerConfig()
        self.policy = policy
        self.algorithm = algorithm
        self.buffers = buffers
        self.sampler = sampler
        self.dist = dist or DistContext()
        self.checkpoint_dir = Path(checkpoint_dir)
        self.weights_dir = Path(weights_dir) if weights_dir else self.checkpoint_dir / "weights"
        self.store_dir = Path(store_dir) if store_dir else None
        self._publish = publish
        self._clock = clock
        self.step = 0
        self.version = 0
        self.episodes_ingested = 0
        self.fleet = FleetStats()
        self.log = TrainingLog(log_dir, enabled=self.dist.is_main)
        self._norm_fitted = False
        self.guards = PublishGuards(
            policy,
            average_decay=self.config.publish_average_decay,
            gate_samples=self.config.gate_samples,
            gate_tolerance=self.config.gate_tolerance,
            validation_samples=lambda count: self.decode_batch(
                validation_refs(self.buffers, count, seed=self.sampler.config.seed)
            ),
            log=self.log,
        )
        self._indexer = EpisodeIndexer(
            load_episode,
            max_pending=self.config.max_pending_episodes,
            workers=1 if self.config.load_in_background else 0,
        )
        workers = self.config.decode_workers
        # OpenCV releases the GIL while decoding, so threads decode frames in parallel.
        self._decoder = ThreadPoolExecutor(workers, thread_name_prefix="sop-decode") if workers else None

    # ---- any thread -------------------------------------------------------------------------

    def submit_episode(self, bag_dir: Path) -> None:
        """Queue a newly stored bag for indexing. Safe from any thread; only rank 0's queue is read.

        When the queue is full the bag is not queued (it stays in the store and
        is indexed at the next restart).
        """
        self._indexer.submit(Path(bag_dir))

    # ---- training thread --------------------------------------------------------------------

    def start(self) -> None:
        """Resume from the newest checkpoint (if any) and index every episode already stored."""
        path = latest_checkpoint(self.checkpoint_dir) if self.dist.is_main else None
        path = self.dist.broadcast(str(path) if path else None)
        if path is not None:
            self._restore(load_checkpoint(Path(path), map_location=self.dist.device))
        # Versions published after the checkpoint must never be reused: robots ignore a number they
        # have seen, so the next version starts above every weights file already written.
        newest = self._newest_published_version() if self.dist.is_main else 0
        self.version = max(self.version, self.dist.broadcast(newest))
        if self.store_dir is not None:
            found = stored_episode_dirs(self.store_dir) if self.dist.is_main else []
            self._indexer.schedule(self.dist.broadcast(found))
        self.sync_ingest()
        _log.info(
            "learner at step %d, version %d, %d episodes indexed",
            self.step,
            self.version,
            self.episodes_ingested,
        )

    def sync_ingest(self) -> None:
        """Index every bag submitted so far, waiting for their loads (every rank must call it)."""
        self._ingest(wait=True)

    def train_step(self) -> UpdateResult | None:
        """Index new episodes, then run one update; None (and no step) while no task has data."""
        self._ingest(wait=not self.config.load_in_background)
        has_data = bool(self.buffers.tasks())
        # Ranks may index a bag at different steps; all must agree before the collective update.
        if not all(self.dist.all_gather(has_data)):
            return None
        self._fit_norm_stats()
        refs = self.sampler.sample(self.buffers, self.config.batch_size)
        samples = self.decode_batch(refs)
        result = self.algorithm.update(samples)
        self.guards.after_update()
        everyone = self.dist.all_gather((refs, result.sample_losses.tolist()))
        all_refs = [ref for rank_refs, _ in everyone for ref in rank_refs]
        all_losses = np.array([loss for _, losses in everyone for loss in losses])
        self.sampler.update_losses(all_refs, all_losses)
        self.step += 1
        self._log_step(result, all_refs, all_losses)
        if self.step % self.config.publish_every_steps == 0:
            self.publish()
        if self.step % self.config.checkpoint_every_steps == 0:
            self.save_checkpoint()
        return result

    def decode_batch(self, refs: Sequence[SampleRef]) -> list[TrainingSample]:
        """Decode the samples ``refs`` point at, in order, as a training step does.

        One share of the batch per decoding thread (``decode_workers``), or all on
        the calling thread when there are none.
        """
        if self._decoder is None:
            return [self.buffers.get(ref) for ref in refs]
        # A share per thread, not a task per sample: small frames decode in tens of
        # microseconds, less than handing one sample to a thread costs.
        workers = self.config.decode_workers
        shares = [refs[i::workers] for i in range(workers)]
        decoded = list(self._decoder.map(lambda share: [self.buffers.get(ref) for ref in share], shares))
        # Back to the sampler's order (the losses it gets are matched to its refs).
        return [decoded[i % workers][i // workers] for i in range(len(refs))]

    def run(self, steps: int | None = None, *, stop: threading.Event | None = None) -> None:
        """Train until ``steps`` more steps are done or ``stop`` is set (checked between steps).

        With several ranks, ``stop`` must be set on every rank, or only ``steps`` be used.
        """
        target = None if steps is None else self.step + steps
        bar = tqdm(
            total=steps,
            initial=0,
            desc="learner",
            unit="step",
            disable=not (self.dist.is_main and self.config.progress_bar),
        )
        try:
            while (target is None or self.step < target) and not (stop and stop.is_set()):
                result = self.train_step()
                if result is None:
                    time.sleep(self.config.idle_sleep_s)
                    continue
                bar.update(1)
                bar.set_postfix(loss=f"{result.stats['loss']:.4f}", version=self.version)
        finally:
            bar.close()
            self.log.flush()

    def publish(self) -> WeightsManifest | None:
        """Publish the trainable weights (or their average) as a new version (rank 0 does the writing).

        With the publish gate on, a version whose validation loss regressed is not
        published (None; its number stays free) and training goes on.
        """
        with self.guards.published_weights():
            # Every rank judges the same weights on the same samples, so all agree.
            if not self.guards.admits(self.step):
                return None
            self.version += 1
            return self._write_version() if self.dist.is_main else None

    def _write_version(self) -> WeightsManifest | None:
        """Write the live trainable weights as version ``self.version`` and hand them to the fleet."""
        started = self._clock()
        self.weights_dir.mkdir(parents=True, exist_ok=True)
        path = self.weights_dir / f"{format_version(self.version)}.safetensors"
        self.policy.save_trainable(path, version=format_version(self.version))
        manifest = WeightsManifest.for_file(
            path,
            version=self.version,
            step=self.step,
            base_model_id=self.policy.base_model_id,
            config_hash=self.policy.config_hash,
            tensors=self.policy.trainable_specs(),
            chunk_size_bytes=self.config.chunk_size_bytes,
        )
        try:
            self._publish(path, manifest)
        except SopError as err:
            # Training goes on; robots get the next version. The number stays used.
            _log.error("publishing %s failed: %s", format_version(self.version), err)
            self.log.scalar("publish/failed_version", self.version, self.step)
            return None
        for old in sorted(self._weights_files())[: -self.config.keep_weights_files]:
            old[1].unlink(missing_ok=True)
        self.log.scalar("publish/seconds", self._clock() - started, self.step)
        self.log.scalar("publish/version", self.version, self.step)
        return manifest

    def save_checkpoint(self) -> Path | None:
        """Write a checkpoint (rank 0); every rank must call it, to hand over its sampler state."""
        samplers = self.dist.all_gather(self.sampler.state_dict())
        if not self.dist.is_main:
            return None
        checkpoint = Checkpoint(
            step=self.step,
            version=self.version,
            algorithm=self.algorithm.state_dict(),
            samplers=samplers,
            extra={"norm_fitted": self._norm_fitted, **self.guards.counters()},
            average=self.guards.average_state(),
        )
        version = format_version(self.version)
        return save_checkpoint(
            self.checkpoint_dir,
            checkpoint,
            write_trainable=lambda path: self.policy.save_trainable(path, version=version),
            keep=self.config.keep_checkpoints,
        )

    def close(self) -> None:
        """Stop loader and decode threads, flush logs (call save_checkpoint first to keep the last steps)."""
        if self._decoder is not None:
            self._decoder.shutdown(wait=True)
            self._decoder = None
        self._indexer.close()
        self.log.close()

    # ---- internals --------------------------------------------------------------------------

    def _restore(self, checkpoint: Checkpoint) -> None:
        # The policy's own file format carries its normalisation along with the tensors.
        self.policy.load_trainable(checkpoint.trainable_file)
        self.algorithm.load_state_dict(checkpoint.algorithm)
        rank = self.dist.rank
        if rank < len(checkpoint.samplers):
            self.sampler.load_state_dict(checkpoint.samplers[rank])
        else:
            # More ranks than when saved: share the loss windows, keep this rank's own seed.
            state = dict(checkpoint.samplers[0])
            state["rng"] = self.sampler.state_dict()["rng"]
            self.sampler.load_state_dict(state)
        self.step, self.version = checkpoint.step, checkpoint.version
        self._norm_fitted = bool(checkpoint.extra.get("norm_fitted", False))
        self.guards.restore(checkpoint.extra, checkpoint.average)

    def _weights_files(self) -> list[tuple[int, Path]]:
        found = []
        for path in self.weights_dir.glob("v*.safetensors") if self.weights_dir.is_dir() else ():
            with contextlib.suppress(InputError):
                found.append((parse_version(path.stem), path))
        return found

    def _newest_published_version(self) -> int:
        return max((number for number, _ in self._weights_files()), default=0)

    def _ingest(self, *, wait: bool) -> None:
        paths = self._indexer.take_submitted() if self.dist.is_main else []
        self._indexer.schedule(self.dist.broadcast(paths) if self.dist.active else paths)
        episodes = self._indexer.ready(wait=wait)
        for episode in episodes:
            self.buffers.add_online(episode)
            self.episodes_ingested += 1
            version, stats = self.fleet.add(episode.meta)
            self.log.episode(version, stats)
        if episodes:
            self.log.scalar("fleet/episodes_ingested", self.episodes_ingested, self.step)

    def _fit_norm_stats(self) -> None:
        """Fit normalisation once, on offline data if there is any (it never changes), else online."""
        if self._norm_fitted or not self.config.fit_norm_stats:
            return
        sources: list[OfflineBuffer] | list[OnlineBuffer] = list(self.buffers.offline.values()) or list(
            self.buffers.online.values()
        )
        states, actions, budget = [], [], self.config.norm_stats_max_steps
        for buffer in sources:
            for episode in buffer.episodes():
                if budget <= 0:
                    break
                take = min(budget, len(episode))
                states.append(np.asarray(episode.states[:take], dtype=np.float32))
                actions.append(np.asarray(episode.actions[:take], dtype=np.float32))
                budget -= take
        if not states:
            raise ConfigError("no episode to fit state/action normalisation on")
        self.policy.set_norm_stats(np.concatenate(states), np.concatenate(actions))
        self._norm_fitted = True

    def _log_step(self, result: UpdateResult, refs: list, losses: np.ndarray) -> None:
        if not self.dist.is_main:
            return
        self.log.scalars(result.stats, self.step, prefix="train/")
        tasks = np.array([ref.task for ref in refs])
        for task in sorted(set(tasks)):
            self.log.scalar(f"loss/{task}", float(losses[tasks == task].mean()), self.step)
        for task in self.buffers.tasks():
            self.log.scalar(f"p_on/{task}", self.sampler.p_on(task, self.buffers), self.step)
            # The sliding-window means p_on is computed from.
            for side, online in (("online", True), ("offline", False)):
                mean = self.sampler.mean_loss(task, online)
                if mean is not None:
                    self.log.scalar(f"window_loss/{side}/{task}", mean, self.step)
        frames = self.buffers.frames
        if frames is not None and frames.hits + frames.misses:
            # How much decoding the cache saves; low with a frame_cache_mib far below the data's size.
            self.log.scalar("frames/cache_hit_rate", frames.hits / (frames.hits + frames.misses), self.step)
            self.log.scalar("frames/cache_mib", frames.bytes / 2**20, self.step)

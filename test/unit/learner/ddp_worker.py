"""One rank of the distributed learner test, run by ``torchrun --nproc-per-node 2``.

Usage: ddp_worker.py OUT_DIR DATA_DIR STEPS [tiny|pi0]. DATA_DIR holds ``demos/`` (offline),
``store/`` (already stored) and ``late/`` (bags only rank 0 is told about).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from learner_fakes import TinyPolicy, load_bag

from sop_ros.learner import (
    Learner,
    LearnerConfig,
    OfflineBuffer,
    ReplayBuffers,
    SamplerConfig,
    TaskBalancedSampler,
    init_distributed,
    make_algorithm,
    stored_episode_dirs,
)


def main() -> None:
    out, data, steps = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(1)
    dist = init_distributed()
    if len(sys.argv) > 4 and sys.argv[4] == "pi0":
        from test_pi0_training import tiny_pi0

        torch.manual_seed(dist.rank)  # different initial weights per rank: DDP must make them equal
        policy = tiny_pi0()
    else:
        policy = TinyPolicy(seed=dist.rank)
    algorithm = make_algorithm("hg_dagger", policy, dist=dist)
    published: list[int] = []
    learner = Learner(
        policy=policy,
        algorithm=algorithm,
        buffers=ReplayBuffers(
            offline=OfflineBuffer.from_directory(data / "demos", load=load_bag),
            select_online=algorithm.select_online,
        ),
        sampler=TaskBalancedSampler(SamplerConfig(seed=0), rank=dist.rank),
        load_episode=load_bag,
        publish=lambda path, manifest: published.append(manifest.version),
        checkpoint_dir=out / "ckpt",
        store_dir=data / "store",
        config=LearnerConfig(batch_size=4, publish_every_steps=2, progress_bar=False),
        dist=dist,
    )
    learner.start()
    if dist.is_main:
        for path in stored_episode_dirs(data / "late"):
            learner.submit_episode(path)
    learner.sync_ingest()
    batches = []
    for _ in range(steps):
        batches.append([tuple(r) for r in learner.sampler.sample(learner.buffers, 4)])
        learner.train_step()
    learner.save_checkpoint()
    state = {k: v.float().flatten()[:64].tolist() for k, v in policy.trainable_state().items()}
    report = {
        "rank": dist.rank,
        "world_size": dist.world_size,
        "step": learner.step,
        "version": learner.version,
        "published": published,
        "online_steps": learner.buffers.online_steps("pick"),
        "state": state,
        "batches": batches,
    }
    (out / f"rank{dist.rank}.json").write_text(json.dumps(report))
    # Stop the learner's loader and decode threads and let every rank finish its collectives
    # before the process group goes: tearing it down under live work aborts the process.
    learner.close()
    dist.barrier()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()

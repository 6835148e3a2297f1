from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from learner_fakes import make_episode, write_bag

HERE = Path(__file__).parent
TORCHRUN = Path(sys.executable).parent / "torchrun"


def run_two_ranks(tmp_path: Path, policy: str, steps: int) -> tuple[dict, dict]:
    data = tmp_path / "data"
    write_bag(data / "demos", make_episode("pick", seed=1, episode_id="demo"))
    write_bag(data / "store", make_episode("pick", human=(0, 1), seed=2, episode_id="stored"))
    write_bag(data / "late", make_episode("pick", human=(3,), seed=3, episode_id="late"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), str(HERE.parents[2])]), OMP_NUM_THREADS="1")
    result = subprocess.run(
        [
            str(TORCHRUN),
            "--standalone",
            "--nproc-per-node",
            "2",
            str(HERE / "ddp_worker.py"),
            str(tmp_path),
            str(data),
            str(steps),
            policy,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-4000:])
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    return rank0, rank1


def test_two_ranks_train_identical_weights_and_only_rank_0_publishes(tmp_path):
    rank0, rank1 = run_two_ranks(tmp_path, "tiny", 5)
    assert rank0["world_size"] == rank1["world_size"] == 2
    assert rank0["state"] == rank1["state"]
    assert rank0["published"] == [1, 2] and rank1["published"] == []
    assert rank0["version"] == rank1["version"] == 2 and rank0["step"] == rank1["step"] == 5
    # Rank 1 indexed the bag only rank 0 was told about: 2 stored + 1 late human step.
    assert rank0["online_steps"] == rank1["online_steps"] == 3
    # Each rank draws its own samples.
    assert rank0["batches"] != rank1["batches"]
    # Rank 0 wrote one checkpoint holding both ranks' sampler states.
    learner_json = json.loads(next((tmp_path / "ckpt").glob("step-*/learner.json")).read_text())
    assert len(learner_json["samplers"]) == 2


@pytest.mark.slow
def test_two_ranks_keep_the_tiny_pi0_identical(tmp_path):
    rank0, rank1 = run_two_ranks(tmp_path, "pi0", 3)
    assert rank0["state"] == rank1["state"] and rank0["published"] == [1] and rank1["published"] == []

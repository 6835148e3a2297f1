"""On a GPU, an update replayed as a CUDA graph computes what the eager update computes.

Skipped where torch finds no CUDA device (the CPU path is the eager one, tested everywhere).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from learner_fakes import make_episode
from test_pi0_training import tiny_pi0

from sop_ros.core.policy import Pi0Policy
from sop_ros.core.types import Outcome
from sop_ros.learner.algorithms import algorithm_config_class, make_algorithm
from sop_ros.learner.buffers import make_sample
from sop_ros.learner.types import SampleRef

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def cuda_pi0() -> Pi0Policy:
    torch.manual_seed(0)
    # float32: bfloat16 rounding would hide the differences this test looks for.
    return tiny_pi0(device="cuda", dtype="float32")


def batches(count: int, size: int) -> list[list]:
    episodes = [make_episode(seed=s, human=(1,), outcome=Outcome.SUCCESS) for s in range(4)]
    rng = np.random.default_rng(0)
    return [
        [
            make_sample(episodes[i % 4], SampleRef("pick", True, i % 4, int(rng.integers(6))))
            for i in range(size)
        ]
        for _ in range(count)
    ]


@pytest.mark.parametrize(("name", "warmup"), [("hg_dagger", 0), ("recap", 0), ("hg_dagger", 3)])
def test_the_graphed_update_matches_the_eager_one(name: str, warmup: int) -> None:
    """With a warmup, its updates run eagerly (a graph keeps its learning rate) and the graph comes after."""
    config_cls = algorithm_config_class(name)
    extra = {"value_image_size": 16} if name == "recap" else {}
    runs = {}
    data = batches(6, 8)
    start = cuda_pi0().trainable_state()
    for graphed in (False, True):
        config = config_cls(lr=1e-3, cuda_graph=graphed, warmup_steps=warmup, **extra)
        algorithm = make_algorithm(name, cuda_pi0(), config=config)
        if not graphed:  # the graphed update's optimizer, run eagerly: the graph is the only difference
            algorithm.optimizer = torch.optim.AdamW(
                algorithm.policy.trainable_parameters(), lr=1e-3, fused=True, capturable=True
            )
        losses = []
        for step, samples in enumerate(data):
            torch.manual_seed(step)  # the same flow-matching noise and times in both runs
            losses.append(algorithm.update(samples).sample_losses)
        runs[graphed] = (np.stack(losses), algorithm)
    (eager, eager_algo), (graphed, graphed_algo) = runs[False], runs[True]
    assert graphed_algo._graphed_step is not None and graphed_algo._graphed_step.graphs == 1
    # Steps 1-2 run eagerly before the capture; 3 captures and replays; 4-6 replay. Floating-point
    # order differs a little between runs, and Adam's first steps magnify it where a gradient is
    # near zero: single weights may differ by ~1e-5, while a skipped or repeated update would
    # move every weight by ~1e-3.
    np.testing.assert_allclose(graphed, eager, rtol=1e-3, atol=1e-5)
    eager_state, graphed_state = eager_algo.policy.trainable_state(), graphed_algo.policy.trainable_state()
    moved = torch.cat([(eager_state[key] - before).flatten() for key, before in start.items()])
    apart = torch.cat([(graphed_state[key] - eager_state[key]).flatten() for key in start])
    assert torch.linalg.vector_norm(apart) <= 1e-2 * torch.linalg.vector_norm(moved)

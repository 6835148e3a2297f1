"""A preset's random weights are the same in every process and thread, whatever else draws random numbers.

The frozen language model of a random preset is not stored with the trained
weights: every policy draws it again from ``config.seed``, so a weights file
only fits a policy whose draw matched. A learner training on another thread
(the demo's and the study's evaluations build policies while it runs) draws
from torch's global generator at the same time.
"""

from __future__ import annotations

import threading

import torch
from policy_fixtures import sample, small_config

from sop_ros.core.policy import make_policy


def _weights(policy) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in policy.model.state_dict().items()}


def test_a_policy_built_while_another_thread_draws_random_numbers_gets_the_seeded_weights() -> None:
    reference = _weights(make_policy(small_config()))
    learner = make_policy(small_config())
    batch = learner.collate([sample(i) for i in range(4)])
    stop = threading.Event()

    def train() -> None:  # a learner's steps: flow-matching times and noise from the global generator
        while not stop.is_set():
            learner.loss(batch)

    drawers = [threading.Thread(target=train, daemon=True) for _ in range(2)]
    for thread in drawers:
        thread.start()
    try:
        built = [_weights(make_policy(small_config())) for _ in range(3)]
    finally:
        stop.set()
        for thread in drawers:
            thread.join()
    for weights in built:
        differing = [k for k in reference if not torch.equal(reference[k], weights[k])]
        assert differing == [], f"{len(differing)} tensors differ from the seeded draw, e.g. {differing[:3]}"


def test_building_a_policy_leaves_the_global_generator_as_it_was() -> None:
    torch.manual_seed(1234)
    expected = torch.randn(4)
    torch.manual_seed(1234)
    make_policy(small_config())
    assert torch.equal(torch.randn(4), expected)

"""The guards on what the learner publishes, on the real learner driving the tiny π0.

The publish gate refuses a version whose loss on fixed demonstration samples
regressed (a deliberately corrupted update, NaN weights) and lets training go
on; the weights average is what gets published and equals the average
computed by hand; both survive a restart.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from learner_fakes import load_bag, make_episode, write_bag
from safetensors.torch import load_file
from test_pi0_training import tiny_pi0

from sop_ros.core.errors import ConfigError
from sop_ros.learner.algorithms import make_algorithm
from sop_ros.learner.algorithms.hg_dagger import HGDaggerConfig
from sop_ros.learner.buffers import OfflineBuffer, ReplayBuffers
from sop_ros.learner.loop import Learner, LearnerConfig
from sop_ros.learner.sampler import SamplerConfig, TaskBalancedSampler
from sop_ros.learner.stability import WeightsAverage

pytestmark = pytest.mark.slow


@pytest.fixture
def demos(tmp_path: Path) -> Path:
    for i, task in enumerate(["pick", "place"]):
        write_bag(tmp_path / "demos", make_episode(task, steps=8, seed=i, episode_id=f"demo-{task}"))
    (tmp_path / "store").mkdir()
    return tmp_path


def build(root: Path, published: list, **config) -> Learner:
    torch.manual_seed(0)
    policy = tiny_pi0()
    algorithm = make_algorithm("hg_dagger", policy)
    learner = Learner(
        policy=policy,
        algorithm=algorithm,
        buffers=ReplayBuffers(
            offline=OfflineBuffer.from_directory(root / "demos", load=load_bag),
            select_online=algorithm.select_online,
        ),
        sampler=TaskBalancedSampler(SamplerConfig(seed=1)),
        load_episode=load_bag,
        publish=lambda path, manifest: published.append(manifest.version),
        checkpoint_dir=root / "ckpt",
        store_dir=root / "store",
        config=LearnerConfig(batch_size=4, progress_bar=False, **config),
    )
    learner.start()
    return learner


def corrupt(learner: Learner, scale: float) -> None:
    """What a broken update would leave: every trainable tensor blown up by ``scale``."""
    with torch.no_grad():
        for param in learner.policy.trainable_parameters():
            param.mul_(scale)


def test_the_gate_refuses_a_corrupted_version_and_training_goes_on(demos):
    published: list[int] = []
    learner = build(
        demos, published, publish_every_steps=2, gate_samples=8, gate_tolerance=0.1, publish_average_decay=0.0
    )
    learner.run(2)
    assert published == [1] and learner.guards.versions_refused == 0
    good = {name: tensor.clone() for name, tensor in learner.policy.trainable_state().items()}

    corrupt(learner, 30.0)
    learner.run(2)
    # Refused: nothing announced, no file written, the number stays free, training went on.
    assert published == [1] and learner.version == 1 and learner.step == 4
    assert learner.guards.versions_refused == 1
    assert not (learner.weights_dir / "v0002.safetensors").exists()

    learner.policy.load_trainable_state(good)
    learner.run(2)
    assert published == [1, 2] and learner.guards.versions_refused == 1


def test_the_gate_refuses_weights_that_are_not_finite(demos):
    published: list[int] = []
    learner = build(demos, published, publish_every_steps=50, gate_samples=4, publish_average_decay=0.0)
    with torch.no_grad():
        learner.policy.trainable_parameters()[0].fill_(float("nan"))
    assert learner.publish() is None
    assert published == [] and learner.guards.versions_refused == 1


def test_the_gate_judges_with_the_same_noise_every_time(demos):
    learner = build(demos, [], publish_every_steps=50, gate_samples=6)
    assert learner.publish() is not None  # the first check draws and decodes the samples
    gate = learner.guards.gate
    assert gate is not None and gate.loss() == gate.loss() == gate.reference
    # Training's random stream is not disturbed by a check.
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    gate.loss()
    assert torch.equal(torch.rand(4), expected)


def test_the_published_weights_are_the_average_computed_by_hand(demos):
    published: list[int] = []
    decay = 0.6
    learner = build(demos, published, publish_every_steps=3, publish_average_decay=decay)
    average = {name: tensor.clone().float() for name, tensor in learner.policy.trainable_state().items()}
    for _ in range(3):
        learner.train_step()
        for name, tensor in learner.policy.trainable_state().items():
            average[name] = decay * average[name] + (1 - decay) * tensor.float()
    raw = {name: tensor.clone() for name, tensor in learner.policy.trainable_state().items()}
    assert published == [1]
    file = load_file(learner.weights_dir / "v0001.safetensors")
    for name, expected in average.items():
        torch.testing.assert_close(file[name].float(), expected, rtol=1e-5, atol=1e-6)
        # Training goes on from the raw weights, not from the average.
        assert torch.equal(learner.policy.trainable_state()[name], raw[name])
    assert any(not torch.allclose(file[name].float(), raw[name].float()) for name in raw)


def test_average_and_gate_reference_survive_a_restart(demos):
    settings = dict(
        publish_every_steps=2, checkpoint_every_steps=3, publish_average_decay=0.9, gate_samples=4
    )
    learner = build(demos, [], **settings)
    learner.run(3)
    saved_average = {name: tensor.clone() for name, tensor in learner.guards.average_state().items()}
    reference = learner.guards.gate.reference
    learner.close()

    resumed = build(demos, [], **settings)
    assert resumed.step == 3
    for name, tensor in resumed.guards.average_state().items():
        assert torch.equal(tensor, saved_average[name])
    assert resumed.guards.counters()["gate_reference"] == pytest.approx(reference)


def test_an_average_that_does_not_fit_the_policy_is_refused():
    average = WeightsAverage(tiny_pi0(), 0.9)
    state = dict(average.state())
    name = sorted(state)[0]
    with pytest.raises(ConfigError, match=name):
        average.load_state({**state, name: torch.zeros(3, 3)})
    with pytest.raises(ConfigError, match="missing"):
        average.load_state({key: value for key, value in state.items() if key != name})
    with pytest.raises(ConfigError, match="decay"):
        WeightsAverage(tiny_pi0(), 1.0)


def test_warmup_keeps_the_first_updates_of_a_fresh_optimizer_small(demos):
    """A fresh AdamW's first update moves every weight by about lr; warmup scales that down."""
    moves = {}
    for warmup in (0, 4):
        learner = build(demos, [], publish_every_steps=50)
        learner.algorithm = make_algorithm(
            "hg_dagger", learner.policy, config=HGDaggerConfig(lr=1e-3, warmup_steps=warmup)
        )
        before = [p.detach().clone() for p in learner.policy.trainable_parameters()]
        rates = []
        for _ in range(5):
            learner.train_step()
            rates.append(learner.algorithm.optimizer.param_groups[0]["lr"])
            if len(rates) == 1:
                after = [p.detach() for p in learner.policy.trainable_parameters()]
                moves[warmup] = max(float((a - b).abs().max()) for a, b in zip(after, before, strict=True))
        if warmup:
            assert rates == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3])
            assert learner.algorithm.state_dict()["updates"] == 5
    assert moves[0] == pytest.approx(1e-3, rel=0.05)
    assert moves[4] == pytest.approx(2.5e-4, rel=0.05)

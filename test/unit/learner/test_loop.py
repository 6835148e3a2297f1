from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from learner_fakes import TinyPolicy, load_bag, make_episode, write_bag
from safetensors.torch import load_file

from sop_ros.core.types import Outcome
from sop_ros.core.weights import sha256_bytes
from sop_ros.learner.algorithms import make_algorithm
from sop_ros.learner.algorithms.recap import RecapConfig
from sop_ros.learner.buffers import OfflineBuffer, ReplayBuffers
from sop_ros.learner.loop import Learner, LearnerConfig
from sop_ros.learner.sampler import SamplerConfig, TaskBalancedSampler


class Published:
    def __init__(self):
        self.calls = []

    def __call__(self, path: Path, manifest) -> None:
        self.calls.append((manifest, path.read_bytes()))


def build(tmp_path: Path, algorithm: str = "hg_dagger", publish=None, **config) -> Learner:
    policy = TinyPolicy()
    algo = make_algorithm(
        algorithm, policy, config=RecapConfig(value_image_size=16) if algorithm == "recap" else None
    )
    offline = OfflineBuffer.from_directory(tmp_path / "demos", load=load_bag, select=algo.select_offline)
    return Learner(
        policy=policy,
        algorithm=algo,
        buffers=ReplayBuffers(offline=offline, select_online=algo.select_online, frame_cache_bytes=1 << 20),
        sampler=TaskBalancedSampler(SamplerConfig(seed=4)),
        load_episode=load_bag,
        publish=publish or Published(),
        checkpoint_dir=tmp_path / "ckpt",
        store_dir=tmp_path / "store",
        log_dir=tmp_path / "tb",
        config=LearnerConfig(batch_size=6, progress_bar=False, **config),
    )


@pytest.fixture
def store(tmp_path: Path) -> Path:
    for i, task in enumerate(["pick", "place"]):
        write_bag(tmp_path / "demos", make_episode(task, seed=i, episode_id=f"demo-{task}"))
    (tmp_path / "store").mkdir()
    return tmp_path


def test_publishes_every_k_steps_with_a_manifest_describing_the_file(store):
    published = Published()
    learner = build(store, publish=published, publish_every_steps=3)
    learner.start()
    learner.run(7)
    assert learner.step == 7 and learner.version == 2
    assert [(m.version, m.step) for m, _ in published.calls] == [(1, 3), (2, 6)]
    manifest, data = published.calls[-1]
    assert manifest.sha256 == sha256_bytes(data) and manifest.size_bytes == len(data)
    assert {t.name for t in manifest.tensors} == set(learner.policy.trainable_state())
    # The newest file on disk is what was announced and holds the current weights after step 6.
    newest = load_file(learner.weights_dir / "v0002.safetensors")
    assert set(newest) == set(learner.policy.trainable_state())


def test_episodes_submitted_from_another_thread_join_training(store):
    learner = build(store)
    learner.start()
    paths = [
        write_bag(store / "store", make_episode("pick", human=(2, 3), seed=20 + i, episode_id=f"up{i}"))
        for i in range(3)
    ]
    thread = threading.Thread(target=lambda: [learner.submit_episode(p) for p in paths])
    thread.start()
    thread.join()
    learner.sync_ingest()
    assert learner.episodes_ingested == 3
    assert learner.buffers.online_steps("pick") == 6  # HG-DAgger keeps the 2 human steps of each
    learner.submit_episode(paths[0])  # a duplicate announcement is ignored
    learner.sync_ingest()
    learner.train_step()
    assert learner.episodes_ingested == 3
    assert 0.0 < learner.sampler.p_on("pick", learner.buffers) < 1.0
    assert learner.sampler.p_on("place", learner.buffers) == 0.0


def test_logs_loss_p_on_and_fleet_rates_to_tensorboard(store):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    learner = build(store, publish_every_steps=2)
    write_bag(
        store / "store", make_episode("pick", human=(1,), outcome=Outcome.SUCCESS, seed=7, episode_id="a")
    )
    write_bag(
        store / "store",
        make_episode("pick", outcome=Outcome.FAILURE, seed=8, episode_id="b", interventions=0),
    )
    learner.start()
    learner.run(2)
    learner.close()
    events = EventAccumulator(str(store / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss/pick", "loss/place", "p_on/pick", "p_on/place", "train/loss", "publish/seconds"} <= tags
    assert {"window_loss/online/pick", "window_loss/offline/pick", "fleet/episodes_ingested"} <= tags
    assert {"frames/cache_hit_rate", "frames/cache_mib"} <= tags
    success = events.Scalars("fleet/success_rate")[-1]
    assert (success.step, success.value) == (1, 0.5)  # version v0001: one of two succeeded
    assert events.Scalars("fleet/intervention_rate")[-1].value == 0.5


def test_restarted_learner_resumes_at_the_same_step_with_the_same_state(store):
    for i in range(3):
        write_bag(store / "store", make_episode("pick", human=(1, 2), seed=30 + i, episode_id=f"r{i}"))
    first = build(store, algorithm="recap", publish_every_steps=4, checkpoint_every_steps=5)
    first.start()
    first.run(10)
    assert first.step == 10
    second = build(store, algorithm="recap", publish_every_steps=4, checkpoint_every_steps=5)
    second.start()
    assert (second.step, second.version) == (10, 2)
    assert second.sampler.state_dict() == first.sampler.state_dict()
    assert second.buffers.online_steps("pick") == first.buffers.online_steps("pick") == 18
    for name, tensor in first.policy.trainable_state().items():
        assert torch.equal(second.policy.trainable_state()[name], tensor)
    assert second.algorithm.return_scales == first.algorithm.return_scales
    # Both draw the same next batch and take the same step.
    assert second.sampler.sample(second.buffers, 6) == first.sampler.sample(first.buffers, 6)
    a, b = first.train_step(), second.train_step()
    np.testing.assert_allclose(a.sample_losses, b.sample_losses, rtol=1e-5)
    assert second.step == 11


def test_waits_without_stepping_while_no_task_has_data(tmp_path):
    policy = TinyPolicy()
    algo = make_algorithm("hg_dagger", policy)
    learner = Learner(
        policy=policy,
        algorithm=algo,
        buffers=ReplayBuffers(select_online=algo.select_online),
        sampler=TaskBalancedSampler(),
        load_episode=load_bag,
        publish=Published(),
        checkpoint_dir=tmp_path / "ckpt",
        config=LearnerConfig(progress_bar=False),
    )
    learner.start()
    assert learner.train_step() is None and learner.step == 0


def test_a_restart_never_reuses_a_version_published_after_the_checkpoint(store):
    published = Published()
    first = build(
        store, publish=published, publish_every_steps=2, checkpoint_every_steps=2, keep_weights_files=1
    )
    first.start()
    first.run(4)  # checkpoint at step 4 (version 2)
    first.publish()  # version 3 goes out, then the learner dies before its next checkpoint
    assert sorted(p.name for p in first.weights_dir.iterdir()) == ["v0003.safetensors"]
    second = build(store, publish=published, publish_every_steps=2)
    second.start()
    assert second.step == 4 and second.version == 3
    second.run(2)
    assert [m.version for m, _ in published.calls] == [1, 2, 3, 4]


def test_norm_stats_are_fitted_once_on_offline_data_unless_turned_off(store):
    learner = build(store)
    learner.start()
    learner.run(2)
    demos = [b.episodes()[0] for b in learner.buffers.offline.values()]
    expected = np.concatenate([e.states for e in demos]).mean(axis=0)
    np.testing.assert_allclose(learner.policy.state_mean, expected, rtol=1e-5)
    kept = build(store, fit_norm_stats=False)  # e.g. initial weights brought their own statistics
    kept.start()
    kept.run(2)
    np.testing.assert_array_equal(kept.policy.state_mean, np.zeros(3))


@pytest.mark.parametrize("workers", [0, 3])
def test_a_decoded_batch_keeps_the_order_of_its_refs(store, workers):
    learner = build(store, decode_workers=workers)
    learner.start()
    refs = learner.sampler.sample(learner.buffers, 7)  # more samples than threads, not a multiple
    samples = learner.decode_batch(refs)
    assert [s.ref for s in samples] == refs
    expected = [learner.buffers.get(ref) for ref in refs]
    for got, want in zip(samples, expected, strict=True):
        np.testing.assert_array_equal(got.state, want.state)
        np.testing.assert_array_equal(got.actions, want.actions)
    learner.close()

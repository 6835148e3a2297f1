"""The learner on real rosbag2 episodes, recorded by the storage layer and read back by its loader."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
from learner_fakes import HORIZON, TinyPolicy

from sop_ros.core import topics
from sop_ros.core.types import EpisodeMeta, InterventionSegment, Outcome
from sop_ros.learner import (
    Learner,
    LearnerConfig,
    OfflineBuffer,
    ReplayBuffers,
    TaskBalancedSampler,
    make_algorithm,
)
from sop_ros.learner.builder import storage_loader
from sop_ros.storage import typestore as ts
from sop_ros.storage.recorder import EpisodeRecorder

T0 = 1_700_000_000_000_000_000
PERIOD_NS = 20_000_000


def record(spool: Path, store: Path, episode_id: str, task: str, *, human: range = range(0)) -> Path:
    """Record 8 steps (frame, joint state, command each) and file the bag as the ingest server does."""
    recorder = EpisodeRecorder(spool, quota_bytes=1 << 30)
    meta = EpisodeMeta(episode_id=episode_id, robot_id="r1", task=task, instruction=f"do {task}", start_ns=T0)
    recorder.start(meta)
    for i in range(8):
        t = T0 + i * PERIOD_NS
        image = np.full((16, 16, 3), 30 * i, np.uint8)
        data = np.frombuffer(cv2.imencode(".jpg", image)[1].tobytes(), np.uint8)
        frame = ts.make(ts.COMPRESSED_IMAGE, header=ts.header(t), format="jpeg", data=data)
        recorder.write(topics.camera_topic("front"), ts.COMPRESSED_IMAGE, ts.serialize(frame), t)
        for topic, position, stamp in (
            (topics.JOINT_STATES, [0.1 * i, 0.2, 0.3], t + 1),
            (topics.COMMAND, [i, -i], t + 2),
        ):
            msg = ts.make(
                ts.JOINT_STATE,
                header=ts.header(stamp),
                name=["a", "b", "c"][: len(position)],
                position=np.array(position, float),
            )
            recorder.write(topic, ts.JOINT_STATE, ts.serialize(msg), stamp)
    segments = (
        (InterventionSegment(start_ns=T0 + human.start * PERIOD_NS, end_ns=T0 + human.stop * PERIOD_NS),)
        if human
        else ()
    )
    done = EpisodeMeta(
        episode_id=episode_id,
        robot_id="r1",
        task=task,
        instruction=f"do {task}",
        start_ns=T0,
        end_ns=T0 + 8 * PERIOD_NS,
        outcome=Outcome.SUCCESS,
        policy_versions=("v0001",),
        interventions=segments,
    )
    bag = recorder.finish(done)
    final = store / task / "r1" / episode_id
    final.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(bag, final)
    return final


def test_learner_trains_on_recorded_bags_offline_and_online(tmp_path):
    record(tmp_path / "spool", tmp_path / "demos", "demo", "pick")
    uploaded = record(tmp_path / "spool", tmp_path / "store", "up", "pick", human=range(2, 5))
    load = storage_loader(cameras=("front",), horizon=HORIZON)
    policy = TinyPolicy()
    algorithm = make_algorithm("hg_dagger", policy)
    learner = Learner(
        policy=policy,
        algorithm=algorithm,
        buffers=ReplayBuffers(
            offline=OfflineBuffer.from_directory(tmp_path / "demos", load=load),
            select_online=algorithm.select_online,
        ),
        sampler=TaskBalancedSampler(),
        load_episode=load,
        publish=lambda path, manifest: None,
        checkpoint_dir=tmp_path / "ckpt",
        config=LearnerConfig(batch_size=8, progress_bar=False),
    )
    learner.start()
    learner.submit_episode(uploaded)
    learner.sync_ingest()
    result = learner.train_step()
    assert learner.buffers.offline_steps("pick") == 8
    assert learner.buffers.online_steps("pick") == 3  # the three human-driven steps
    human_refs = learner.buffers.online["pick"].sample_refs(20, np.random.default_rng(0))
    sample = learner.buffers.get(human_refs[0])
    assert sample.is_human and 2 <= sample.ref.step < 5
    assert sample.images["front"].shape == (16, 16, 3) and sample.actions.shape == (HORIZON, 2)
    np.testing.assert_allclose(sample.actions[0], [sample.ref.step, -sample.ref.step])
    assert np.isfinite(result.stats["loss"])

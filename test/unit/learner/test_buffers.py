from __future__ import annotations

import threading

import numpy as np
import pytest
from learner_fakes import load_bag, make_episode, write_bag

from sop_ros.core.errors import BagError, ConfigError
from sop_ros.learner.buffers import (
    FrameCache,
    OfflineBuffer,
    OnlineBuffer,
    ReplayBuffers,
    make_sample,
    stored_episode_dirs,
)
from sop_ros.learner.types import SampleRef


def human_only(episode):
    return np.flatnonzero(episode.is_human)


def test_sampled_refs_point_at_selected_steps_and_decode_them():
    buffer = OnlineBuffer("pick", select=human_only)
    assert buffer.append(make_episode(steps=6, human=(1, 2), seed=1)) == 2
    assert buffer.append(make_episode(steps=4, human=(3,), seed=2)) == 1
    refs = buffer.sample_refs(300, np.random.default_rng(0))
    assert {(r.episode, r.step) for r in refs} == {(0, 1), (0, 2), (1, 3)}
    sample = buffer.get(SampleRef("pick", True, 1, 3))
    episode = buffer.episodes()[1]
    assert sample.is_human and sample.steps_to_end == 1
    np.testing.assert_array_equal(sample.images["front"], episode.image("front", 3))
    np.testing.assert_array_equal(sample.actions, episode.action_chunk(3))
    assert sample.actions.shape == (4, 2)
    assert sample.instruction == "do pick"


def test_online_buffer_grows_from_another_thread_while_sampled():
    buffer = OnlineBuffer("pick")
    buffer.append(make_episode(steps=5))
    done = threading.Event()

    def ingest():
        for i in range(50):
            buffer.append(make_episode(steps=5, seed=i + 1))
        done.set()

    thread = threading.Thread(target=ingest)
    thread.start()
    rng = np.random.default_rng(0)
    while not done.is_set():
        for ref in buffer.sample_refs(8, rng):
            assert 0 <= ref.step < 5
    thread.join()
    assert buffer.num_steps == 255 and buffer.num_episodes == 51


def test_buffer_refuses_another_task_and_an_empty_draw():
    buffer = OnlineBuffer("pick")
    with pytest.raises(ConfigError, match="empty buffer"):
        buffer.sample_refs(1, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="task 'place'"):
        buffer.append(make_episode("place"))


def test_offline_buffers_load_a_directory_per_task_skipping_broken_bags(tmp_path):
    for i, task in enumerate(["pick", "pick", "place"]):
        write_bag(tmp_path, make_episode(task, seed=i, episode_id=f"e{i}"))
    broken = tmp_path / "pick" / "robot0" / "broken"
    broken.mkdir()
    (broken / "metadata.yaml").write_text("")

    def load(path):
        if path.name == "broken":
            raise BagError("truncated")
        return load_bag(path)

    buffers = OfflineBuffer.from_directory(tmp_path, load=load)
    assert {t: (b.num_episodes, b.num_steps) for t, b in buffers.items()} == {
        "pick": (2, 12),
        "place": (1, 6),
    }
    with pytest.raises(ConfigError, match="no loadable bag"):
        OfflineBuffer.from_directory(broken, load=load)


def test_store_is_listed_in_arrival_order_without_partial_or_quarantined_bags(tmp_path):
    late = write_bag(tmp_path, make_episode("zeta", episode_id="z"))
    early = write_bag(tmp_path, make_episode("alpha", episode_id="a"))
    unindexed = tmp_path / "beta" / "robot0" / "b"
    unindexed.mkdir(parents=True)
    (unindexed / "metadata.yaml").write_text("")
    for hidden in (".partial/robot0/x", "quarantine/robot0/y"):
        (tmp_path / hidden).mkdir(parents=True)
        (tmp_path / hidden / "metadata.yaml").write_text("")
    with (tmp_path / "index.jsonl").open("a") as index:
        index.write('{"path": "gone/robot0/q"}\n{"torn')
    assert stored_episode_dirs(tmp_path) == [late, early, unindexed]


def test_make_sample_rejects_a_step_past_the_end():
    with pytest.raises(ConfigError, match="step 6 out of range"):
        make_sample(make_episode(steps=6), SampleRef("pick", True, 0, 6))


def counting_decoder(frame: np.ndarray, calls: list[int]):
    def decode() -> np.ndarray:
        calls.append(1)
        return frame.copy()

    return decode


def test_frame_cache_decodes_each_frame_once_and_shares_it_read_only():
    cache = FrameCache(max_bytes=1 << 20)
    calls: list[int] = []
    frame = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    first = cache.get("a", counting_decoder(frame, calls))
    again = cache.get("a", counting_decoder(frame, calls))
    assert again is first and len(calls) == 1
    np.testing.assert_array_equal(first, frame)
    with pytest.raises(ValueError):
        first[0, 0, 0] = 7
    assert (cache.hits, cache.misses, cache.bytes) == (1, 1, frame.nbytes)


def test_frame_cache_drops_the_least_recently_used_beyond_its_budget():
    frame = np.zeros((4, 4, 3), dtype=np.uint8)
    cache = FrameCache(max_bytes=2 * frame.nbytes)
    calls: list[int] = []
    for key in ("a", "b", "a", "c"):  # "a" used again after "b": "b" is the one to go
        cache.get(key, counting_decoder(frame, calls))
    assert len(cache) == 2 and cache.bytes == 2 * frame.nbytes
    cache.get("a", counting_decoder(frame, calls))
    assert len(calls) == 3
    cache.get("b", counting_decoder(frame, calls))
    assert len(calls) == 4
    # A frame bigger than the whole budget is decoded and returned, never kept.
    big = np.zeros((8, 8, 3), dtype=np.uint8)
    assert cache.get("big", counting_decoder(big, calls)).shape == big.shape
    assert "big" not in cache._frames and cache.bytes <= cache.max_bytes


def test_buffers_with_a_frame_cache_give_the_same_samples():
    episodes = [make_episode(steps=6, seed=seed, episode_id=f"e{seed}") for seed in range(3)]
    plain = ReplayBuffers(offline={"pick": OfflineBuffer("pick", episodes)})
    cached = ReplayBuffers(offline={"pick": OfflineBuffer("pick", episodes)}, frame_cache_bytes=1 << 20)
    refs = plain.offline["pick"].sample_refs(50, np.random.default_rng(0))
    for ref in refs + refs:
        a, b = plain.get(ref), cached.get(ref)
        np.testing.assert_array_equal(a.images["front"], b.images["front"])
        np.testing.assert_array_equal(a.actions, b.actions)
    assert cached.frames is not None and cached.frames.misses == len(set(refs))
    assert plain.frames is None

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from bag_helpers import jpeg

from sop_ros.storage.decode import DecodePool
from sop_ros.storage.episodes import decode_jpeg, load_episode
from sop_ros.storage.errors import BagError


def test_batch_equals_one_by_one_decoding() -> None:
    frames = [jpeg((i * 20 % 256, 255 - i, 7), size=32) for i in range(13)]
    with DecodePool(workers=3) as pool:
        batch = pool.decode(frames)
    assert batch.shape == (13, 32, 32, 3) and batch.dtype == np.uint8
    for i, frame in enumerate(frames):
        np.testing.assert_array_equal(batch[i], decode_jpeg(frame))


def test_decode_steps_of_episodes(simple_bag: Callable[..., Path]) -> None:
    episode = load_episode(simple_bag(steps=4), cameras=["front"], horizon=2)
    with DecodePool(workers=2) as pool:
        out = pool.decode_steps([(episode, 0), (episode, 3)], ["front"])
    assert out["front"].shape == (2, 16, 16, 3)
    assert out["front"][:, 8, 8, 0].min() > 240  # red, in RGB order
    with DecodePool(workers=2) as pool, pytest.raises(BagError, match="no camera 'side'"):
        pool.decode_steps([(episode, 0)], ["side"])


def test_bad_batches_are_refused() -> None:
    with DecodePool(workers=2) as pool:
        with pytest.raises(BagError, match="frame 1"):
            pool.decode([jpeg((0, 0, 0), size=16), jpeg((0, 0, 0), size=8)])
        with pytest.raises(BagError, match="do not decode"):
            pool.decode([jpeg((0, 0, 0)), b"garbage"])
        with pytest.raises(BagError):
            pool.decode([])

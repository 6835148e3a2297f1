from __future__ import annotations

import threading
from pathlib import Path

from learner_fakes import make_episode

from sop_ros.core.errors import BagError
from sop_ros.learner.indexer import EpisodeIndexer


def test_loaded_episodes_come_back_in_arrival_order_and_broken_bags_are_skipped():
    release_first = threading.Event()

    def load(path: Path):
        if path.name == "broken":
            raise BagError("truncated")
        if path.name == "slow":
            release_first.wait(5)
        return make_episode(episode_id=path.name)

    indexer = EpisodeIndexer(load, max_pending=10, workers=2)
    for name in ("slow", "broken", "fast", "slow"):
        indexer.submit(Path(name))
    indexer.schedule(indexer.take_submitted())
    assert indexer.in_flight == 3  # the repeated path is scheduled once
    assert indexer.ready() == []  # "fast" waits behind "slow" to keep arrival order
    release_first.set()
    episodes = indexer.ready(wait=True)
    assert [e.meta.episode_id for e in episodes] == ["slow", "fast"] and indexer.failed == 1
    indexer.close()


def test_a_full_queue_refuses_new_bags_without_losing_queued_ones():
    indexer = EpisodeIndexer(lambda path: make_episode(), max_pending=2, workers=0)
    assert [indexer.submit(Path(n)) for n in "abc"] == [True, True, False]
    assert indexer.take_submitted() == [Path("a"), Path("b")]

from __future__ import annotations

from pathlib import Path

import numpy as np
from mcap.reader import make_reader

from sop_ros.core.types import EpisodeMeta, Outcome
from sop_ros.sim import ScriptedExpert, SimConfig, SimEnv
from sop_ros.simlab.sim_bags import SimStep, record_sim_episode
from sop_ros.storage import EpisodeRecorder, load_episode, validate_bag


def test_a_corrected_episode_keeps_who_drove_each_step(tmp_path: Path) -> None:
    env, expert = SimEnv(SimConfig()), ScriptedExpert(control_period_s=0.1)
    obs = env.reset(3)
    human = [False] * 5 + [True] * 12 + [False] * 6 + [True] * 4
    steps = []
    for flag in human:
        action = expert.act(env.world)
        after = env.step(action)
        steps.append(SimStep(obs=obs, action=action, human=flag, success=after.success))
        obs = after
    meta = EpisodeMeta(
        episode_id="r1-00001",
        robot_id="robot_1",
        task="grocery_restock",
        instruction=env.instruction,
        outcome=Outcome.FAILURE,
        policy_versions=("v0003",),
        start_ns=1_780_000_000 * 10**9,
    )
    recorder = EpisodeRecorder(tmp_path / "spool", quota_bytes=1 << 30)
    bag = record_sim_episode(recorder, meta, steps, period_ns=100_000_000, namespace="/robot_1")

    stored = validate_bag(bag)
    assert stored.intervention_count == 2
    # 12 steps of 0.1 s, then from the last takeover's command (half a period in) to the end.
    assert abs(stored.intervention_s - (1.2 + 0.35)) < 1e-6
    episode = load_episode(bag, cameras=("head",), horizon=10)
    assert episode.is_human.tolist() == human
    assert np.allclose(episode.actions, np.stack([s.action for s in steps]))
    with (bag / f"{bag.name}_0.mcap").open("rb") as f:
        channels = {c.topic for c in make_reader(f).get_summary().channels.values()}
    assert "/robot_1/intervention" in channels and "/robot_1/command" in channels

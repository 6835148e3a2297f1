"""The whole robot graph against the simulated robot: episodes become bags that match what happened.

The scripted operator intervenes through a simulated joystick; the test
listens to that ``joy`` topic itself and checks that every intervention
segment recorded in a bag matches a span during which the deadman was held.
The spans come from the Joy messages' stamps (when the joystick reported the
deadman), not from when the listener's callback ran: the listener shares the
loaded executor, and its callbacks can run a quarter of a second late.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import rclpy
import yaml
from sensor_msgs.msg import Joy

from sop_ros.core import topics
from sop_ros.nodes.common import SENSOR_QOS
from sop_ros.nodes.convert import stamp_to_ns
from sop_ros.nodes.robot_graph import RobotGraph, RobotGraphConfig
from sop_ros.storage import load_episode

mcap_reader = pytest.importorskip("mcap.reader")
mcap_ros2 = pytest.importorskip("mcap_ros2.decoder")

BUDGET_S = 3.0
DEADMAN = 4


def deadman_spans(joys: list[tuple[int, bool]]) -> list[tuple[int, int]]:
    spans, start = [], None
    for stamp, held in joys:
        if held and start is None:
            start = stamp
        elif not held and start is not None:
            spans.append((start, stamp))
            start = None
    if start is not None:
        spans.append((start, joys[-1][0]))
    return spans


@pytest.mark.slow
def test_three_sim_episodes_become_matching_bags(ros_context, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    config = RobotGraphConfig(
        robot_id="sim_g1",
        parameters={
            "episode_manager": {"episodes.time_budgets_s": [BUDGET_S] * 3, "pause_s": 0.3},
            "recorder": {"spool_dir": str(spool)},
            "sim_robot": {"sim.time_budget_s": BUDGET_S},
        },
    )
    graph = RobotGraph(config, context=ros_context)
    listener = rclpy.create_node("joy_listener", namespace="sim_g1", context=ros_context)
    joys: list[tuple[int, bool]] = []
    listener.create_subscription(
        Joy,
        topics.JOY,
        lambda m: joys.append((stamp_to_ns(m.header.stamp), bool(m.buttons[DEADMAN]))),
        SENSOR_QOS,
    )
    graph.add_node(listener)
    graph.spin_in_thread()
    ready = spool / "ready"
    try:
        deadline = time.monotonic() + 120.0
        while time.monotonic() < deadline and len(list(ready.glob("*"))) < 3:
            time.sleep(0.2)
    finally:
        graph.shutdown()
        listener.destroy_node()

    bags = sorted(ready.iterdir())
    assert len(bags) >= 3, f"only {len(bags)} bags after 120 s"
    spans = deadman_spans(joys)
    tasks = set()
    commanded: list[float] = []
    human_steps = 0
    for bag in bags[:3]:
        info = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        custom = info["custom_data"]
        tasks.add(custom["sop.task"])
        assert custom["sop.robot_id"] == "sim_g1" and custom["sop.outcome"] in ("success", "failure")
        assert custom["sop.episode_id"] == bag.name

        counts: dict[str, int] = {}
        with next(bag.glob("*.mcap")).open("rb") as stream:
            reader = mcap_reader.make_reader(stream, decoder_factories=[mcap_ros2.DecoderFactory()])
            for _, channel, _, _ in reader.iter_decoded_messages():
                counts[channel.topic] = counts.get(channel.topic, 0) + 1
        for topic in ("camera/head/image_raw/compressed", "joint_states", "episode/events"):
            assert counts.get(f"/sim_g1/{topic}", 0) > 0, (topic, counts)
        assert counts["/sim_g1/episode/events"] == 2
        # Commands at the 10 Hz control rate once the policy or the operator acts (the first
        # chunk of the first episode can take a while on a loaded machine).
        duration_s = (int(custom["sop.end_ns"]) - int(custom["sop.start_ns"])) / 1e9
        commands = counts.get("/sim_g1/command", 0)
        assert commands <= 10 * duration_s + 2
        commanded.append(commands / duration_s)
        if commands == 0:
            continue  # the robot held still all episode (first chunk still being computed)

        episode = load_episode(bag, cameras=("head",), horizon=10)
        assert int(custom["sop.intervention_count"]) == len(episode.interventions)
        # Every recorded intervention lies inside a span in which the joystick's deadman was held.
        for segment in episode.interventions:
            assert any(
                start - 0.2e9 <= segment.start_ns and segment.end_ns <= end + 0.3e9 for start, end in spans
            ), (segment, spans)
        human_steps += int(episode.is_human.sum())
    assert tasks == {"grocery_restock", "laundry_fold", "box_assembly"}
    assert max(commanded) > 0, commanded  # the robot was commanded (rate depends on the load)
    assert human_steps > 0  # the operator's commands were executed and are labelled as human
    assert any(
        int(
            yaml.safe_load((b / "metadata.yaml").read_text())["rosbag2_bagfile_information"]["custom_data"][
                "sop.intervention_count"
            ]
        )
        > 0
        for b in bags[:3]
    )

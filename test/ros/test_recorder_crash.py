"""Kill the recorder mid-episode, start it again: the episode is recovered, never marked complete."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import rclpy
import yaml
from sensor_msgs.msg import JointState
from sop_msgs.msg import EpisodeEvent

from sop_ros.core import topics
from sop_ros.nodes.common import COMMAND_QOS, SENSOR_QOS
from sop_ros.nodes.registry import NODES


def start_recorder(spool: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        NODES["recorder"].command({"spool_dir": str(spool), "flush_period_s": "0.1"}, namespace="/crash"),
        env=dict(os.environ),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )


def test_a_killed_recording_is_recovered_as_incomplete(ros_context, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    recorder = start_recorder(spool, tmp_path / "first.log")
    node = rclpy.create_node("crash_driver", namespace="crash", context=ros_context)
    events = node.create_publisher(EpisodeEvent, topics.EPISODE_EVENTS, COMMAND_QOS)
    joints = node.create_publisher(JointState, topics.JOINT_STATES, SENSOR_QOS)
    try:
        deadline = time.monotonic() + 20
        while events.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert events.get_subscription_count() > 0, (tmp_path / "first.log").read_text()
        start = EpisodeEvent(
            kind=EpisodeEvent.START,
            episode_id="crash-ep-1",
            robot_id="crash",
            task="laundry_fold",
            instruction="fold",
            policy_version="v0003",
        )
        start.header.stamp = node.get_clock().now().to_msg()
        events.publish(start)
        partial = spool / "recording" / "crash-ep-1.partial"
        deadline = time.monotonic() + 10
        while not partial.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        deadline = time.monotonic() + 10
        while joints.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # best-effort data flows once both sides have matched
        for i in range(40):
            msg = JointState(name=["a"], position=[float(i)])
            msg.header.stamp = node.get_clock().now().to_msg()
            joints.publish(msg)
            time.sleep(0.02)
        time.sleep(0.5)  # past the flush period
        recorder.send_signal(signal.SIGKILL)
        recorder.wait(timeout=10)
        assert partial.exists() and not (spool / "ready").joinpath("crash-ep-1").exists()

        recorder = start_recorder(spool, tmp_path / "second.log")
        bag = spool / "ready" / "crash-ep-1"
        deadline = time.monotonic() + 20
        while (
            "crash-ep-1.partial" not in (tmp_path / "second.log").read_text() and time.monotonic() < deadline
        ):
            time.sleep(0.1)
    finally:
        recorder.send_signal(signal.SIGINT)
        recorder.wait(timeout=20)
        node.destroy_node()

    log = (tmp_path / "second.log").read_text()
    assert bag.exists(), log
    assert "found a bag left by a crash, crash-ep-1.partial: recovered" in log
    info = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["custom_data"]["sop.outcome"] == "incomplete"
    assert info["custom_data"]["sop.task"] == "laundry_fold"
    counts = {t["topic_metadata"]["name"]: t["message_count"] for t in info["topics_with_message_count"]}
    assert counts.get("/crash/joint_states", 0) >= 20  # what was flushed before the kill is kept
    originals = list((spool / "quarantine").iterdir())
    assert any(p.name.startswith("crash-ep-1") for p in originals)  # the original bytes, kept
    assert not list((spool / "recording").iterdir())

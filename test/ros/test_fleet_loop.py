"""One simulated robot with its bridge and param_update nodes against a learner side over loopback Zenoh.

Bags recorded by the robot reach the learner's episode store (and leave the
robot's ready/ only once committed); weights published by the learner are
fetched, verified, staged and go live at an episode boundary.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import rclpy
import yaml
from ros_helpers import chunk_versions, free_port, wait_for
from sop_msgs.msg import PolicyStatus

from sop_ros.core import topics
from sop_ros.core.policy import make_policy
from sop_ros.core.weights import WeightsManifest
from sop_ros.nodes.common import LATCHED_QOS
from sop_ros.nodes.registry import LINK_NODES
from sop_ros.nodes.robot_graph import RobotGraph, RobotGraphConfig
from sop_ros.sim.policy import sim_policy_config
from sop_ros.storage import validate_bag
from sop_ros.transport import IngestServer, WeightsPublisher, open_session

ROOT = Path(__file__).resolve().parents[2]
ZENOH = ROOT / "config" / "zenoh"
BUDGET_S = 2.5


@pytest.mark.slow
def test_bags_flow_up_and_weights_flow_down(ros_context, tmp_path: Path) -> None:
    endpoint = f"tcp/127.0.0.1:{free_port()}"
    router = open_session(ZENOH / "test_router.json5", {"listen/endpoints": [endpoint]})
    stored = []
    ingest = IngestServer(router, tmp_path / "store", validate_bag=validate_bag, on_episode=stored.append)
    publisher = WeightsPublisher(router)

    spool = tmp_path / "spool"
    zenoh = {"zenoh.config_file": str(ZENOH / "test_client.json5"), "zenoh.connect": endpoint}
    config = RobotGraphConfig(
        robot_id="g1_a",
        parameters={
            "episode_manager": {"episodes.time_budgets_s": [BUDGET_S] * 3, "pause_s": 0.3},
            "recorder": {"spool_dir": str(spool)},
            "sim_robot": {"sim.time_budget_s": BUDGET_S},
            "bridge": {
                **zenoh,
                "spool_dir": str(spool),
                "upload.robot_id": "g1_a",
                "spool.poll_period_s": 0.2,
            },
            "param_update": {**zenoh, "staging_dir": str(tmp_path / "weights"), "fetch.manifest_poll_s": 1.0},
        },
    )
    graph = RobotGraph(config, context=ros_context, extra_nodes=LINK_NODES)
    # Every node spins apart from the others, as in a process of its own.
    assert set(graph.spinners.node_names) == {f"/g1_a/{name}" for name in graph.nodes}
    watcher = rclpy.create_node("status_watcher", namespace="g1_a", context=ros_context)
    status: list[PolicyStatus] = []
    watcher.create_subscription(PolicyStatus, topics.POLICY_STATUS, status.append, LATCHED_QOS)
    graph.add_node(watcher)
    graph.spin_in_thread()
    try:
        assert wait_for(lambda: len(stored) >= 2, 90.0), f"{len(stored)} episodes stored"
        assert {e.meta.robot_id for e in stored} == {"g1_a"}

        # The learner publishes v0001 for exactly this policy config.
        donor = make_policy(sim_policy_config())
        state = donor.trainable_state()
        name = next(iter(state))
        donor.load_trainable_state({**state, name: state[name] * 0.5})
        path = tmp_path / "publish" / "v0001.safetensors"
        path.parent.mkdir()
        donor.save_trainable(path, version="v0001")
        manifest = WeightsManifest.for_file(
            path,
            version=1,
            step=25,
            base_model_id=donor.base_model_id,
            config_hash=donor.config_hash,
            tensors=donor.trainable_specs(),
            chunk_size_bytes=256 << 10,
        )
        publisher.publish(path, manifest)
        assert wait_for(lambda: status and status[-1].active_version == "v0001", 60.0)

        # Episodes that start after the switch run v0001 and reach the store too. (On a loaded
        # machine an episode's 2.5 s can pass before the policy acts: wait for one it acted in.)
        def later_episode_on_v1() -> bool:
            return any(chunk_versions(e.path) == {"v0001"} for e in list(stored))

        assert wait_for(later_episode_on_v1, 60.0)
    finally:
        graph.shutdown()
        watcher.destroy_node()
        ingest.close()
        publisher.close()
        router.close()

    # Weights changed only between episodes: every stored episode's chunks come from one version.
    for episode in stored:
        versions = chunk_versions(episode.path)
        assert len(versions) <= 1, (episode.meta.episode_id, versions)
    assert any(chunk_versions(e.path) == {"v0001"} for e in stored)

    # Nothing lost: every bag the robot finished is in the store; ready/ keeps only uncommitted ones.
    store_ids = {e.meta.episode_id for e in stored}
    uploaded = {p.name for p in (spool / "uploaded").iterdir()}
    assert uploaded <= store_ids
    for bag in (spool / "ready").iterdir():
        assert bag.name not in store_ids
        info = yaml.safe_load((bag / "metadata.yaml").read_text())
        assert info["rosbag2_bagfile_information"]["custom_data"]["sop.robot_id"] == "g1_a"

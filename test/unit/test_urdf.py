"""The G1 URDF parses, carries the G1 joint names, and agrees with the policy's joint list."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

yourdfpy = pytest.importorskip("yourdfpy")

ROOT = Path(__file__).resolve().parents[2]
XACRO = ROOT / "urdf" / "agibot_g1.urdf.xacro"
URDF = ROOT / "urdf" / "agibot_g1.urdf"

ARM_L = [f"idx2{i}_arm_l_joint{i}" for i in range(1, 8)]
ARM_R = [f"idx6{i}_arm_r_joint{i}" for i in range(1, 8)]
G1_JOINTS = [
    "idx01_body_joint1",
    "idx02_body_joint2",
    "idx11_head_joint1",
    "idx12_head_joint2",
    *ARM_L,
    *ARM_R,
    "idx41_gripper_l_outer_joint1",
    "idx81_gripper_r_outer_joint1",
]


@pytest.fixture(scope="module")
def robot() -> yourdfpy.URDF:
    return yourdfpy.URDF.load(str(URDF), build_scene_graph=True, load_meshes=False)


def _strip_banner(text: str) -> str:
    return re.sub(r"<!--.*?-->", "", text, flags=re.S).strip()


def test_committed_urdf_is_the_xacro_output() -> None:
    xacro = Path(sys.executable).with_name("xacro")
    if not xacro.exists():
        pytest.skip("xacro is not installed")
    expanded = subprocess.run([str(xacro), str(XACRO)], capture_output=True, text=True, check=True).stdout
    assert _strip_banner(expanded) == _strip_banner(URDF.read_text()), (
        "urdf/agibot_g1.urdf is stale: xacro urdf/agibot_g1.urdf.xacro -o urdf/agibot_g1.urdf"
    )


def test_all_g1_joints_are_movable_with_limits(robot: yourdfpy.URDF) -> None:
    assert set(G1_JOINTS) <= set(robot.actuated_joint_names)
    for name in G1_JOINTS:
        joint = robot.joint_map[name]
        assert joint.limit is not None and joint.limit.lower < joint.limit.upper, name
        assert joint.limit.velocity > 0 and joint.limit.effort > 0, name


def test_arms_have_seven_joints_in_a_chain(robot: yourdfpy.URDF) -> None:
    for arm in (ARM_L, ARM_R):
        joints = [robot.joint_map[name] for name in arm]
        for parent, child in itertools.pairwise(joints):
            assert child.parent == parent.child


def test_grippers_are_parallel_with_a_mimic_finger(robot: yourdfpy.URDF) -> None:
    for outer, inner in (
        ("idx41_gripper_l_outer_joint1", "idx31_gripper_l_inner_joint1"),
        ("idx81_gripper_r_outer_joint1", "idx71_gripper_r_inner_joint1"),
    ):
        assert robot.joint_map[outer].type == "prismatic"
        assert robot.joint_map[inner].mimic.joint == outer


def test_camera_frames_exist(robot: yourdfpy.URDF) -> None:
    cameras = yaml.safe_load((ROOT / "config" / "g1_joints.yaml").read_text())["cameras"]
    assert len(cameras) == 3
    for frame in cameras.values():
        assert frame in robot.link_map, frame


def test_policy_joint_list_matches_the_urdf(robot: yourdfpy.URDF) -> None:
    joints = yaml.safe_load((ROOT / "config" / "g1_joints.yaml").read_text())
    movable = set(robot.actuated_joint_names)
    for key in ("action_names", "state_names"):
        names = joints[key]
        assert len(names) == len(set(names)), f"{key} repeats a joint"
        assert set(names) <= movable, f"{key} names joints the URDF lacks: {set(names) - movable}"
    assert set(joints["action_names"]) == set(ARM_L + ARM_R) | {
        "idx41_gripper_l_outer_joint1",
        "idx81_gripper_r_outer_joint1",
    }
    assert joints["state_names"][: len(joints["action_names"])] == joints["action_names"]

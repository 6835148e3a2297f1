"""All sop_ros nodes of one robot, in the robot's namespace.

    ros2 launch sop_ros robot.launch.py robot_id:=g1_01 learner:=tcp/10.0.0.5:7447
    ros2 launch sop_ros robot.launch.py robot_id:=sim_1 sim:=true   # the simulated robot

Every node reads ``params_file`` (``config/robot_params.yaml`` for a G1,
``config/sim_params.yaml`` with ``sim:=true``); the arguments below override
the few settings that differ per robot.
"""

from __future__ import annotations

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import Command, LaunchConfiguration, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from sop_ros.nodes.registry import LINK_NODES, ROBOT_NODES, SIM_NODES

SHARE = Path(get_package_share_directory("sop_ros"))


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments and the robot's nodes."""
    robot_id = LaunchConfiguration("robot_id")
    sim = LaunchConfiguration("sim")
    default_params = PythonExpression(
        [
            f"'{SHARE / 'config' / 'sim_params.yaml'}' if '",
            sim,
            f"' == 'true' else '{SHARE / 'config' / 'robot_params.yaml'}'",
        ]
    )
    arguments = [
        DeclareLaunchArgument(
            "robot_id", default_value="robot_1", description="Robot name; also its ROS namespace"
        ),
        DeclareLaunchArgument(
            "sim", default_value="false", description="Drive the simulated robot instead of hardware"
        ),
        DeclareLaunchArgument(
            "params_file", default_value=default_params, description="ROS params file for every node"
        ),
        DeclareLaunchArgument(
            "joystick_config",
            default_value=str(SHARE / "config" / "joystick.yaml"),
            description="Joystick mapping (axes, deadman and episode buttons) for the teleop node",
        ),
        DeclareLaunchArgument(
            "learner",
            default_value="",
            description="Zenoh endpoint of the learner's router, e.g. tcp/10.0.0.5:7447",
        ),
        DeclareLaunchArgument(
            "zenoh_config",
            default_value=str(SHARE / "config" / "zenoh" / "robot.json5"),
            description="Zenoh session config (TLS and credentials go here)",
        ),
        DeclareLaunchArgument(
            "fleet", default_value="default", description="Fleet name in the Zenoh key space"
        ),
        DeclareLaunchArgument(
            "data_dir",
            default_value=".",
            description="Working directory of the robot's nodes: relative paths of the params file "
            "(sim: spool, weights) are under it",
        ),
        DeclareLaunchArgument(
            "inference_advantage",
            default_value="none",
            description="Advantage indicator the policy acts with (policy.inference_advantage): "
            "none for hg_dagger weights, positive for recap weights",
        ),
        DeclareLaunchArgument(
            "use_joy_driver",
            default_value="true",
            description="Start the joy driver for a gamepad (ignored in sim)",
        ),
    ]
    params_file = LaunchConfiguration("params_file")
    data_dir = LaunchConfiguration("data_dir")
    zenoh = {
        "zenoh.config_file": LaunchConfiguration("zenoh_config"),
        "zenoh.connect": LaunchConfiguration("learner"),
        "zenoh.fleet": LaunchConfiguration("fleet"),
    }
    advantage = LaunchConfiguration("inference_advantage")
    per_node = {
        "policy": {"policy.inference_advantage": advantage},
        "episode_manager": {"episodes.robot_id": robot_id},
        "teleop": {"mapping_file": LaunchConfiguration("joystick_config")},
        "bridge": {**zenoh, "upload.robot_id": robot_id},
        "param_update": zenoh,
    }
    nodes = [
        Node(
            package="sop_ros",
            executable=name,
            name=name,
            namespace=robot_id,
            parameters=[params_file, per_node.get(name, {})],
            cwd=data_dir,
            output="screen",
            emulate_tty=True,
        )
        for name in (*ROBOT_NODES, *LINK_NODES)
    ]
    nodes.extend(
        Node(
            package="sop_ros",
            executable=name,
            name=name,
            namespace=robot_id,
            parameters=[params_file],
            cwd=data_dir,
            condition=IfCondition(sim),
            output="screen",
        )
        for name in SIM_NODES
    )
    nodes.append(
        Node(
            package="joy",
            executable="joy_node",
            name="joy",
            namespace=robot_id,
            parameters=[{"autorepeat_rate": 20.0}],
            condition=IfCondition(
                PythonExpression(
                    ["'", LaunchConfiguration("use_joy_driver"), "' == 'true' and '", sim, "' != 'true'"]
                )
            ),
        )
    )
    description = ParameterValue(
        Command(["xacro ", str(SHARE / "urdf" / "agibot_g1.urdf.xacro")]), value_type=str
    )
    nodes.append(
        Node(
            package="robot_state_publisher",
            executable="robot_state_publisher",
            namespace=robot_id,
            parameters=[{"robot_description": description}],
            condition=UnlessCondition(sim),
        )
    )
    return LaunchDescription([*arguments, *nodes])

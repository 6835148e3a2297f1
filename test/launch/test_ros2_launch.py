"""The real ROS 2 path: colcon build, `source install/setup.bash`, `ros2 pkg`, `ros2 launch`.

Everything runs as a ROS user runs it, from README.md's robot install: a
workspace cloned from this repository and built with colcon (see
workspace.py), the upstream `ros2` command line, every node its own process.
Bags are read back with two independent readers (rosbags and mcap).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from workspace import (
    RECIPE,
    ROBOT_SIM,
    ROOT,
    ROSDEP,
    Launch,
    Workspace,
    free_port,
    unclean_lines,
    wait_for,
)

# The version a robot runs before any weights from the learner.
INITIAL = "v0000"
# launch's own patience after a Ctrl-C: sigterm_timeout (5 s) then sigkill_timeout (5 s).
LAUNCH_TIMEOUT_S = 10.0
# Generous bounds for a loaded 2-core machine; a healthy run takes a fraction.
START_S = 180.0


def read_bag(bag: Path) -> dict[str, int]:
    """Messages per topic read by rosbags, checked against the count mcap reads."""
    from mcap.reader import make_reader
    from rosbags.rosbag2 import Reader

    with Reader(bag) as reader:
        per_topic = {c.topic: c.msgcount for c in reader.connections}
        assert reader.message_count == sum(per_topic.values()) > 0, f"{bag}: {per_topic}"
    mcap_count = 0
    for path in sorted(bag.glob("*.mcap")):
        with path.open("rb") as stream:
            mcap_count += sum(1 for _ in make_reader(stream).iter_messages())
    assert mcap_count == sum(per_topic.values()), f"{bag}: mcap reads {mcap_count}, rosbags {per_topic}"
    return per_topic


def bags(spool: Path, *folders: str) -> list[Path]:
    """Finished bags in the spool's ``folders`` (ready/, uploaded/)."""
    found = []
    for folder in folders:
        if (spool / folder).is_dir():
            found += [p for p in (spool / folder).iterdir() if p.is_dir() and not p.name.startswith(".")]
    return sorted(found)


def assert_stopped_cleanly(launch: Launch, report) -> None:
    took = launch.interrupt(timeout_s=LAUNCH_TIMEOUT_S + 20.0)
    output = launch.output()
    assert not unclean_lines(output), "\n".join(unclean_lines(output)) + "\n" + output[-8000:]
    assert launch.left() == [], launch.left()
    report(f"{launch.command}: exited {took:.1f} s after SIGINT, return code {launch.process.returncode}")
    assert took < LAUNCH_TIMEOUT_S + 5.0


def test_readme_says_what_the_tests_run() -> None:
    readme = ROOT.joinpath("README.md").read_text()
    section = readme.split("## Running on a real ROS 2 robot", 1)[1].split("\n## ", 1)[0]
    lines = {line.split("#", 1)[0].strip() for line in section.splitlines()}
    assert [command for command in RECIPE if command not in lines] == []


def test_rosdep_finds_both_packages(workspace: Workspace) -> None:
    # rosdep's --from-paths crawls with catkin_pkg, which stops at the first package.xml:
    # each of the README's paths must yield its package, and sop_ros's sop_msgs is among them.
    from catkin_pkg.packages import find_packages

    paths = ROSDEP.split("--from-paths", 1)[1].split("--", 1)[0].split()
    found = {}
    for path in paths:
        found.update({pkg.name: pkg for pkg in find_packages(str(workspace.path / path)).values()})
    assert sorted(found) == ["sop_msgs", "sop_ros"]
    assert "sop_msgs" in {dep.name for dep in found["sop_ros"].build_depends + found["sop_ros"].exec_depends}


@pytest.mark.timeout(1200)
def test_colcon_build_and_ros2_pkg(workspace: Workspace, report) -> None:
    assert "Summary: 2 packages finished" in workspace.build_log, workspace.build_log[-3000:]
    done = workspace.run("ros2 pkg executables sop_ros", timeout=120)
    assert done.returncode == 0, done.stderr
    executables = {line.split()[1] for line in done.stdout.splitlines() if line.startswith("sop_ros ")}
    summary = [line for line in workspace.build_log.splitlines() if line.startswith("Summary:")]
    report(f"colcon build: {summary}; ros2 pkg executables sop_ros: {sorted(executables)}")
    nodes = {"bridge", "command_mux", "episode_manager", "learner", "param_update", "policy", "recorder"}
    assert nodes | {"sim_robot", "teleop"} <= executables
    where = workspace.run("ros2 pkg prefix sop_msgs", timeout=120)
    assert where.stdout.strip() == str(workspace.path / "install" / "sop_msgs"), where


@pytest.mark.timeout(1200)
def test_robot_launch_without_a_learner_records_and_stops_cleanly(
    workspace: Workspace, tmp_path: Path, report
) -> None:
    arguments = ROBOT_SIM.removeprefix("ros2 launch ")
    launch = Launch(workspace, arguments, cwd=tmp_path, log=tmp_path / "launch.log")
    spool = tmp_path / "spool"
    try:
        wait_for(
            lambda: len(bags(spool, "ready")) >= 3,
            timeout_s=START_S,
            what="3 episodes recorded into spool/ready",
            launches=(launch,),
        )
        output = launch.output()
        # The bridge runs and says the learner is not reached; nothing blocks.
        assert "zenoh router unreachable" in output, output[-5000:]
        # The bags' sop_msgs definitions come from the workspace's ament index.
        used = re.search(r"sop_msgs definitions from (\S+)", output)
        assert used and used.group(1).startswith(str(workspace.path / "install" / "sop_msgs")), output[-5000:]
        assert_stopped_cleanly(launch, report)
    finally:
        launch.kill()
    assert [p.name for p in (spool / "recording").iterdir()] == []  # no half-written bag
    recorded = bags(spool, "ready", "uploaded")
    commanded = 0
    for bag in recorded:  # every bag, the one closed (as aborted) at Ctrl-C included
        topics = read_bag(bag)
        assert topics.get("/sim_1/episode/events", 0) >= 1, topics
        assert topics.get("/sim_1/instruction", 0) == 1, topics  # once, episode after episode
        commanded += topics.get("/sim_1/command", 0) > 0
        report(f"{bag.name}: {sum(topics.values())} messages (rosbags = mcap), {topics}")
    assert commanded >= 3  # the episodes that ran to their end before Ctrl-C


def _episode_versions(bag: Path) -> tuple[str, ...]:
    """Weights versions the episode ran with; () while the bag moves from ready/ to uploaded/."""
    from sop_ros.core.errors import BagError
    from sop_ros.storage import episode_meta

    try:
        return episode_meta(bag).policy_versions
    except BagError:
        if bag.exists():
            raise
        return ()


@pytest.mark.timeout(1200)
def test_robot_started_before_its_learner_uploads_everything_and_swaps_weights(
    workspace: Workspace, tmp_path: Path, report
) -> None:
    port = free_port()
    share = workspace.path / "install" / "sop_ros" / "share" / "sop_ros"
    robot_dir, cloud_dir = tmp_path / "robot", tmp_path / "cloud"
    robot_dir.mkdir()
    cloud_dir.mkdir()
    spool = robot_dir / "spool"
    robot = Launch(
        workspace,
        f"sop_ros robot.launch.py robot_id:=early sim:=true learner:=tcp/127.0.0.1:{port}",
        cwd=robot_dir,
        log=tmp_path / "robot.log",
    )
    cloud = None
    try:
        wait_for(lambda: bags(spool, "ready"), timeout_s=START_S, what="a first episode", launches=(robot,))
        time.sleep(30.0)  # the robot records on its own for 30 s before the learner starts
        before = {p.name for p in bags(spool, "ready", "uploaded")}
        assert len(before) >= 2 and not bags(spool, "uploaded"), before
        base = {v for bag in bags(spool, "ready") for v in _episode_versions(bag)}
        cloud = Launch(
            workspace,
            f"sop_ros cloud.launch.py listen:=tcp/127.0.0.1:{port} "
            f"params_file:={share / 'config' / 'sim_learner_params.yaml'}",
            cwd=cloud_dir,
            log=tmp_path / "cloud.log",
        )
        store = cloud_dir / "store"

        def stored() -> set[str]:
            return {p.name for p in store.glob("*/*/*") if p.is_dir()} if store.is_dir() else set()

        wait_for(
            lambda: before <= {p.name for p in bags(spool, "uploaded")} and before <= stored(),
            timeout_s=START_S + 120.0,
            what=f"the {len(before)} episodes recorded before the learner uploaded and stored",
            launches=(robot, cloud),
        )

        def learned_versions() -> set[str]:
            return {v for bag in bags(spool, "ready", "uploaded") for v in _episode_versions(bag)} - base

        wait_for(
            lambda: len(learned_versions()) >= 2,
            timeout_s=420.0,
            what="episodes run with 2 weights versions published after the learner started",
            launches=(robot, cloud),
            poll_s=3.0,
        )
        assert_stopped_cleanly(robot, report)
        assert_stopped_cleanly(cloud, report)
    finally:
        robot.kill()
        if cloud is not None:
            cloud.kill()
    everything = bags(spool, "ready", "uploaded")
    assert before <= {p.name for p in everything}  # nothing recorded is lost
    for bag in everything:
        read_bag(bag)
        # Weights change only between episodes: each episode ran one version from start to end.
        assert len(_episode_versions(bag)) <= 1, (bag.name, _episode_versions(bag))
    uploaded = bags(spool, "uploaded")
    report(
        f"episodes recorded: {len(everything)}, {len(before)} of them before the learner started, "
        f"all {len(before)} of those uploaded and stored, {len(uploaded)} uploaded in all; versions run: "
        f"{sorted({v for bag in everything for v in _episode_versions(bag)})}, one per episode"
    )


@pytest.mark.timeout(1200)
def test_fleet_sim_uploads_and_swaps_weights_on_every_robot(
    workspace: Workspace, tmp_path: Path, report
) -> None:
    port = free_port()
    fleet = Launch(
        workspace,
        f"sop_ros fleet_sim.launch.py robots:=2 endpoint:=tcp/127.0.0.1:{port}",
        cwd=tmp_path,
        log=tmp_path / "fleet.log",
    )
    robots = ("robot_1", "robot_2")
    try:

        def robots_with(predicate) -> set[str]:
            spools = {r: bags(tmp_path / r / "spool", "ready", "uploaded") for r in robots}
            return {r for r in robots if any(predicate(bag) for bag in spools[r])}

        wait_for(
            lambda: robots_with(lambda bag: bag.parent.name == "uploaded") == set(robots),
            timeout_s=START_S + 180.0,
            what="both robots uploaded a bag",
            launches=(fleet,),
        )
        wait_for(
            lambda: robots_with(lambda bag: set(_episode_versions(bag)) - {INITIAL}) == set(robots),
            timeout_s=420.0,
            what="both robots ran an episode with weights from the learner",
            launches=(fleet,),
            poll_s=3.0,
        )
        assert_stopped_cleanly(fleet, report)
    finally:
        fleet.kill()
    for robot in robots:
        spool = tmp_path / robot / "spool"
        versions = sorted({v for bag in bags(spool, "ready", "uploaded") for v in _episode_versions(bag)})
        report(f"{robot}: {len(bags(spool, 'uploaded'))} bags uploaded, versions run {versions}")


@pytest.mark.timeout(1200)
def test_launch_pytest_file_passes_under_pytest_8(workspace: Workspace, tmp_path: Path, report) -> None:
    # launch_pytest does not load under pytest 9 (ros2/launch#979): its file runs under the
    # pytest 8 that `make setup` keeps in .venv/pytest8, with the workspace sourced.
    pytest8 = Path(sys.prefix) / "pytest8"
    if not pytest8.is_dir():
        pytest.fail(f"{pytest8} is missing: run `make setup`")
    env = dict(workspace.env, PYTHONPATH=f"{pytest8}{os.pathsep}{workspace.env.get('PYTHONPATH', '')}")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-o",
            "addopts=-ra",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(ROOT),
            str(ROOT / "test" / "launch" / "launch_pytest_robot.py"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    report("launch_pytest under pytest 8: " + " | ".join(done.stdout.strip().splitlines()[-2:]))
    assert "pytest-8." in done.stdout and done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert re.search(r"\b1 passed\b", done.stdout), done.stdout[-3000:]

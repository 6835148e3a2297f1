"""Every node, each a process of its own, stops cleanly on SIGINT or SIGTERM in the middle of an episode.

The simulated robot's whole graph (episode manager, recorder, policy, teleop,
command mux, simulated robot, bridge and param_update with no learner to
reach) plus a learner run as ``ros2 run`` would start them. Once an episode
is being recorded and every node reports on ``/diagnostics``, half of them
get SIGINT and the others SIGTERM, some a second signal soon after (as
``ros2 launch`` and a terminal both send one). Each must exit with status 0
within a bounded time, print no traceback, and the recorder must leave its
bag closed (aborted), never half-written. A second test pins the last bit
of that down: a signal that comes after the interpreter's finalisation (which
puts back the default action of signals handled in Python) must not kill a
node that has already shut down cleanly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from ros_helpers import free_port, spinning, wait_for
from sop_msgs.msg import EpisodeEvent

from sop_ros.core import topics
from sop_ros.nodes.common import RECORD_COMMAND_QOS
from sop_ros.nodes.registry import NODES
from sop_ros.nodes.share import share_path
from sop_ros.storage import episode_meta

pytestmark = pytest.mark.slow

NAMESPACE = "/sig"
# Which signal each node gets first, and the nodes that get a second one 0.2 s later.
FIRST = {
    "episode_manager": signal.SIGINT,
    "recorder": signal.SIGTERM,
    "policy": signal.SIGINT,
    "teleop": signal.SIGTERM,
    "command_mux": signal.SIGINT,
    "sim_robot": signal.SIGTERM,
    "bridge": signal.SIGINT,
    "param_update": signal.SIGTERM,
    "learner": signal.SIGINT,
}
SECOND = {
    "recorder": signal.SIGINT,
    "policy": signal.SIGINT,
    "bridge": signal.SIGTERM,
    "learner": signal.SIGTERM,
}
FORBIDDEN = ("Traceback", "RCLError", "terminate called", "Segmentation fault", "KeyboardInterrupt")
# Longest a node may take to exit after its signal (s), on a loaded 2-core machine.
EXIT_S = 20.0


def start(name: str, cwd: Path, log: Path, *params_files: Path, **params: str) -> subprocess.Popen:
    command = NODES[name].command(params, namespace=NAMESPACE)
    for path in params_files:
        command += ["--params-file", str(path)]
    return subprocess.Popen(
        command,
        cwd=cwd,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env=dict(os.environ, RCUTILS_COLORIZED_OUTPUT="0", PYTHONUNBUFFERED="1"),
    )


def test_every_node_exits_cleanly_on_sigint_and_sigterm_mid_episode(ros_context, tmp_path: Path) -> None:
    sim = share_path("config/sim_params.yaml")
    learner_params = share_path("config/sim_learner_params.yaml")
    # Episodes far longer than the test, so the signals come in the middle of one.
    long_episodes = tmp_path / "long_episodes.yaml"
    long_episodes.write_text(
        "/**/episode_manager:\n  ros__parameters:\n    episodes.time_budgets_s: [60.0, 60.0, 60.0]\n"
        "/**/sim_robot:\n  ros__parameters:\n    sim.time_budget_s: 60.0\n"
    )
    logs = {name: tmp_path / f"{name}.log" for name in FIRST}
    processes: dict[str, subprocess.Popen] = {}
    probe = rclpy.create_node("signal_probe", namespace=NAMESPACE, context=ros_context)
    lock = threading.Lock()
    reporting: dict[str, str] = {}
    starts: list[str] = []

    def on_diagnostics(msg: DiagnosticArray) -> None:
        with lock:
            for status in msg.status:
                reporting[status.name.rsplit("/", 1)[-1]] = status.message

    probe.create_subscription(DiagnosticArray, topics.DIAGNOSTICS, on_diagnostics, 50)
    probe.create_subscription(
        EpisodeEvent,
        topics.EPISODE_EVENTS,
        lambda m: starts.append(m.episode_id) if m.kind == EpisodeEvent.START else None,
        RECORD_COMMAND_QOS,
    )
    try:
        with spinning(ros_context, probe):
            for name in FIRST:
                if name == "learner":
                    processes[name] = start(
                        name,
                        tmp_path,
                        logs[name],
                        learner_params,
                        listen=f"tcp/127.0.0.1:{free_port()}",
                        **{"policy.device": "cpu"},
                    )
                else:
                    processes[name] = start(name, tmp_path, logs[name], sim, long_episodes)

            def mid_episode() -> bool:
                with lock:
                    recording = reporting.get("recorder", "").startswith("recording")
                    return recording and set(FIRST) <= set(reporting)

            def exited() -> dict[str, int]:
                return {name: p.returncode for name, p in processes.items() if p.poll() is not None}

            began = time.monotonic()
            wait_for(lambda: mid_episode() or exited(), timeout_s=150.0, poll_s=0.1)
            print(f"every node up, mid-episode, after {time.monotonic() - began:.1f} s")
            with lock:
                seen = dict(reporting)
            assert mid_episode() and not exited(), (
                f"not every node came up mid-episode: diagnostics {seen}, exited {exited()}"
            )
            assert starts, "no episode started"

            for name, process in processes.items():
                process.send_signal(FIRST[name])
            time.sleep(0.2)
            for name, signum in SECOND.items():
                if processes[name].poll() is None:
                    processes[name].send_signal(signum)
            signalled = time.monotonic()
            deadline = signalled + EXIT_S
            codes: dict[str, int | None] = {}
            exit_s: dict[str, float] = {}
            while time.monotonic() < deadline and len(codes) < len(processes):
                for name, process in processes.items():
                    if name not in codes and process.poll() is not None:
                        codes[name], exit_s[name] = process.returncode, time.monotonic() - signalled
                time.sleep(0.05)
            print("seconds from the first signal to exit:", {k: round(v, 2) for k, v in exit_s.items()})
    finally:
        stuck = [p for p in processes.values() if p.poll() is None]
        for process in stuck:
            process.send_signal(signal.SIGUSR1)  # the node prints every thread's stack to its log
        time.sleep(1.0 if stuck else 0.0)
        for process in stuck:
            process.kill()
            process.wait()

    outputs = {name: log.read_text() for name, log in logs.items()}
    for name in FIRST:
        how = FIRST[name].name + (f" then {SECOND[name].name}" if name in SECOND else "")
        code = codes.get(name, f"none within {EXIT_S} s")
        assert code == 0, f"{name} ({how}): exit {code}\n{outputs[name]}"
        bad = [word for word in FORBIDDEN if word in outputs[name]]
        assert not bad, f"{name} ({how}) printed {bad}:\n{outputs[name]}"

    # The episode running when the recorder stopped is closed as aborted, nothing left half-written.
    spool = tmp_path / "spool"
    assert not list((spool / "recording").glob("*.partial")), outputs["recorder"]
    bags = {path.name: episode_meta(path) for path in (spool / "ready").iterdir()}
    assert starts[-1] in bags, outputs["recorder"]
    assert bags[starts[-1]].outcome.value == "aborted"


@pytest.mark.parametrize("second", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_last_of_the_exit_does_not_kill_a_node(peer, second: signal.Signals) -> None:
    """A second Ctrl-C (or launch's SIGTERM) after a clean shutdown must not turn exit 0 into -2 / -15."""
    child = peer("exit_pause_peer")
    assert child.stdout.readline().strip() == "spinning"
    child.send_signal(signal.SIGTERM)
    assert child.stdout.readline().strip() == "closed"
    time.sleep(0.5)  # into pause(), after the interpreter's finalisation
    child.send_signal(second)
    time.sleep(0.5)
    alive = child.poll() is None
    child.kill()  # it would wait in pause() for ever
    child.wait()
    assert alive, f"killed by the second signal: status {child.returncode}"

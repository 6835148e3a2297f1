"""Benchmark: CPU of one simulated robot's node graph, by how its nodes are spun.

``sop robot --sim`` runs a robot's whole graph (policy, teleop, command mux,
episode manager, recorder, simulated robot and operator) in one process. The
baseline of this run spins it as the graph did before: two rclpy
``MultiThreadedExecutor`` s (control nodes on one, policy and recorder on the
other). The graph as shipped gives every node a ``SingleThreadedExecutor`` and a
thread of its own (``sop_ros.nodes.spinning``). Each arrangement runs in a
fresh process for ``--duration-s``; the bench reports the process's CPU time,
the episodes recorded and the commands the mux sent (10 Hz is the robot's
pace). Writes bench/out/graph/result.json and a PNG.

    .venv/bin/python bench/graph/run.py [--duration-s 60]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "out" / "graph"
ARRANGEMENTS = ("multi_threaded", "node_per_thread")
# The nodes the graph used to spin on its control executor.
CONTROL_NODES = {"episode_manager", "teleop", "command_mux", "sim_robot"}


def run_child(arrangement: str, duration_s: float) -> dict[str, float]:
    """Spin one graph in this process the given way; return what it used and did."""
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import MultiThreadedExecutor
    from sensor_msgs.msg import JointState

    from sop_ros.core import topics
    from sop_ros.core.spool import Spool
    from sop_ros.nodes.common import COMMAND_QOS
    from sop_ros.nodes.robot_graph import RobotGraph, RobotGraphConfig

    spool = Path(tempfile.mkdtemp(prefix="bench_graph_"))
    context = Context()
    rclpy.init(context=context)
    config = RobotGraphConfig(
        robot_id="bench", parameters={"recorder": {"spool_dir": str(spool)}, "sim_robot": {"seed": 1}}
    )
    graph = RobotGraph(config, context=context)
    probe = rclpy.create_node("command_counter", namespace="bench", context=context)
    commands = [0]
    probe.create_subscription(
        JointState, topics.COMMAND, lambda _: commands.__setitem__(0, commands[0] + 1), COMMAND_QOS
    )
    if arrangement == "multi_threaded":
        control = MultiThreadedExecutor(num_threads=2, context=context)
        rest = MultiThreadedExecutor(num_threads=4, context=context)
        for name, node in graph.nodes.items():
            (control if name in CONTROL_NODES else rest).add_node(node)
        rest.add_node(probe)
        for executor in (control, rest):
            threading.Thread(target=executor.spin, daemon=True).start()
    else:
        graph.add_node(probe)
        graph.spin_in_thread()
    time.sleep(5.0)  # start-up (policy build, discovery) is not what is measured
    before, counted = resource.getrusage(resource.RUSAGE_SELF), commands[0]
    time.sleep(duration_s)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    sent = commands[0] - counted
    ready = Spool(spool).ready
    episodes = len(list(ready.glob("*"))) if ready.is_dir() else 0
    return {"cpu_core_share": cpu_s / duration_s, "commands_per_s": sent / duration_s, "episodes": episodes}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--child", choices=ARRANGEMENTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child, args.duration_s)), flush=True)
        os._exit(0)  # skip the executors' and nodes' teardown: only the figures matter here
    OUT.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, float]] = {}
    for arrangement in ARRANGEMENTS:
        env = dict(
            os.environ,
            ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
            ROS_DOMAIN_ID=str(random.randrange(10, 100)),
            PYTHONUNBUFFERED="1",
        )
        command = [sys.executable, __file__, "--child", arrangement, "--duration-s", str(args.duration_s)]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.duration_s + 120)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            print(done.stdout[-2000:], done.stderr[-2000:], file=sys.stderr)
            raise SystemExit(f"{arrangement}: the graph process failed (exit {done.returncode})")
        results[arrangement] = json.loads(lines[-1])
        r = results[arrangement]
        print(
            f"{arrangement:>16}: {r['cpu_core_share']:6.0%} of a core, "
            f"{r['commands_per_s']:5.1f} commands/s, {r['episodes']} episodes in {args.duration_s:.0f} s"
        )
    base, new = results["multi_threaded"], results["node_per_thread"]
    ratio = new["cpu_core_share"] / base["cpu_core_share"]
    print(f"CPU of the graph, node per thread / multi-threaded executors: {ratio:.2f}x")
    summary = {
        "date": time.strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
        "duration_s": args.duration_s,
        "results": results,
        "cpu_ratio": ratio,
    }
    (OUT / "result.json").write_text(json.dumps(summary, indent=2))
    plot(results, OUT / "result.png")
    print(f"wrote {OUT / 'result.json'} and {OUT / 'result.png'}")
    return 0


def plot(results: dict[str, dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    axes[0].bar(names, [100 * results[n]["cpu_core_share"] for n in names], color=["#bbbbbb", "#3b7dd8"])
    axes[0].set_ylabel("CPU (% of one core)")
    axes[0].set_title("one simulated robot's graph")
    axes[1].bar(names, [results[n]["commands_per_s"] for n in names], color=["#bbbbbb", "#3b7dd8"])
    axes[1].axhline(10.0, color="k", linestyle="--", linewidth=0.8)
    axes[1].set_ylabel("mux commands per second (pace 10)")
    axes[1].set_title("control loop")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())

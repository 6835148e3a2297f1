"""``sop demo``: a learner and N simulated robots on this machine, running SOP online.

1. The scripted expert records demonstration bags (cached), and a base policy
   is trained offline from them (cached).
2. The learner starts in this process with an embedded Zenoh router on a
   loopback port: ingest, offline + online buffers, the chosen algorithm,
   weights published every K steps.
3. Each robot runs its whole ROS 2 graph in a process of its own
   (``sop robot --sim``: policy, teleop, mux, episode manager, recorder,
   bridge, parameter update, simulated robot and its scripted operator).
4. A live line shows episodes, success and human time; at the end the robots
   stop, every bag still in a robot's spool is uploaded (nothing recorded is
   lost), and a summary table, JSON and a PNG plot are written.

Threads: training runs on a thread of this process; ingest workers report
episodes to the tracker; the main thread starts and watches the robots.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from sop_ros.core.interrupts import ignoring_interrupts
from sop_ros.core.policy import Pi0Policy
from sop_ros.core.types import format_version
from sop_ros.demo.base_policy import BaseRecipe, base_policy
from sop_ros.demo.demonstrations import demonstrations
from sop_ros.demo.evaluate import VersionJudge
from sop_ros.demo.progress import FleetTracker
from sop_ros.learner.builder import LearnerSettings
from sop_ros.learner.loop import LearnerConfig
from sop_ros.learner.service import CloudConfig, CloudLearner
from sop_ros.nodes.share import share_path
from sop_ros.sim.policy import sim_policy_config
from sop_ros.transport import BagUploader, SpoolUploader, UploadConfig, open_session

__all__ = ["DemoOptions", "run_demo"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class DemoOptions:
    """What ``sop demo`` runs."""

    robots: int = 2
    algorithm: str = "hg_dagger"
    minutes: float = 8.0
    out: Path = Path("out/demo")
    # The packaged base policy was trained with this recipe (on a GPU); another one trains here.
    demos_per_task: int = 100
    base_steps: int = 5000
    base_batch_size: int = 64
    publish_every_steps: int = 25
    batch_size: int = 32
    lr: float = 3e-4
    # The newest weights are evaluated alone this often, on this many held-out episodes per task
    # (and on judge_final_episodes per task for the base and the last version).
    judge_period_s: float = 120.0
    judge_episodes: int = 10
    judge_final_episodes: int = 40


def run_demo(options: DemoOptions) -> dict[str, object]:
    """Run the demo; returns the summary that was also written to ``out/summary.json``."""
    out = options.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    policy_config = sim_policy_config()
    if options.algorithm == "recap":
        # RECAP's policy acts on "advantage: positive" prompts at run time.
        policy_config = replace(policy_config, inference_advantage="positive")
    say(f"output in {out}")

    demos = demonstrations(out / "demos", episodes_per_task=options.demos_per_task, say=say)
    recipe = BaseRecipe(
        demos_per_task=options.demos_per_task,
        train_steps=options.base_steps,
        batch_size=options.base_batch_size,
    )
    base = base_policy(out / "base", demos, policy_config, recipe)
    origin = json.loads((out / "base" / "base.json").read_text()).get("trained_on")
    say(
        f"base policy: π0 (tiny) trained offline on the demonstration bags, {recipe.train_steps} steps"
        + (f" (packaged: trained on {origin})" if origin else "")
    )
    tracker = FleetTracker()
    judge = VersionJudge(
        lambda: Pi0Policy(policy_config),
        episodes_per_task=options.judge_episodes,
        period_s=options.judge_period_s,
        on_result=lambda version, scores: tracker.add_evaluation(
            version, {task: score.success_rate for task, score in scores.items()}
        ),
    )
    first = judge.judge(format_version(0), base, episodes_per_task=options.judge_final_episodes)
    say(f"base policy alone on held-out layouts: {_rates(first)}")

    port = _free_port()
    endpoint = f"tcp/127.0.0.1:{port}"
    defaults = LearnerSettings()
    settings = LearnerSettings(
        algorithm=options.algorithm,
        store_dir=str(out / "store"),
        offline_dir=str(demos),
        checkpoint_dir=str(out / "learner"),
        log_dir=str(out / "tensorboard"),
        loop=LearnerConfig(
            batch_size=options.batch_size,
            publish_every_steps=options.publish_every_steps,
            progress_bar=False,
            # The base weights carry the normalisation the robots already use.
            fit_norm_stats=False,
        ),
        # Fine-tuning a trained base: a gentler step than training from scratch.
        hg_dagger=replace(defaults.hg_dagger, lr=options.lr),
        recap=replace(defaults.recap, lr=options.lr),
    )
    config = CloudConfig(listen=endpoint, initial_weights=str(base), policy=policy_config, learner=settings)
    cloud = CloudLearner(
        config,
        zenoh_config=share_path("config/zenoh/test_router.json5"),
        on_episode=lambda stored: tracker.add(stored.meta),
        on_publish=lambda path, manifest: _published(path, manifest, tracker, judge),
    )
    stop = threading.Event()
    trainer = threading.Thread(target=cloud.run, args=(stop,), name="demo-learner", daemon=True)
    trainer.start()
    every = options.publish_every_steps
    say(f"learner listening on {endpoint} ({options.algorithm}, new weights every {every} steps)")

    robots = _start_robots(options.robots, endpoint, base, out, policy_config.inference_advantage)
    judge.start()
    deadline = time.monotonic() + options.minutes * 60
    try:
        while time.monotonic() < deadline:
            time.sleep(10.0)
            dead = [name for name, proc in robots.items() if proc.poll() is not None]
            if dead:
                raise RuntimeError(f"robot process(es) {dead} exited; see {out / 'logs'}")
            elapsed_min = options.minutes - (deadline - time.monotonic()) / 60
            say(f"[{elapsed_min:4.1f} min] {tracker.status_line()}")
    except KeyboardInterrupt:
        say("interrupted: stopping early, keeping everything recorded so far")
    finally:
        # A second Ctrl-C must not cut this short: the spools' last bags are uploaded here, and the
        # learner's threads are stopped (else the process would hang on exit, waiting for them).
        with ignoring_interrupts(lambda: say("still stopping: uploading what the robots recorded")):
            _stop_robots(robots)
            judge.close()
            say("robots stopped; uploading what is still in their spools")
            leftover = _flush_spools(out, endpoint)
            stop.set()
            trainer.join(timeout=120)
            cloud.close()
    if judge.newest_offered is not None:
        last, path = judge.newest_offered
        say(f"evaluating the last weights {last} alone on held-out layouts")
        judge.judge(last, path, episodes_per_task=options.judge_final_episodes)

    summary = _write_report(out, tracker, options, leftover)
    return summary


def _published(path: Path, manifest, tracker: FleetTracker, judge: VersionJudge) -> None:
    version = format_version(manifest.version)
    tracker.add_publish(version)
    judge.offer(version, path)


def _mean(success: dict[str, float]) -> float:
    return sum(success.values()) / len(success)


def _rates(scores) -> str:
    return ", ".join(f"{task} {score.success_rate:.0%}" for task, score in scores.items())


def say(message: str) -> None:
    """Print a demo progress line."""
    print(f"[sop demo] {message}", flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_robots(
    count: int, endpoint: str, base: Path, out: Path, advantage: str
) -> dict[str, subprocess.Popen]:
    env = dict(
        os.environ,
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        ROS_DOMAIN_ID=os.environ.get("ROS_DOMAIN_ID", str(random.randrange(10, 100))),
        PYTHONUNBUFFERED="1",
    )
    client = share_path("config/zenoh/test_client.json5")
    (out / "logs").mkdir(exist_ok=True)
    robots = {}
    for i in range(1, count + 1):
        name = f"robot_{i}"
        spool = out / "robots" / name / "spool"
        sets = {
            "policy:initial_weights": str(base),
            "recorder:spool_dir": str(spool),
            "bridge:spool_dir": str(spool),
            "param_update:staging_dir": str(out / "robots" / name / "weights"),
            "sim_robot:seed": str(i),
            "policy:policy.inference_advantage": advantage,
        }
        command = [
            sys.executable,
            "-m",
            "sop_ros.cli",
            "robot",
            "--sim",
            "--robot-id",
            name,
            "--learner",
            endpoint,
            "--zenoh-config",
            str(client),
        ]
        for key, value in sets.items():
            command += ["--set", f"{key}={value}"]
        log = (out / "logs" / f"{name}.log").open("w")
        robots[name] = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        say(f"started {name} (pid {robots[name].pid}), log in {out / 'logs' / (name + '.log')}")
    return robots


def _stop_robots(robots: dict[str, subprocess.Popen]) -> None:
    for proc in robots.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    for name, proc in robots.items():
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            _log.warning("%s did not stop in 60 s; killing it", name)
            proc.kill()
            proc.wait()


def _flush_spools(out: Path, endpoint: str) -> int:
    """Upload every bag left in a robot's ready/ (e.g. the episode cut by the stop); return how many."""
    session = open_session(share_path("config/zenoh/test_client.json5"), {"connect/endpoints": [endpoint]})
    count = 0
    try:
        for spool in sorted((out / "robots").glob("*/spool")):
            robot = spool.parent.name
            uploader = SpoolUploader(BagUploader(session, UploadConfig(robot_id=robot)), spool)
            count += len(uploader.run_once())
    finally:
        session.close()
    return count


def _write_report(out: Path, tracker: FleetTracker, options: DemoOptions, leftover: int) -> dict[str, object]:
    phases = tracker.phase_table()
    versions = tracker.table()
    store_ids = {p.name for p in (out / "store").glob("*/*/*") if p.is_dir()}
    recorded = {
        p.name
        for spool in (out / "robots").glob("*/spool")
        for folder in ("ready", "uploaded", "rejected")
        for p in (spool / folder).glob("*")
        if p.is_dir()
    }
    summary = {
        "robots": options.robots,
        "algorithm": options.algorithm,
        "minutes": options.minutes,
        "episodes": len(tracker.records),
        "published_versions": [v for _, v in tracker.published],
        "episodes_recorded": len(recorded),
        "episodes_stored": len(recorded & store_ids),
        "episodes_missing_from_store": sorted(recorded - store_ids),
        "uploaded_at_stop": leftover,
        "by_task": phases,
        "by_version": versions,
        "evaluations": [
            {"minutes": round(when / 60, 2), "version": version, "success": success}
            for when, version, success in tracker.evaluations
        ],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    tracker.plot(out / "sop_demo.png")
    evaluations = tracker.evaluations
    first_version, first_success = (evaluations[0][1], dict(evaluations[0][2])) if evaluations else ("-", {})
    last_version, last_success = (evaluations[-1][1], dict(evaluations[-1][2])) if evaluations else ("-", {})
    lines = [
        "",
        f"SOP demo: {options.robots} robots, {options.algorithm}, {options.minutes:g} min, "
        f"{len(tracker.records)} episodes, {len(tracker.published)} weight versions published",
        "",
        "                            fleet, first → last third of episodes      policy alone, held-out",
        f"{'task':<18}{'episodes':>9}{'success without help':>24}{'human time':>18}"
        f"{first_version + ' → ' + last_version:>24}",
    ]

    def arrow(before: float | None, after: float | None, width: int) -> str:
        text = "-" if before is None or after is None else f"{before:.0%} → {after:.0%}"
        return text.rjust(width)

    def row(task: str, episodes: int, fleet: dict[str, float]) -> str:
        return (
            f"{task:<18}{episodes:>9}"
            + arrow(fleet["first_success_rate"], fleet["last_success_rate"], 24)
            + arrow(fleet["first_human_share"], fleet["last_human_share"], 18)
            + arrow(first_success.get(task), last_success.get(task), 24)
        )

    for fleet in phases:
        lines.append(row(fleet["task"], fleet["episodes"], fleet))
    if phases:
        keys = ("first_success_rate", "last_success_rate", "first_human_share", "last_human_share")
        mean = {key: sum(r[key] for r in phases) / len(phases) for key in keys}
        if first_success and last_success:
            first_success["mean"], last_success["mean"] = _mean(first_success), _mean(last_success)
        lines += [
            row("mean", len(tracker.records), mean),
            "",
            "success without help: fleet episodes the policy finished with no takeover; "
            f"held-out: the policy alone on {options.judge_final_episodes} new layouts per task",
        ]
    lost = summary["episodes_missing_from_store"]
    lines += [
        "",
        f"episodes recorded {len(recorded)}, stored by the learner {len(recorded & store_ids)}"
        + (f"; NOT stored: {lost}" if lost else " (none lost)"),
        f"plot:        {out / 'sop_demo.png'}",
        f"summary:     {out / 'summary.json'}",
        f"bags:        {out / 'store'} (learner), {out / 'robots'} (robot spools)",
        f"weights:     {out / 'learner' / 'weights'}",
        f"logs:        {out / 'logs'}, TensorBoard: {out / 'tensorboard'}",
    ]
    print("\n".join(lines), flush=True)
    return summary

"""``sop demo``: a learner and N simulated robots on this machine, running SOP online.

1. The scripted expert records demonstration bags (cached), and a base policy
   is trained offline from them (cached). The robots then work under
   deployment conditions those demonstrations do not cover (``conditions``,
   see :mod:`sop_ros.sim.tasks`): the distribution shift SOP exists for.
2. The learner starts in this process with an embedded Zenoh router on a
   loopback port: ingest, offline + online buffers, the chosen algorithm,
   weights published every K steps.
3. Each robot runs its whole ROS 2 graph in a process of its own
   (``sop robot --sim``: policy, teleop, mux, episode manager, recorder,
   bridge, parameter update, simulated robot and its scripted operator).
4. A live line shows episodes, success and human time; at the end the robots
   stop, every bag still in a robot's spool is uploaded (nothing recorded is
   lost), the base and the last weights are evaluated alone on enough
   held-out layouts of both distributions for 95 % intervals of ±10 points,
   and a summary table, JSON and a PNG plot are written.

``seed`` drives the robots' layouts, the held-out layouts, the learner's
sampling and its training noise.

Threads: training runs on a thread of this process; ingest workers report
episodes to the tracker; the main thread starts and watches the robots.
"""

from __future__ import annotations

import hashlib
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
from dataclasses import replace
from pathlib import Path

from sop_ros.core.interrupts import ignoring_interrupts
from sop_ros.core.policy import make_policy
from sop_ros.core.types import format_version
from sop_ros.demo.options import DemoOptions
from sop_ros.demo.progress import FleetTracker
from sop_ros.demo.report import write_report
from sop_ros.learner.algorithms import policy_config_for
from sop_ros.learner.builder import LearnerSettings
from sop_ros.learner.loop import LearnerConfig
from sop_ros.learner.service import CloudConfig, CloudLearner
from sop_ros.nodes.share import share_path
from sop_ros.sim import SimConfig
from sop_ros.sim.policy import sim_policy_config
from sop_ros.simlab.base_policy import BaseRecipe, base_policy
from sop_ros.simlab.demonstrations import demonstrations
from sop_ros.simlab.evaluate import TaskScore, VersionJudge
from sop_ros.transport import BagUploader, SpoolUploader, UploadConfig, open_session

__all__ = ["DemoOptions", "run_demo"]

_log = logging.getLogger(__name__)


def run_demo(options: DemoOptions) -> dict[str, object]:
    """Run the demo; returns the summary that was also written to ``out/summary.json``."""
    import torch

    out = options.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    earlier = set_aside_previous_run(out)
    if earlier is not None:
        say(f"the previous run's learner, bags, logs and report moved to {earlier}; this one starts afresh")
    # The learner's flow-matching noise and times come from torch's global generator.
    torch.manual_seed(options.seed)
    # Learner, robots and judge run the policy the algorithm trains (RECAP's prompts carry its indicator).
    policy_config = policy_config_for(options.algorithm, sim_policy_config())
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
    deployed, other = (
        SimConfig(conditions=options.conditions),
        SimConfig(conditions=_other(options.conditions)),
    )
    judge = VersionJudge(
        lambda: make_policy(policy_config),
        episodes_per_task=options.judge_episodes,
        period_s=options.judge_period_s,
        on_result=lambda version, scores: tracker.add_evaluation(
            version, {task: score.rate for task, score in scores.items()}
        ),
        sim=deployed,
        # Held-out layouts of their own per seed, disjoint from the demonstrations' and the fleet's.
        seed=900_000 + 1000 * options.seed,
    )
    # The base is judged while the robots start and the learner takes its first steps (with a
    # policy copy of its own); the periodic judge starts once that is done.
    base_judgement = _BaseJudgement(
        lambda: _judge_base(judge, base, (deployed, other), options, policy_config, tracker),
        then=judge.start,
    )

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
        sampler=replace(defaults.sampler, seed=options.seed),
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

    robots = _start_robots(options, endpoint, base, out, policy_config.inference_advantage)
    base_judgement.start()
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
    final = {"base": base_judgement.result()}
    if judge.newest_offered is not None:
        last, path = judge.newest_offered
        say(f"evaluating the last weights {last} alone on held-out layouts of both distributions")
        final[last] = {
            options.conditions: judge.judge(last, path, episodes_per_task=options.judge_final_episodes),
            other.conditions: judge.judge(
                last, path, episodes_per_task=options.forgetting_episodes, sim=other, report=False
            ),
        }
    return write_report(out, tracker, options, leftover, final)


class _BaseJudgement(threading.Thread):
    """Runs ``work`` on a thread of its own, then ``then``; :meth:`result` waits and re-raises."""

    def __init__(self, work, *, then) -> None:
        super().__init__(name="demo-base-judge", daemon=True)
        self._work, self._then = work, then
        self._result = None
        self._error: BaseException | None = None

    def run(self) -> None:
        try:
            self._result = self._work()
            self._then()
        except BaseException as err:  # handed to the main thread by result()
            self._error = err

    def result(self):
        """The work's result, once done (the main thread waits for it)."""
        self.join()
        if self._error is not None:
            raise self._error
        return self._result


def _judge_base(
    judge: VersionJudge,
    base: Path,
    sims: tuple[SimConfig, SimConfig],
    options: DemoOptions,
    policy_config,
    tracker: FleetTracker,
) -> dict[str, dict[str, TaskScore]]:
    """The base weights alone on held-out layouts of both distributions (deployed first)."""
    own = VersionJudge(
        judge.make_policy, episodes_per_task=1, period_s=1.0, on_result=lambda *_: None, seed=judge.seed
    )
    scores = {}
    for sim, episodes in zip(sims, (options.judge_final_episodes, options.forgetting_episodes), strict=True):
        scores[sim.conditions] = _cached_judgement(own, base, sim, episodes, policy_config)
        if sim is sims[0]:
            tracker.add_evaluation(
                format_version(0), {task: s.rate for task, s in scores[sim.conditions].items()}, at_s=0.0
            )
        say(f"base policy alone on held-out {sim.conditions} layouts: {_rates(scores[sim.conditions])}")
    return scores


def _other(conditions: str) -> str:
    return "demonstrations" if conditions == "deployment" else "deployment"


# What one run writes (its learner's checkpoints, the stored and spooled bags, logs, report); the
# demonstrations and the base policy are caches every run shares.
RUN_STATE = ("learner", "store", "robots", "logs", "tensorboard", "summary.json", "sop_demo.png")


def set_aside_previous_run(out: Path) -> Path | None:
    """Move what an earlier run left in ``out`` to ``out/earlier/<time>/``, so a run never resumes one.

    Returns:
        Where it went, or None when ``out`` held no run.
    """
    found = [out / name for name in RUN_STATE if (out / name).exists()]
    if not found:
        return None
    when = max(path.stat().st_mtime for path in found)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(when))
    target = out / "earlier" / stamp
    suffix = 1
    while target.exists():
        suffix += 1
        target = out / "earlier" / f"{stamp}-{suffix}"
    target.mkdir(parents=True)
    for path in found:
        path.rename(target / path.name)
    return target


def _cached_judgement(
    judge: VersionJudge, weights: Path, sim: SimConfig, episodes: int, policy_config
) -> dict[str, TaskScore]:
    """Judge the base weights on ``sim``'s layouts once; later runs with the same inputs read the result."""
    key = {
        "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "policy": repr(replace(policy_config, device="auto")),
        "conditions": sim.conditions,
        "episodes_per_task": episodes,
        "seed": judge.seed,
    }
    cache = weights.parent / f"heldout_{sim.conditions}_{episodes}_{judge.seed}.json"
    if cache.is_file():
        saved = json.loads(cache.read_text())
        if saved.get("key") == key:
            return {task: TaskScore(**score) for task, score in saved["scores"].items()}
    scores = judge.judge(format_version(0), weights, episodes_per_task=episodes, sim=sim, report=False)
    cache.write_text(json.dumps({"key": key, "scores": {t: vars(s) for t, s in scores.items()}}, indent=1))
    return scores


def _published(path: Path, manifest, tracker: FleetTracker, judge: VersionJudge) -> None:
    version = format_version(manifest.version)
    tracker.add_publish(version)
    judge.offer(version, path)


def _rates(scores: dict[str, TaskScore]) -> str:
    return ", ".join(f"{task} {score.rate.text()}" for task, score in scores.items())


def say(message: str) -> None:
    """Print a demo progress line."""
    print(f"[sop demo] {message}", flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_robots(
    options: DemoOptions, endpoint: str, base: Path, out: Path, advantage: str
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
    for i in range(1, options.robots + 1):
        name = f"robot_{i}"
        spool = out / "robots" / name / "spool"
        sets = {
            "policy:initial_weights": str(base),
            "recorder:spool_dir": str(spool),
            "bridge:spool_dir": str(spool),
            "param_update:staging_dir": str(out / "robots" / name / "weights"),
            # Each robot's layouts follow from the seed and its name (robot_1, robot_2, ...).
            "sim_robot:seed": str(options.seed),
            "sim_robot:sim.conditions": options.conditions,
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

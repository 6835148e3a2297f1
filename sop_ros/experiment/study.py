"""The SOP study in simulation: which algorithm, how many robots, which data mix.

Each *arm* runs the whole loop on one simulated clock: a :class:`SimFleet` of
robots with operators, the real learner (offline buffers from the
demonstration bags, online buffers fed with every fleet bag, the chosen
algorithm, weights published every K steps) and, every ``eval_every_s``, a
closed-loop evaluation of the newest published weights on held-out layouts of
all three tasks with no operator. The learner gets a fixed number of
updates per simulated second (``learner_steps_per_s``), the same in every
arm, so fleets of different sizes share one learner as they would in the
cloud; a 4-robot fleet simply brings four times the experience. With
``learner_per_robot`` the rate is per robot instead: a learner whose compute
grows with the fleet, so every fleet size gets the same updates per episode.

Runs on the calling thread; :func:`run_arms` may spread arms over processes.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import multiprocessing
import os
import platform
import shutil
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

from sop_ros.core.config import check_ranges, differing_settings, setting
from sop_ros.core.errors import ConfigError
from sop_ros.core.policy import PolicyConfig, make_policy
from sop_ros.core.spool import Spool
from sop_ros.core.types import format_version
from sop_ros.experiment.fleet import ActorPool, EpisodeResult, FleetConfig, SimFleet
from sop_ros.learner.algorithms import policy_config_for
from sop_ros.learner.algorithms.base import OptimizerConfig
from sop_ros.learner.builder import LearnerSettings, build_learner
from sop_ros.learner.loop import LearnerConfig
from sop_ros.learner.sampler import SamplerConfig
from sop_ros.sim import TASK_NAMES, ExpertConfig, SimConfig
from sop_ros.sim.tasks import CONDITIONS
from sop_ros.simlab.evaluate import TaskScore, evaluate_policy

__all__ = ["ARMS", "Arm", "ArmResult", "StudyConfig", "run_arm", "run_arms", "run_dir_name", "time_to_target"]

_log = logging.getLogger(__name__)

# What a finished arm leaves behind for --resume (beside its learner checkpoint).
_STATE = "state.json"
_STATE_WEIGHTS = "state_weights.safetensors"

MIXING = ("adaptive", "fixed", "online_only", "offline_only")

# The learner's own defaults, which the study follows unless told otherwise.
_LOOP = LearnerConfig()
_OPTIMIZER = OptimizerConfig()


@dataclass(frozen=True, kw_only=True)
class Arm:
    """One configuration of the study."""

    name: str
    algorithm: str = "hg_dagger"
    robots: int = 4
    # adaptive: loss-driven p_on (α boost); fixed: p_on = 0.5; online_only: p_on = 1;
    # offline_only: the control arm, the learner never sees the fleet's episodes (p_on = 0) and
    # spends the same updates on the demonstrations alone (the fleet still runs its policy).
    mixing: str = "adaptive"

    def __post_init__(self) -> None:
        if self.mixing not in MIXING:
            raise ConfigError(f"mixing must be one of {MIXING}, got {self.mixing!r}")


# Every arm of the study; the first is the reference the others are compared with.
ARMS = (
    Arm(name="hg_dagger_4"),
    Arm(name="recap_4", algorithm="recap"),
    Arm(name="hg_dagger_2", robots=2),
    Arm(name="hg_dagger_1", robots=1),
    Arm(name="hg_dagger_4_fixed", mixing="fixed"),
    Arm(name="hg_dagger_4_online_only", mixing="online_only"),
    Arm(name="offline_only_4", mixing="offline_only"),
)


@dataclass(frozen=True, kw_only=True)
class StudyConfig:
    """Sizes of the study (the same for every arm)."""

    budget_s: float = setting(1200.0, "simulated wall-clock time each arm runs", unit="s", low=1.0)
    # One update of 256 costs about as much GPU time as 2.5 updates of 64 for the tiny policy and
    # learns far more: from the same demonstrations, 3000 updates of 256 at lr 1e-3 reach 0.85
    # mean success where 6000 updates of 64 at lr 1e-3 reach 0.71
    # (docs/results/learner_settings_h100_2026-11-25/).
    learner_steps_per_s: float = setting(1.0, "learner updates per simulated second", unit="1/s", low=0.0)
    learner_per_robot: bool = setting(
        False, "learner_steps_per_s is per robot: the learner's compute grows with the fleet"
    )
    batch_size: int = setting(256, "samples per learner update", low=1)
    publish_every_steps: int = setting(25, "publish weights every this many updates", low=1)
    lr: float = setting(1e-3, "learning rate of the policy", low=0.0)
    grad_clip_norm: float = setting(
        1.0, "clip the policy gradient's global norm to this (0 = no clipping)", low=0.0
    )
    warmup_steps: int = setting(
        _OPTIMIZER.warmup_steps, "the learner's learning-rate warmup (updates; 0 = none)", low=0
    )
    publish_average_decay: float = setting(
        _LOOP.publish_average_decay, "the learner's loop.publish_average_decay (0: raw weights)", low=0.0
    )
    gate_samples: int = setting(_LOOP.gate_samples, "the learner's loop.gate_samples (0: no gate)", low=0)
    gate_tolerance: float = setting(_LOOP.gate_tolerance, "the learner's loop.gate_tolerance", low=0.0)
    imitate_successes: bool = setting(
        False, "HG-DAgger also imitates the policy's own steps in fleet episodes that succeeded"
    )
    eval_every_s: float = setting(240.0, "simulated time between evaluations", unit="s", low=1.0)
    eval_episodes_per_task: int = setting(20, "held-out episodes per task at each evaluation", low=1)
    final_eval_episodes_per_task: int = setting(50, "held-out episodes per task at the end", low=1)
    target_success: float = setting(0.8, "mean success that counts as reaching the target", low=0.0, high=1.0)
    reset_s: float = setting(4.0, "scene reset time between episodes", unit="s", low=0.0)
    replan_steps: int = setting(3, "control steps executed per chunk before replanning", low=1)
    seed: int = setting(0, "seed of the fleet's layouts and the learner's sampling", low=0)
    conditions: str = setting(
        "demonstrations",
        "layouts the fleet and the evaluations meet: demonstrations, or deployment (outside them)",
        choices=CONDITIONS,
    )
    device: str = setting("auto", "torch device of learner and policies", choices=("auto", "cpu", "cuda"))

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclass(frozen=True, kw_only=True)
class Evaluation:
    """Success of the newest weights at one moment of an arm."""

    time_s: float
    version: str
    learner_step: int
    episodes: int
    success: dict[str, float]
    # Successes per hour of robot time (episode time plus resets), per task.
    throughput_per_h: dict[str, float]

    @property
    def mean_success(self) -> float:
        """Success averaged over tasks."""
        return sum(self.success.values()) / len(self.success)


@dataclass(frozen=True, kw_only=True)
class ArmResult:
    """Everything an arm measured."""

    arm: Arm
    evaluations: list[Evaluation]
    final: Evaluation
    # Per fleet episode: (end time s, task, success, human share of steps, autonomous).
    episodes: list[tuple[float, str, bool, float, bool]]
    time_to_target_s: float | None
    learner_steps: int
    versions: int
    seconds: float
    # Where it ran ("NVIDIA H100 80GB HBM3", "CPU, 2 threads") and when (ISO date).
    machine: str = ""
    date: str = ""
    config: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """Plain JSON-able form."""
        data = asdict(self)
        data["final"]["mean_success"] = self.final.mean_success
        for evaluation, raw in zip(self.evaluations, data["evaluations"], strict=True):
            raw["mean_success"] = evaluation.mean_success
        return data


def run_arm(
    arm: Arm,
    study: StudyConfig,
    *,
    policy_config: PolicyConfig,
    base_weights: Path,
    demos_dir: Path,
    out_dir: Path,
    sim: SimConfig | None = None,
    expert: ExpertConfig | None = None,
    resume: bool = False,
) -> ArmResult:
    """Run one arm for ``study.budget_s`` simulated seconds; write ``out_dir/result.json``.

    With ``resume``, an arm that already ran in ``out_dir`` with the same settings and
    a shorter budget continues where it stopped (learner checkpoint, fleet clock and
    episodes, evaluations so far); an episode that was running then is replayed.
    Without it, an earlier run in ``out_dir`` is replaced.

    Raises:
        ConfigError: resuming a run made with other settings, or one already at the budget.
    """
    started = time.monotonic()
    sim = sim or SimConfig(conditions=study.conditions)
    saved = _saved_state(out_dir, arm, study, sim.control_period_s) if resume else None
    if saved is None:
        if out_dir.exists():  # an arm starts from its base weights: bags and weights of an old run go
            _log.info("%s: replacing the earlier run in %s", arm.name, out_dir)
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True)
    device = study.device if study.device != "auto" else ("cuda" if _cuda() else "cpu")
    # Learner and robots run the policy the algorithm trains (RECAP's prompts carry its indicator).
    policy_config = policy_config_for(arm.algorithm, replace(policy_config, device=device))
    # On a GPU the robots' and evaluations' batched inference replays CUDA graphs.
    actor_config = replace(policy_config, compile_mode="cuda-graph" if device == "cuda" else "none")
    actors = ActorPool(lambda: make_policy(actor_config))
    # The fleet and the learner call each other: fleet episodes go to the learner, the
    # learner's published weights to the fleet (both callbacks run on this thread).
    # The offline-only control arm keeps the fleet's episodes from the learner.
    learns_online = arm.mixing != "offline_only"
    fleet = SimFleet(
        FleetConfig(
            robots=arm.robots, replan_steps=study.replan_steps, reset_s=study.reset_s, seed=study.seed
        ),
        sim=sim,
        expert=expert or ExpertConfig(),
        actors=actors,
        weights=(format_version(0), base_weights),
        spool=out_dir / "spool",
        on_episode=lambda result: learner.submit_episode(result.bag) if learns_online else None,
    )
    learner_policy = make_policy(policy_config)
    learner_policy.load_trainable(base_weights)
    learner = build_learner(
        _learner_settings(arm, study, out_dir, demos_dir),
        learner_policy,
        publish=lambda path, manifest: fleet.publish(format_version(manifest.version), path),
    )
    learner.start()  # resumes from the checkpoint a resumed arm left behind
    evaluations: list[Evaluation] = []
    next_eval, spent_s = 0.0, 0.0
    if saved is not None:
        if learner.step != saved["learner_step"]:
            learner.close()
            raise ConfigError(
                f"cannot continue {arm.name} in {out_dir}: its learner checkpoint is at step "
                f"{learner.step}, its saved state at step {saved['learner_step']}; "
                "run it without --resume to start over"
            )
        fleet.load_state_dict(saved["fleet"])
        _drop_later_bags(out_dir / "spool", fleet.results)
        for episode in fleet.results if learns_online else ():  # in the order they first arrived
            learner.submit_episode(episode.bag)
        learner.sync_ingest()
        evaluations = [Evaluation(**e) for e in saved["evaluations"]]
        next_eval, spent_s = saved["next_eval_s"], saved["seconds"]
        _log.info("%s: continuing at t=%.0fs, learner step %d", arm.name, fleet.now_s, learner.step)

    def save_state(done: list[Evaluation], next_eval_s: float) -> None:
        """Checkpoint the learner and write what a resumed run needs next to it."""
        learner.save_checkpoint()
        fleet_state = fleet.state_dict()
        # The learner prunes old weights files; the robots' newest must outlive that.
        version, path = fleet.newest
        kept = out_dir / f"{_STATE_WEIGHTS}.tmp"
        shutil.copyfile(path, kept)
        kept.replace(out_dir / _STATE_WEIGHTS)
        fleet_state["newest"] = [version, str(out_dir / _STATE_WEIGHTS)]
        state = {
            "arm": asdict(arm),
            "study": asdict(study),
            "learner_step": learner.step,
            "fleet": fleet_state,
            "evaluations": [asdict(e) for e in done],
            "next_eval_s": next_eval_s,
            "seconds": spent_s + time.monotonic() - started,
        }
        _write(out_dir / _STATE, state)

    def evaluate(episodes_per_task: int) -> Evaluation:
        version, path = fleet.newest
        scores = evaluate_policy(
            actors.get(version, path),
            episodes_per_task=episodes_per_task,
            sim=sim,
            replan_steps=study.replan_steps,
        )
        evaluation = _evaluation(
            fleet.now_s, version, learner.step, len(fleet.results), scores, study.reset_s
        )
        _log.info(
            "%s t=%5.0fs %s step %d: %s",
            arm.name,
            fleet.now_s,
            version,
            learner.step,
            " ".join(f"{t}={s:.2f}" for t, s in evaluation.success.items()),
        )
        return evaluation

    steps_per_s = study.learner_steps_per_s * (arm.robots if study.learner_per_robot else 1)
    try:
        while fleet.now_s < study.budget_s - 1e-9:
            if fleet.now_s >= next_eval - 1e-9:
                evaluations.append(evaluate(study.eval_episodes_per_task))
                _write(out_dir / "progress.json", [asdict(e) for e in evaluations])
                next_eval += study.eval_every_s
                # A run stopped from outside (a job's time limit) can go on from here.
                save_state(evaluations, next_eval)
            fleet.tick()
            owed = math.floor(fleet.now_s * steps_per_s + 1e-9) - learner.step
            for _ in range(owed):
                learner.train_step()
        final = evaluate(study.final_eval_episodes_per_task)
        # A continued run counts this final evaluation as one of its regular ones.
        if next_eval <= fleet.now_s + 1e-9:
            next_eval += study.eval_every_s
        save_state([*evaluations, final], next_eval)
    finally:
        learner.close()
    reached = time_to_target(
        [(e.time_s, e.mean_success) for e in (*evaluations, final)], study.target_success
    )
    result = ArmResult(
        arm=arm,
        evaluations=evaluations,
        final=final,
        episodes=[_episode_row(r) for r in fleet.results],
        time_to_target_s=reached,
        learner_steps=learner.step,
        versions=learner.version,
        seconds=spent_s + time.monotonic() - started,
        machine=_machine(device),
        date=datetime.date.today().isoformat(),
        config=asdict(study),
    )
    _write(out_dir / "result.json", result.to_json())
    return result


def _drop_later_bags(spool: Path, kept: Sequence[EpisodeResult]) -> None:
    """Delete bags of episodes that ended after the saved state: the resumed fleet replays them."""
    names = {result.bag.name for result in kept}
    layout = Spool(spool)
    for folder in (layout.ready, layout.recording):
        for bag in folder.iterdir() if folder.is_dir() else ():
            if bag.name not in names:
                _log.info("dropping %s: it ended after the saved state and will be replayed", bag.name)
                shutil.rmtree(bag)


def _saved_state(out_dir: Path, arm: Arm, study: StudyConfig, period_s: float) -> dict | None:
    """The state an earlier run of ``arm`` left in ``out_dir``, if it can continue to ``study``'s budget."""
    path = out_dir / _STATE
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    ran_s = saved["fleet"]["ticks"] * period_s
    # Settings added since the run was made take their defaults (what the run did).
    differing = differing_settings(
        asdict(study), {**asdict(StudyConfig()), **saved["study"]}, ignore=("budget_s",)
    )
    if saved["arm"] != asdict(arm) or differing:
        raise ConfigError(
            f"cannot continue {arm.name} in {out_dir}: it ran with other settings "
            f"({', '.join(differing) or 'arm'}); run it without --resume to start over"
        )
    if study.budget_s <= ran_s + 1e-9:
        raise ConfigError(
            f"{arm.name} in {out_dir} already ran {ran_s / 60:g} simulated minutes; "
            "give a longer budget to continue it"
        )
    return saved


def time_to_target(points: Sequence[tuple[float, float]], target: float) -> float | None:
    """First evaluation time from which mean success stays ≥ ``target`` at the next evaluation too.

    ``points`` are (time s, mean success) of the evaluations in order. One evaluation sees
    20-odd episodes per task, so a single lucky one does not count; the last evaluation
    counts alone (nothing follows it). A mean exactly at the target counts, whatever order
    its rates were summed in (1.0, 0.6, 0.8 make 0.8 ± 2e-16).
    """
    for i, (time_s, _) in enumerate(points):
        if all(mean >= target - 1e-9 for _, mean in points[i : i + 2]):
            return time_s
    return None


def run_dir_name(arm: Arm, seed: int) -> str:
    """Directory of one run of ``arm``: its name, with the seed appended unless it is 0."""
    return arm.name if seed == 0 else f"{arm.name}_seed{seed}"


def run_arms(
    arms: Sequence[Arm],
    study: StudyConfig,
    *,
    policy_config: PolicyConfig,
    base_weights: Path,
    demos_dir: Path,
    out_dir: Path,
    seeds: Sequence[int] = (0,),
    jobs: int = 1,
    resume: bool = False,
    budgets_s: Mapping[str, float] | None = None,
) -> list[ArmResult]:
    """Run every arm once per seed (``jobs`` runs at a time, each in a process of its own when jobs > 1).

    ``budgets_s`` gives single arms (by name) a budget other than ``study.budget_s``.
    With ``resume``, runs already in ``out_dir`` continue to the budget (see :func:`run_arm`).
    """
    budgets_s = budgets_s or {}
    runs = [
        partial(
            run_arm,
            arm,
            replace(study, seed=seed, budget_s=budgets_s.get(arm.name, study.budget_s)),
            policy_config=policy_config,
            base_weights=base_weights,
            demos_dir=demos_dir,
            out_dir=out_dir / run_dir_name(arm, seed),
            resume=resume,
        )
        for seed in seeds
        for arm in arms
    ]
    if jobs <= 1:
        return [run() for run in runs]
    threads = max(1, (os.cpu_count() or 1) // jobs)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_worker_init, initargs=(threads,)) as pool:
        futures = [pool.submit(run) for run in runs]
        return [future.result() for future in futures]


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(processName)s %(message)s")


def _machine(device: str) -> str:
    import torch

    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _learner_settings(arm: Arm, study: StudyConfig, out_dir: Path, demos_dir: Path) -> LearnerSettings:
    sampler = SamplerConfig(seed=study.seed)
    if arm.mixing == "fixed":
        sampler = replace(sampler, p_on_min=0.5, p_on_max=0.5, p_on_default=0.5)
    elif arm.mixing == "online_only":
        sampler = replace(sampler, p_on_min=1.0, p_on_max=1.0, p_on_default=1.0)
    defaults = LearnerSettings()
    return LearnerSettings(
        algorithm=arm.algorithm,
        store_dir=str(out_dir / "store"),
        offline_dir=str(demos_dir),
        checkpoint_dir=str(out_dir / "learner"),
        log_dir="",
        loop=LearnerConfig(
            batch_size=study.batch_size,
            publish_every_steps=study.publish_every_steps,
            checkpoint_every_steps=10**9,
            # Episodes join the buffers at the next update: the study is deterministic.
            load_in_background=False,
            decode_workers=2,
            fit_norm_stats=False,
            progress_bar=False,
            publish_average_decay=study.publish_average_decay,
            gate_samples=study.gate_samples,
            gate_tolerance=study.gate_tolerance,
        ),
        sampler=sampler,
        hg_dagger=replace(
            defaults.hg_dagger,
            lr=study.lr,
            grad_clip_norm=study.grad_clip_norm,
            warmup_steps=study.warmup_steps,
            use_successful_autonomous=study.imitate_successes,
        ),
        recap=replace(
            defaults.recap, lr=study.lr, grad_clip_norm=study.grad_clip_norm, warmup_steps=study.warmup_steps
        ),
    )


def _evaluation(
    now_s: float, version: str, step: int, episodes: int, scores: dict[str, TaskScore], reset_s: float
) -> Evaluation:
    return Evaluation(
        time_s=round(now_s, 3),
        version=version,
        learner_step=step,
        episodes=episodes,
        success={task: scores[task].success_rate for task in TASK_NAMES if task in scores},
        throughput_per_h={
            task: 3600.0 * score.successes / (score.robot_s + reset_s * score.episodes)
            for task, score in scores.items()
        },
    )


def _episode_row(result: EpisodeResult) -> tuple[float, str, bool, float, bool]:
    return (
        round(result.end_s, 2),
        result.task,
        result.success,
        result.human_steps / result.steps,
        result.autonomous,
    )


def _write(path: Path, data: object) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)

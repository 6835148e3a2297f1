"""What the demo shows while it runs and writes when it ends: per-version, per-task episode statistics.

``FleetTracker`` is told of every episode the learner stores (from ingest
worker threads, hence the lock) and turns them into the live table, the
summary table and the plot of success and intervention rate over time.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from sop_ros.core.types import EpisodeMeta, Outcome
from sop_ros.simlab.stats import Rate

__all__ = ["EpisodeRecord", "FleetTracker", "PhaseRow"]


class PhaseRow(TypedDict):
    """One task's first third of the run's episodes against its last third (rates and shares 0..1)."""

    task: str
    episodes: int
    first_success_rate: float
    last_success_rate: float
    first_human_share: float
    last_human_share: float


@dataclass(frozen=True, kw_only=True)
class EpisodeRecord:
    """One stored episode, as the report needs it."""

    arrived_s: float
    robot: str
    task: str
    version: str
    success: bool
    interventions: int
    human_fraction: float

    @classmethod
    def from_meta(cls, meta: EpisodeMeta, arrived_s: float) -> EpisodeRecord:
        """Summarise ``meta``; the version is the one active when the episode started."""
        duration_s = max(1e-9, (meta.end_ns - meta.start_ns) / 1e9)
        return cls(
            arrived_s=arrived_s,
            robot=meta.robot_id,
            task=meta.task,
            version=meta.policy_versions[0] if meta.policy_versions else "?",
            success=meta.outcome is Outcome.SUCCESS,
            interventions=meta.intervention_count,
            human_fraction=min(1.0, meta.intervention_s / duration_s),
        )

    @property
    def autonomous_success(self) -> bool:
        """Succeeded with no human help at all."""
        return self.success and self.interventions == 0


class FleetTracker:
    """Collect stored episodes and summarise them."""

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._start = clock()
        self._lock = threading.Lock()
        self._records: list[EpisodeRecord] = []
        self.published: list[tuple[float, str]] = []
        # (time s, version, task -> success of that version alone on held-out layouts)
        self.evaluations: list[tuple[float, str, dict[str, Rate]]] = []

    def add(self, meta: EpisodeMeta) -> None:
        """Record a newly stored episode (any thread)."""
        record = EpisodeRecord.from_meta(meta, self._clock() - self._start)
        with self._lock:
            self._records.append(record)

    def add_publish(self, version: str) -> None:
        """Record a published weights version (any thread)."""
        with self._lock:
            self.published.append((self._clock() - self._start, version))

    def add_evaluation(self, version: str, success: dict[str, Rate], *, at_s: float | None = None) -> None:
        """Record the held-out success of ``version`` alone, per task (any thread).

        ``at_s`` places it at that time of the run (e.g. 0 for the base) instead of now.
        """
        when = self._clock() - self._start if at_s is None else at_s
        with self._lock:
            self.evaluations.append((when, version, dict(success)))
            self.evaluations.sort(key=lambda evaluation: evaluation[0])

    @property
    def records(self) -> list[EpisodeRecord]:
        """Every episode so far, in arrival order."""
        with self._lock:
            return list(self._records)

    def table(self, *, by_version: bool = True) -> list[dict[str, object]]:
        """Rows of (version, task): episodes, success rate, autonomous success rate, human time share."""
        groups: dict[tuple[str, str], list[EpisodeRecord]] = defaultdict(list)
        for r in self.records:
            groups[(r.version if by_version else "all", r.task)].append(r)
        rows = []
        for (version, task), records in sorted(groups.items()):
            n = len(records)
            rows.append(
                {
                    "version": version,
                    "task": task,
                    "episodes": n,
                    "success_rate": sum(r.success for r in records) / n,
                    "autonomous_success_rate": sum(r.autonomous_success for r in records) / n,
                    "human_time_share": sum(r.human_fraction for r in records) / n,
                }
            )
        return rows

    def phase_table(self) -> list[PhaseRow]:
        """Per task: the first third of the run's episodes against the last third."""
        by_task: dict[str, list[EpisodeRecord]] = defaultdict(list)
        for r in self.records:
            by_task[r.task].append(r)
        rows: list[PhaseRow] = []
        for task, records in sorted(by_task.items()):
            third = max(1, len(records) // 3)
            first, last = records[:third], records[-third:]
            rows.append(
                {
                    "task": task,
                    "episodes": len(records),
                    "first_success_rate": sum(r.autonomous_success for r in first) / len(first),
                    "last_success_rate": sum(r.autonomous_success for r in last) / len(last),
                    "first_human_share": sum(r.human_fraction for r in first) / len(first),
                    "last_human_share": sum(r.human_fraction for r in last) / len(last),
                }
            )
        return rows

    def status_line(self) -> str:
        """One line for the live console view."""
        records = self.records
        if not records:
            return "waiting for the first episode"
        recent = records[-12:]
        auto = sum(r.autonomous_success for r in recent) / len(recent)
        human = sum(r.human_fraction for r in recent) / len(recent)
        version = self.published[-1][1] if self.published else "v0000"
        line = (
            f"{len(records)} episodes stored, newest weights {version}; last {len(recent)}: "
            f"success without help {auto:.0%}, human time {human:.0%}"
        )
        with self._lock:
            judged = self.evaluations[-1] if self.evaluations else None
        if judged is not None:
            _, judged_version, success = judged
            rates = " ".join(f"{task.split('_')[0]} {rate.value:.0%}" for task, rate in success.items())
            n = min(rate.episodes for rate in success.values())
            line += f"; {judged_version} alone ({n} per task, ±{_widest(success):.0%}): {rates}"
        return line

    def plot(self, path: Path, *, window: int = 6) -> None:
        """Save evaluated success and the fleet's human-time share (rolling ``window``) over time per task."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        by_task: dict[str, list[EpisodeRecord]] = defaultdict(list)
        for r in self.records:
            by_task[r.task].append(r)
        fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
        tasks = sorted(set(by_task) | {task for _, _, success in self.evaluations for task in success})
        for task in tasks:
            points = [(when, success[task]) for when, _, success in self.evaluations if task in success]
            if points:
                # Each point with its Wilson 95 % interval: 10 episodes say far less than 100.
                values = [rate.value for _, rate in points]
                below = [rate.value - rate.interval[0] for _, rate in points]
                above = [rate.interval[1] - rate.value for _, rate in points]
                top.errorbar(
                    [w / 60 for w, _ in points],
                    values,
                    yerr=[below, above],
                    marker="o",
                    capsize=3,
                    label=task,
                )
            records = by_task.get(task, [])
            t = [r.arrived_s / 60 for r in records]
            middle.plot(t, _rolling([float(r.autonomous_success) for r in records], window), label=task)
            bottom.plot(t, _rolling([r.human_fraction for r in records], window), label=task)
        for when, _ in self.published:
            for ax in (top, middle, bottom):
                ax.axvline(when / 60, color="grey", alpha=0.25, linewidth=0.8)
        top.set_ylabel("success, policy alone\n(held-out layouts, 95 % CI)")
        middle.set_ylabel(f"fleet success without help\n(rolling {window} episodes)")
        bottom.set_ylabel(f"human time share\n(rolling {window} episodes)")
        bottom.set_xlabel("wall-clock time (min); grey lines: new weights published")
        for ax in (top, middle, bottom):
            ax.set_ylim(-0.05, 1.05)
        top.legend(loc="upper left")
        top.set_title("SOP in simulation: newest weights evaluated alone; fleet interventions")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        plt.close(fig)


def _widest(success: dict[str, Rate]) -> float:
    return max(rate.half_width for rate in success.values())


def _rolling(values: list[float], window: int) -> list[float]:
    out = []
    for i in range(len(values)):
        chunk = values[max(0, i - window + 1) : i + 1]
        out.append(sum(chunk) / len(chunk))
    return out

"""What the learner reports: fleet results per policy version and training scalars.

:class:`FleetStats` counts, per weights version, the uploaded episodes, their
successes and those with at least one intervention. :class:`TrainingLog`
writes scalars to TensorBoard (``torch.utils.tensorboard``) on the main rank
and does nothing elsewhere or when no log directory is given.

Threads: both belong to the training thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sop_ros.core.errors import InputError
from sop_ros.core.types import EpisodeMeta, Outcome, parse_version

__all__ = ["FleetStats", "TrainingLog", "VersionStats"]


@dataclass
class VersionStats:
    """Episode counts of one weights version."""

    episodes: int = 0
    successes: int = 0
    intervened: int = 0

    @property
    def success_rate(self) -> float:
        """Share of episodes that succeeded."""
        return self.successes / self.episodes if self.episodes else 0.0

    @property
    def intervention_rate(self) -> float:
        """Share of episodes in which a human took over at least once."""
        return self.intervened / self.episodes if self.episodes else 0.0


class FleetStats:
    """Success and intervention rate of every policy version the fleet ran."""

    def __init__(self) -> None:
        self.by_version: dict[str, VersionStats] = {}

    def add(self, meta: EpisodeMeta) -> tuple[str, VersionStats]:
        """Count one uploaded episode under the last version it ran; returns that version's stats."""
        version = meta.policy_versions[-1] if meta.policy_versions else "unknown"
        stats = self.by_version.setdefault(version, VersionStats())
        stats.episodes += 1
        stats.successes += meta.outcome is Outcome.SUCCESS
        stats.intervened += meta.intervention_count > 0
        return version, stats


def version_number(version: str) -> int | None:
    """``"v0007" -> 7``; None for anything that is not a version."""
    try:
        return parse_version(version)
    except InputError:
        return None


class TrainingLog:
    """TensorBoard scalars of the main rank; a no-op elsewhere."""

    def __init__(self, log_dir: Path | None, *, enabled: bool = True) -> None:
        self._writer = None
        if log_dir is not None and enabled:
            from torch.utils.tensorboard import SummaryWriter  # heavy import, only where logging happens

            self._writer = SummaryWriter(log_dir=str(log_dir))

    def scalar(self, name: str, value: float, step: int) -> None:
        """Record ``value`` under ``name`` at ``step``."""
        if self._writer is not None:
            self._writer.add_scalar(name, value, step)

    def scalars(self, values: dict[str, float], step: int, *, prefix: str = "") -> None:
        """Record several scalars at once."""
        for name, value in values.items():
            self.scalar(f"{prefix}{name}", value, step)

    def episode(self, version: str, stats: VersionStats) -> None:
        """Record a version's success and intervention rate, on the version axis."""
        number = version_number(version)
        if number is None:
            return
        self.scalar("fleet/success_rate", stats.success_rate, number)
        self.scalar("fleet/intervention_rate", stats.intervention_rate, number)
        self.scalar("fleet/episodes", stats.episodes, number)

    def flush(self) -> None:
        """Push pending events to disk."""
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

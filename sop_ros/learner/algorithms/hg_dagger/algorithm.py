"""HG-DAgger: imitate offline demonstrations and the human's corrections of the deployed policy.

The policy's own loss (π0's flow-matching loss) is the imitation objective;
what makes it HG-DAgger is which steps are trained on: every offline step,
every step a human drove, and optionally the policy's own steps in episodes
that succeeded, except those just before a takeover.

Threads: belongs to the training thread.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sop_ros.core.types import Outcome
from sop_ros.learner.algorithms.base import Algorithm, UpdateResult
from sop_ros.learner.algorithms.hg_dagger.config import HGDaggerConfig
from sop_ros.learner.distributed import DistContext
from sop_ros.learner.types import EpisodeLike, TrainablePolicy, TrainingSample

__all__ = ["HGDagger", "select_hg_dagger_steps"]


def select_hg_dagger_steps(
    is_human: np.ndarray,
    *,
    success: bool,
    use_successful_autonomous: bool,
    skip_before_intervention_steps: int,
) -> np.ndarray:
    """Return the step numbers HG-DAgger trains on from one uploaded episode.

    Args:
        is_human: bool per step, True where a human produced the actions.
        success: the episode ended in success.
        use_successful_autonomous: keep autonomous steps of successful episodes.
        skip_before_intervention_steps: autonomous steps this close before a takeover are dropped.
    """
    human = np.asarray(is_human, dtype=bool)
    keep = human.copy()
    if use_successful_autonomous and success:
        autonomous = ~human
        starts = np.flatnonzero(human & ~np.concatenate(([False], human[:-1])))
        for start in starts:
            autonomous[max(0, start - skip_before_intervention_steps) : start] = False
        keep |= autonomous
    return np.flatnonzero(keep).astype(np.int32)


class HGDagger(Algorithm):
    """Behaviour cloning on demonstrations plus human-corrected on-policy steps."""

    name = "hg_dagger"

    def __init__(
        self,
        policy: TrainablePolicy,
        config: HGDaggerConfig | None = None,
        *,
        dist: DistContext | None = None,
    ) -> None:
        self.config: HGDaggerConfig = config or HGDaggerConfig()
        super().__init__(policy, self.config, dist=dist)

    def select_online(self, episode: EpisodeLike) -> np.ndarray:
        """Human-driven steps, plus successful autonomous ones when configured."""
        return select_hg_dagger_steps(
            episode.is_human,
            success=episode.meta.outcome is Outcome.SUCCESS,
            use_successful_autonomous=self.config.use_successful_autonomous,
            skip_before_intervention_steps=self.config.skip_before_intervention_steps,
        )

    def update(self, samples: Sequence[TrainingSample]) -> UpdateResult:
        """One imitation step on the flow-matching loss."""
        values, grad_norm = self._policy_step(samples)
        human = [s.is_human for s in samples]
        return UpdateResult(
            stats={
                "loss": float(values.mean()),
                "grad_norm": grad_norm,
                "human_fraction": float(np.mean(human)),
            },
            sample_losses=values,
        )

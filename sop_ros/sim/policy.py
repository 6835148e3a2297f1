"""The policy simulated robots run: tiny π0 on the head camera, in the simulator's action space.

One definition for everything that runs or trains it: the robot nodes' parameters
(``sim_parameters``), the demo, the study and ``sop train-offline --sim``. Kept out
of ``sop_ros.sim``'s own imports: it pulls in torch and transformers.
"""

from __future__ import annotations

from sop_ros.core.policy.config import PolicyConfig
from sop_ros.sim.world import ACTION_NAMES

__all__ = ["sim_policy_config"]


def sim_policy_config(control_period_s: float = 0.1) -> PolicyConfig:
    """Return the simulated robots' policy config for a control period (s)."""
    return PolicyConfig(
        model="tiny",
        camera_names=("head",),
        action_names=ACTION_NAMES,
        state_names=ACTION_NAMES,
        horizon=10,
        control_period_s=control_period_s,
        denoising_steps=5,
    )

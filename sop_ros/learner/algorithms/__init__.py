"""Post-training algorithms, chosen by name.

``make_algorithm("recap", policy)`` builds one; a wrong name raises a
ConfigError listing the valid ones. A new algorithm is a folder with a config
dataclass and an :class:`Algorithm` subclass, added to :data:`ALGORITHMS`.
``policy_config_for("recap", config)`` is the policy config an algorithm trains
and its robots act with (RECAP's prompts carry the advantage indicator).
"""

from __future__ import annotations

from dataclasses import replace

from sop_ros.core.errors import ConfigError
from sop_ros.core.policy.config import PolicyConfig
from sop_ros.learner.algorithms.base import Algorithm, OptimizerConfig, UpdateResult
from sop_ros.learner.algorithms.hg_dagger import HGDagger, HGDaggerConfig
from sop_ros.learner.algorithms.recap import Recap, RecapConfig
from sop_ros.learner.distributed import DistContext
from sop_ros.learner.types import TrainablePolicy

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "OptimizerConfig",
    "UpdateResult",
    "algorithm_config_class",
    "make_algorithm",
    "policy_config_for",
]

# name -> (config class, algorithm class)
ALGORITHMS: dict[str, tuple[type[OptimizerConfig], type[Algorithm]]] = {
    HGDagger.name: (HGDaggerConfig, HGDagger),
    Recap.name: (RecapConfig, Recap),
}


def _lookup(name: str) -> tuple[type[OptimizerConfig], type[Algorithm]]:
    if name not in ALGORITHMS:
        raise ConfigError(f"unknown algorithm {name!r}; choose one of: {', '.join(sorted(ALGORITHMS))}")
    return ALGORITHMS[name]


def algorithm_config_class(name: str) -> type[OptimizerConfig]:
    """The config dataclass of algorithm ``name``."""
    return _lookup(name)[0]


def make_algorithm(
    name: str,
    policy: TrainablePolicy | None = None,
    *,
    config: OptimizerConfig | None = None,
    dist: DistContext | None = None,
) -> Algorithm:
    """Build algorithm ``name`` around ``policy``.

    Raises:
        ConfigError: the name is unknown, no policy is given, or the config is of another algorithm.
    """
    config_cls, algorithm_cls = _lookup(name)
    if policy is None:
        raise ConfigError(f"algorithm {name!r} needs a policy to train")
    if config is not None and not isinstance(config, config_cls):
        raise ConfigError(f"algorithm {name!r} takes a {config_cls.__name__}, got {type(config).__name__}")
    return algorithm_cls(policy, config or config_cls(), dist=dist)


def policy_config_for(name: str, config: PolicyConfig) -> PolicyConfig:
    """The policy config algorithm ``name`` trains, and its robots must act with.

    RECAP trains with the advantage indicator in the prompt and acts with "positive": a
    config left at ``inference_advantage="none"`` gets the algorithm's indicator. One that
    already names an indicator keeps it (e.g. "negative", to study the indicator's effect).

    Raises:
        ConfigError: the name is unknown, or the config names an indicator the algorithm
            never trains with.
    """
    wanted = _lookup(name)[1].inference_advantage
    if config.inference_advantage == wanted:
        return config
    if not config.advantage_conditioned:
        return replace(config, inference_advantage=wanted)
    if wanted == "none":
        raise ConfigError(
            f"algorithm {name!r} trains without the advantage indicator; policy.inference_advantage "
            f"must be 'none', not {config.inference_advantage!r}"
        )
    return config

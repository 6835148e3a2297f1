"""Post-training algorithms, chosen by name.

``make_algorithm("recap", policy)`` builds one; a wrong name raises a
ConfigError listing the valid ones. A new algorithm is a folder with a config
dataclass and an :class:`Algorithm` subclass, added to :data:`ALGORITHMS`.
"""

from __future__ import annotations

from sop_ros.core.errors import ConfigError
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

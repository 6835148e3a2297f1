"""The Zenoh session settings every fleet-facing node shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import zenoh
from rclpy.impl.rcutils_logger import RcutilsLogger

from sop_ros.core.config import setting
from sop_ros.nodes.share import share_path
from sop_ros.transport import open_session

__all__ = ["ZenohConfig", "close_zenoh", "open_zenoh"]


@dataclass(frozen=True, kw_only=True)
class ZenohConfig:
    """How a node reaches the learner over Zenoh."""

    config_file: str = setting("", "zenoh json5 config; empty = config/zenoh/robot.json5", read_only=True)
    connect: str = setting(
        "", "learner router endpoint, e.g. tcp/10.0.0.5:7447; empty = the file's", read_only=True
    )


def open_zenoh(config: ZenohConfig) -> Any:
    """Open the session ``config`` describes (raises TransportError/ConfigError with the reason)."""
    path = config.config_file or str(share_path("config/zenoh/robot.json5"))
    overrides = {"connect/endpoints": [config.connect]} if config.connect else None
    return open_session(path, overrides)


def close_zenoh(session: Any, logger: RcutilsLogger) -> None:
    """Close ``session`` at shutdown; a failure is logged, never raised (the node is going away)."""
    try:
        session.close()
    except zenoh.ZError as err:
        logger.warning(f"closing the zenoh session: {err}")

"""The Zenoh session settings every fleet-facing robot node shares, and its link to the learner.

A robot node never waits for the learner: :func:`start_zenoh` returns at once
and connects in the background (bounded attempts, bounded back-off), calling
the node back once the session is open. :func:`link_diagnostics` turns where
the link stands into diagnostics values (WARN while the learner is not
reached).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from diagnostic_msgs.msg import DiagnosticStatus

from sop_ros.core.config import check_ranges, setting
from sop_ros.nodes.share import share_path
from sop_ros.transport import BackgroundSession, LinkState, fleet_setting

__all__ = ["ZenohConfig", "link_diagnostics", "start_zenoh"]


@dataclass(frozen=True, kw_only=True)
class ZenohConfig:
    """How a node reaches the learner over Zenoh, and in which fleet."""

    # The robot's one fleet setting: its uploader and its weights fetcher both take it from here.
    fleet: str = fleet_setting()
    config_file: str = setting("", "zenoh json5 config; empty = config/zenoh/robot.json5", read_only=True)
    connect: str = setting(
        "", "learner router endpoint, e.g. tcp/10.0.0.5:7447; empty = the file's", read_only=True
    )
    attempt_timeout_s: float = setting(
        3.0, "longest one attempt to reach the router may take", unit="s", low=0.1, high=60.0, read_only=True
    )
    retry_max_s: float = setting(
        10.0,
        "longest wait between attempts to reach the router",
        unit="s",
        low=0.5,
        high=600.0,
        read_only=True,
    )

    def __post_init__(self) -> None:
        check_ranges(self)


def start_zenoh(config: ZenohConfig, name: str, on_open: Callable[[Any], None]) -> BackgroundSession:
    """Start connecting as ``config`` describes; ``on_open(session)`` runs once it is open.

    Raises:
        ConfigError: the default config file is not installed.
    """
    path = config.config_file or str(share_path("config/zenoh/robot.json5"))
    overrides = {"connect/endpoints": [config.connect]} if config.connect else None
    return BackgroundSession(
        path,
        overrides,
        on_open=on_open,
        name=name,
        attempt_timeout_s=config.attempt_timeout_s,
        max_delay_s=config.retry_max_s,
    )


def link_diagnostics(link: BackgroundSession) -> tuple[bytes, str, list[tuple[str, str]]]:
    """Return (level, message, values) of the link: OK when connected, WARN while not, ERROR if failed."""
    state, for_s, error, attempts = link.status()
    values = [
        ("learner_link", state),
        ("learner_link_for_s", f"{for_s:.0f}"),
        ("connect_attempts", str(attempts)),
        ("learner_link_error", error),
    ]
    if state == LinkState.CONNECTED:
        return DiagnosticStatus.OK, "", values
    if state == LinkState.FAILED:
        return DiagnosticStatus.ERROR, f"learner link failed: {error}", values
    return DiagnosticStatus.WARN, f"learner not reached ({state} for {for_s:.0f} s)", values

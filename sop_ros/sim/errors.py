"""Errors raised by the simulator."""

from __future__ import annotations

from sop_ros.core.errors import SopError

__all__ = ["SimError"]


class SimError(SopError, RuntimeError):
    """The simulator was used out of order or given an action it cannot execute."""

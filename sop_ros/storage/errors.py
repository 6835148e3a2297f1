"""Errors of the storage layer, all rooted at :class:`sop_ros.core.errors.BagError`."""

from __future__ import annotations

from sop_ros.core.errors import BagError

__all__ = ["BagError", "SpoolFullError"]


class SpoolFullError(BagError):
    """The spool holds more un-uploaded bytes than its quota; no new episode may start."""

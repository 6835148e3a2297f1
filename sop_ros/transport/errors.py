"""Errors specific to the fleet transport."""

from __future__ import annotations

from sop_ros.core.errors import BagError

__all__ = ["BagRejectedError"]


class BagRejectedError(BagError):
    """The learner refused a bag for good (corrupt, truncated, malformed); resending will not help.

    ``reason`` is the learner's explanation; ``quarantine_path`` is where the
    learner kept its copy (relative to its store), or "" when it kept none.
    The robot keeps its own copy too.
    """

    def __init__(self, reason: str, *, quarantine_path: str = ""):
        kept = f"; the learner kept it in {quarantine_path}" if quarantine_path else ""
        super().__init__(f"bag rejected: {reason}{kept}")
        self.reason = reason
        self.quarantine_path = quarantine_path

"""Intervention segments from the stream of Intervention messages (pure functions)."""

from __future__ import annotations

from collections.abc import Iterable

from sop_ros.core.types import InterventionSegment

__all__ = ["intervention_segments"]


def intervention_segments(
    events: Iterable[tuple[int, bool]], *, end_ns: int
) -> tuple[InterventionSegment, ...]:
    """Return the spans of human control described by ``(stamp_ns, active)`` events.

    ``active=True`` opens a segment (or continues the open one); ``active=False``
    closes it at that stamp. A segment still open at the end closes at ``end_ns``.
    """
    segments = []
    start: int | None = None
    for stamp, active in sorted(events, key=lambda e: e[0]):
        if active and start is None:
            start = stamp
        elif not active and start is not None:
            segments.append(InterventionSegment(start_ns=start, end_ns=stamp))
            start = None
    if start is not None:
        segments.append(InterventionSegment(start_ns=start, end_ns=max(end_ns, start)))
    return tuple(segments)

"""Test-wide settings: keep DDS traffic on this machine and in a domain of our own."""

from __future__ import annotations

import os
import random

# ROS_LOCALHOST_ONLY is ignored by kilted; this is the setting it reads.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
# One domain per test run, so parallel runs on one machine never see each other.
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randrange(10, 100)))


def pytest_collection_modifyitems(config, items) -> None:
    """Run slow tests (whole node graphs, training) last: timing-sensitive quick ones get a calm machine."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is not None)

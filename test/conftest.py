"""Test-wide settings: keep DDS traffic on this machine and in a domain of our own."""

from __future__ import annotations

import os
import random

# ROS_LOCALHOST_ONLY is ignored by kilted; this is the setting it reads.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
# One domain per test run, so parallel runs on one machine never see each other.
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randrange(10, 100)))

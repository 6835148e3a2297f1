"""sop_ros: scalable online post-training of a VLA policy on a ROS 2 robot fleet."""

from __future__ import annotations

__version__ = "0.1.0"

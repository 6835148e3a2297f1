"""Pure logic and data types of sop_ros: no rclpy, no messages, no zenoh."""

from __future__ import annotations

"""The SOP study in simulation: simulated fleets, the real learner, evaluation and the report.

An application layer like :mod:`sop_ros.demo`, but without ROS and without
Zenoh: fleets run in one process on a simulated clock so that a study of many
hours of robot time fits in minutes of compute. Fleet episodes are still real
bags, loaded by the real learner.
"""

from __future__ import annotations

"""``sop demo``: the whole SOP loop on one machine — learner, simulated robots, live progress, report.

An application layer on top of everything else: it may use the simulator,
storage, transport, learner and the ROS nodes (in robot processes).
"""

"""ROS 2 nodes: thin adapters between topics/services and the logic below."""

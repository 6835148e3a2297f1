"""Several nodes in one process, each spinning as if it had the process to itself.

:class:`NodeSpinners` gives every node a ``SingleThreadedExecutor`` of its own,
spun on a thread of its own. Nodes that share a process (one robot's graph in
``sop robot``, a test's nodes and probes) then behave as the separate
processes ``ros2 launch`` starts: a long callback in one node (a bag being
closed, weights being staged) never delays another node's callbacks.

rclpy's ``MultiThreadedExecutor`` is deliberately not used. As released for
Jazzy and Kilted it busy-waits: callbacks handed to its thread pool but not
yet started make every wait return at once, and the spinning thread then
holds the interpreter lock so the pool barely runs (ros2/rclpy#1452). On the
Kilted wheels one node with a 100 Hz timer publishing to its own
subscription took a whole core and delivered 33 of 1000 messages in 10 s; on
a single-threaded executor it took 4 % and delivered all 1000. A simulated
robot's graph went from 95 % of a core to 17 % (``bench/graph/run.py``).

Threads: one per node, each owning its executor; :meth:`NodeSpinners.spin`
spins the last node's executor on the calling thread.
"""

from __future__ import annotations

import threading

from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

__all__ = ["NodeSpinners"]


class NodeSpinners:
    """One single-threaded executor and one thread per node.

    Args:
        context: The rclpy context every executor belongs to.
    """

    def __init__(self, context: Context) -> None:
        self._context = context
        self._executors: dict[str, SingleThreadedExecutor] = {}
        self._threads: list[threading.Thread] = []
        self._started = False

    @property
    def node_names(self) -> list[str]:
        """Fully qualified names of the nodes spun here, in the order they were added."""
        return list(self._executors)

    def add(self, node: Node) -> None:
        """Spin ``node`` on an executor of its own (at once, if the others already spin)."""
        executor = SingleThreadedExecutor(context=self._context)
        executor.add_node(node)
        self._executors[node.get_fully_qualified_name()] = executor
        if self._started:
            self._start(node.get_fully_qualified_name(), executor)

    def start(self) -> None:
        """Spin every node on its own background thread (returns at once)."""
        self._started = True
        for name, executor in self._executors.items():
            self._start(name, executor)

    def spin(self) -> None:
        """Spin every node until shutdown; the last one added spins on this thread."""
        *others, (_, last) = self._executors.items()
        self._started = True
        for name, executor in others:
            self._start(name, executor)
        last.spin()

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Stop every executor and wait for the spinning threads to end."""
        for executor in self._executors.values():
            executor.shutdown(timeout_sec=timeout_s)
        for thread in self._threads:
            thread.join(timeout=timeout_s)

    def _start(self, name: str, executor: SingleThreadedExecutor) -> None:
        thread = threading.Thread(target=executor.spin, name=f"spin{name.replace('/', '.')}", daemon=True)
        thread.start()
        self._threads.append(thread)

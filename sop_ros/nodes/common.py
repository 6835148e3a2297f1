"""What every sop_ros node shares: QoS profiles, diagnostics and ``main``.

Diagnostics follow the ROS convention: one ``DiagnosticStatus`` per node on
``/diagnostics`` about once a second, with the node's rates and latencies as
key/value pairs, so ``rqt_robot_monitor`` and aggregators show them.
"""

from __future__ import annotations

import contextlib
import faulthandler
import gc
import logging
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from rclpy.signals import SignalHandlerOptions

from sop_ros.core import topics
from sop_ros.core.errors import SopError

__all__ = [
    "COMMAND_QOS",
    "LATCHED_QOS",
    "RECORD_COMMAND_QOS",
    "RECORD_SENSOR_QOS",
    "SENSOR_QOS",
    "SHUTDOWN_HURRY",
    "Diagnostics",
    "RateMeter",
    "forward_python_logs",
    "run_node",
]

# Cameras, joint states and the joystick: newest sample wins, losses tolerated.
SENSOR_QOS = qos_profile_sensor_data
# What the recorder asks of sensor topics: best effort (so it hears best-effort
# publishers) but a deep queue, so a burst of camera frames arriving while a
# bag write runs overwrites nothing.
RECORD_SENSOR_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=200,
    reliability=ReliabilityPolicy.BEST_EFFORT,
    durability=DurabilityPolicy.VOLATILE,
)
# Chunks, commands, interventions and episode events: every message matters.
COMMAND_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=20,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)
# What the recorder asks of command topics: reliable, with a queue deep enough (20 s of
# commands at 50 Hz) that a busy executor handing them over late drops none.
RECORD_COMMAND_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1000,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)
# Status and instructions: a late subscriber gets the last value.
LATCHED_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)


class RateMeter:
    """Events per second and mean duration over a sliding time window."""

    def __init__(self, window_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._window_s = window_s
        self._clock = clock
        self._events: deque[tuple[float, float]] = deque()

    def record(self, duration_s: float = 0.0) -> None:
        """Count one event that took ``duration_s``."""
        self._events.append((self._clock(), duration_s))
        self._trim()

    def rate_hz(self) -> float:
        """Events per second over the window."""
        self._trim()
        return len(self._events) / self._window_s

    def mean_ms(self) -> float:
        """Mean duration of the events in the window (ms)."""
        self._trim()
        if not self._events:
            return 0.0
        return 1000.0 * sum(d for _, d in self._events) / len(self._events)

    def _trim(self) -> None:
        cutoff = self._clock() - self._window_s
        while self._events and self._events[0][0] < cutoff:
            self._events.popleft()


class Diagnostics:
    """Publish a node's health on ``/diagnostics`` once per period."""

    def __init__(
        self,
        node: Node,
        report: Callable[[], tuple[bytes, str, Sequence[tuple[str, str]]]],
        period_s: float = 1.0,
    ) -> None:
        """Call ``report() -> (level, message, [(key, value), ...])`` every ``period_s``."""
        self._node = node
        self._report = report
        self._publisher = node.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, 10)
        self._timer = node.create_timer(period_s, self.publish)

    def publish(self) -> None:
        """Publish one status now."""
        level, message, values = self._report()
        status = DiagnosticStatus(
            level=level,
            name=f"{self._node.get_namespace().rstrip('/')}/{self._node.get_name()}",
            message=message,
            hardware_id=self._node.get_namespace().strip("/") or self._node.get_name(),
            values=[KeyValue(key=k, value=v) for k, v in values],
        )
        array = DiagnosticArray(status=[status])
        array.header.stamp = self._node.get_clock().now().to_msg()
        self._publisher.publish(array)


def forward_python_logs(node: Node, logger_name: str) -> None:
    """Show the Python log records of ``logger_name`` (a library below the nodes) in ``node``'s ROS log."""
    ros_logger = node.get_logger()

    class _ToRos(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = f"{record.name.rsplit('.', 1)[-1]}: {record.getMessage()}"
            if record.exc_info:
                message += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
            if record.levelno >= logging.ERROR:
                ros_logger.error(message)
            elif record.levelno >= logging.WARNING:
                ros_logger.warning(message)
            else:
                ros_logger.info(message)

    python_logger = logging.getLogger(logger_name)
    if not any(isinstance(h, _ToRos) for h in python_logger.handlers):
        python_logger.addHandler(_ToRos(level=logging.INFO))
        python_logger.setLevel(logging.INFO)


def run_node(make_node: Callable[[], Node], args: Sequence[str] | None = None) -> None:
    """Init rclpy, spin the node made by ``make_node`` until Ctrl-C, SIGTERM or shutdown, then clean up.

    The node spins on a single-threaded executor: work that takes long (inference, uploads,
    downloads, weights staging) runs on threads the node owns, never in a callback, and
    rclpy's multi-threaded executor busy-waits (see :mod:`sop_ros.nodes.spinning`).

    Stopping: rclpy's own signal handlers are not installed (they shut the ROS
    context down at once, under the feet of threads still publishing). The
    first SIGINT or SIGTERM ends the spin within :data:`_SPIN_PERIOD_S`; the
    node is destroyed while its context still works, then rclpy shuts down.
    Further signals (``ros2 launch`` and the terminal both send SIGINT, launch
    then SIGTERM) only set :data:`SHUTDOWN_HURRY` and are logged, so the
    clean-up (closing bags, stopping threads) is never cut short by a
    ``KeyboardInterrupt``; a node whose clean-up may wait long checks
    :data:`SHUTDOWN_HURRY` to cut it short. A signal while the node is still
    being made interrupts that. Once everything is closed, signals are ignored
    while the interpreter exits.

    ``kill -USR1 <pid>`` prints every thread's Python stack to stderr, for a node
    that seems stuck; a clean-up still running after :data:`_CLEANUP_REPORT_S`
    prints them by itself (and goes on).

    A node that cannot start because of a :class:`~sop_ros.core.errors.SopError`
    (bad parameter, missing file, device not available) logs that one error
    and the process exits with status 1, without a traceback.
    """
    if threading.current_thread() is threading.main_thread():
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    rclpy.init(args=None if args is None else list(args), signal_handler_options=SignalHandlerOptions.NO)
    stopping = threading.Event()
    node = None
    failed = False
    try:
        with _signals_interrupt_construction(stopping):
            node = make_node()
        executor = rclpy.executors.SingleThreadedExecutor()
        executor.add_node(node)
        while not stopping.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=_SPIN_PERIOD_S)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except SopError as err:
        failed = True
        rclpy.logging.get_logger(_node_name(make_node)).fatal(f"cannot start: {err}")
    finally:
        _keep_signals_from_cleanup(node)
        faulthandler.dump_traceback_later(_CLEANUP_REPORT_S)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        faulthandler.cancel_dump_traceback_later()
        # Everything is closed; what is left is the interpreter's last full garbage collection
        # over torch's and transformers' object graphs, which took 2-8 s on a loaded 2-core
        # machine (past launch's 5 s patience). Frozen objects are left to the OS instead.
        gc.freeze()
        _ignore_signals_while_exiting()
    if failed:
        sys.exit(1)


# Longest a node keeps spinning after SIGINT/SIGTERM (s): the executor wakes this often.
_SPIN_PERIOD_S = 0.1

# A clean-up that takes longer than this (s) prints every thread's stack to stderr, once.
_CLEANUP_REPORT_S = 15.0

# Set when a further SIGINT or SIGTERM arrives while a node cleans up after the first.
SHUTDOWN_HURRY = threading.Event()


@contextlib.contextmanager
def _signals_interrupt_construction(stopping: threading.Event) -> Iterator[None]:
    """SIGINT/SIGTERM raise KeyboardInterrupt while the node is made, then only set ``stopping``."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    making = True

    def on_signal(signum: int, _frame: object) -> None:
        stopping.set()
        if making:
            raise KeyboardInterrupt(signal.Signals(signum).name)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    try:
        yield
    finally:
        making = False


def _keep_signals_from_cleanup(node: Node | None) -> None:
    """From now until the process exits, SIGINT and SIGTERM set SHUTDOWN_HURRY and are logged."""
    logger = node.get_logger() if node is not None else rclpy.logging.get_logger("sop_ros")

    def hurry(signum: int, _frame: object) -> None:
        SHUTDOWN_HURRY.set()
        logger.info(f"{signal.Signals(signum).name} while shutting down: finishing the clean-up first")

    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, hurry)


def _ignore_signals_while_exiting() -> None:
    """The process only exits now: SIGINT and SIGTERM are ignored until it has.

    Python's finalisation puts the default action back for signals handled in Python, so a
    second Ctrl-C during the last of the exit would kill the process (status -2) after a
    clean shutdown; an ignored signal stays ignored through it.
    """
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)


def _node_name(make_node: Callable[[], Node]) -> str:
    return getattr(make_node, "__name__", "sop_ros")

"""A node process that stops at the very end of its exit, for the signal test.

Runs a plain node under ``run_node`` until SIGINT or SIGTERM, prints
``closed``, and then, after the interpreter has finalised (where Python puts
back the default action of signals it handled), waits in ``pause()`` for the
next signal: what that signal does to the process is what is under test.
"""

from __future__ import annotations

import ctypes

import rclpy

from sop_ros.nodes.common import run_node


def make_node() -> rclpy.node.Node:
    node = rclpy.create_node("exit_pause_peer")
    node.create_timer(0.1, lambda: None)
    print("spinning", flush=True)
    return node


if __name__ == "__main__":
    # Py_AtExit functions run last, after the signal module's finalisation; pause() takes no argument.
    ctypes.pythonapi.Py_AtExit.argtypes = [ctypes.c_void_p]
    ctypes.pythonapi.Py_AtExit(ctypes.cast(ctypes.CDLL(None).pause, ctypes.c_void_p))
    run_node(make_node)
    print("closed", flush=True)

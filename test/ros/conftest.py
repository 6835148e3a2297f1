"""Fixtures for tests that run real rclpy nodes, in this process and in child processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")

PEERS = Path(__file__).parent / "peers"


@pytest.fixture
def ros_context() -> Iterator[rclpy.context.Context]:
    """An initialised rclpy context of this test's own, shut down afterwards."""
    context = rclpy.context.Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        rclpy.try_shutdown(context=context)


@pytest.fixture
def peer() -> Iterator[callable]:
    """Start ``test/ros/peers/<name>.py`` in a child process; all are stopped afterwards."""
    children: list[subprocess.Popen] = []

    def start(name: str, *args: str) -> subprocess.Popen:
        child = subprocess.Popen(
            [sys.executable, str(PEERS / f"{name}.py"), *args],
            env=dict(os.environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        children.append(child)
        return child

    yield start
    for child in children:
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

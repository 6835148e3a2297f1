"""Small helpers shared by the tests that run real nodes."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from rclpy.node import Node

from sop_ros.nodes.spinning import NodeSpinners


@contextlib.contextmanager
def spinning(context, *nodes: Node) -> Iterator[None]:
    """Spin each node on an executor of its own, as ``sop robot`` does; destroy them after."""
    spinners = NodeSpinners(context)
    for node in nodes:
        spinners.add(node)
    spinners.start()
    try:
        yield
    finally:
        spinners.shutdown()
        for node in nodes:
            node.destroy_node()


def wait_for(predicate: Callable[[], object], timeout_s: float = 20.0, poll_s: float = 0.02) -> bool:
    """Poll ``predicate`` until it is truthy or ``timeout_s`` passes; return whether it became true."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll_s)
    return False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chunk_versions(bag: Path) -> set[str]:
    """Weights versions of the action chunks recorded in ``bag`` (read with the mcap reader)."""
    versions = set()
    with next(bag.glob("*.mcap")).open("rb") as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        for _, channel, _, msg in reader.iter_decoded_messages():
            if channel.topic.endswith("/action_chunk"):
                versions.add(msg.policy_version)
    return versions

"""Helpers of the transport tests: a loopback router, real small bags, a small real validator."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from sop_ros.core.types import EpisodeMeta, Outcome, new_episode_id
from sop_ros.transport.session import open_session

CONFIG_DIR = Path(__file__).resolve().parents[3] / "config" / "zenoh"
_TYPESTORE = (
    get_typestore(Stores.ROS2_KILTED) if hasattr(Stores, "ROS2_KILTED") else get_typestore(Stores.LATEST)
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Fleet:
    """A router listening on a loopback port and a factory for client sessions."""

    def __init__(self) -> None:
        self.endpoint = f"tcp/127.0.0.1:{free_port()}"
        self.router = open_session(CONFIG_DIR / "test_router.json5", {"listen/endpoints": [self.endpoint]})
        self._clients: list = []

    def client(self):
        session = open_session(CONFIG_DIR / "test_client.json5", {"connect/endpoints": [self.endpoint]})
        self._clients.append(session)
        return session

    def close(self) -> None:
        for session in self._clients:
            if not session.is_closed():
                session.close()
        self.router.close()


def write_bag(
    parent: Path,
    robot_id: str,
    *,
    task: str = "pick",
    messages: int = 20,
    message_bytes: int = 40_000,
    seed: int = 0,
) -> tuple[Path, EpisodeMeta]:
    """Write a real rosbag2 MCAP bag with random compressed-image payloads and episode metadata."""
    episode_id = new_episode_id(robot_id)
    meta = EpisodeMeta(
        episode_id=episode_id,
        robot_id=robot_id,
        task=task,
        instruction="pick the cube",
        outcome=Outcome.SUCCESS,
        policy_versions=("v0001",),
        start_ns=1,
        end_ns=2,
    )
    path = parent / episode_id
    rng = np.random.default_rng(seed)
    image_type = _TYPESTORE.types["sensor_msgs/msg/CompressedImage"]
    header_type = _TYPESTORE.types["std_msgs/msg/Header"]
    time_type = _TYPESTORE.types["builtin_interfaces/msg/Time"]
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        for key, value in meta.to_custom_data().items():
            writer.set_custom_data(key, value)
        conn = writer.add_connection("/camera/compressed", image_type.__msgtype__, typestore=_TYPESTORE)
        for i in range(messages):
            msg = image_type(
                header=header_type(stamp=time_type(sec=i, nanosec=0), frame_id="cam"),
                format="jpeg",
                data=rng.integers(0, 256, message_bytes, dtype=np.uint8),
            )
            writer.write(conn, i * 1_000_000, _TYPESTORE.serialize_cdr(msg, image_type.__msgtype__))
    return path, meta


def _small_validate_bag(path: Path) -> EpisodeMeta:
    """A small real validator: parse metadata, read every message, decode the episode metadata."""
    with Reader(path) as reader:
        count = sum(1 for _ in reader.messages())
        if count != reader.message_count:
            raise ValueError(f"{count} messages readable, metadata says {reader.message_count}")
        return EpisodeMeta.from_custom_data(reader.storage.metadata.custom or {})


def tree_digest(path: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir())}


os.environ.setdefault("RUST_LOG", "error")


try:  # the learner's real validator, when the storage layer is installed
    from sop_ros.storage import validate_bag
except ImportError:
    validate_bag = _small_validate_bag


def serve_until_crash(endpoint: str, store: str, crash_step: str, ready) -> None:
    """Child process: an ingest server that exits abruptly (``os._exit``) once ``crash_step`` is durable."""
    from sop_ros.transport.ingest import IngestConfig, IngestServer

    def hook(step: str) -> None:
        if step == crash_step:
            os._exit(17)  # no clean-up, no flush: what a power cut or SIGKILL leaves

    session = open_session(CONFIG_DIR / "test_client.json5", {"connect/endpoints": [endpoint]})
    IngestServer(
        session, Path(store), validate_bag=validate_bag, config=IngestConfig(fleet="t"), commit_hook=hook
    )
    ready.set()
    threading.Event().wait(120)


class RssSampler:
    """Samples this process's resident set size on a thread; ``peak_growth_bytes`` is max - start."""

    def __init__(self, period_s: float = 0.005) -> None:
        self.start_bytes = rss_bytes()
        self.peak_bytes = self.start_bytes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(period_s,), daemon=True)
        self._thread.start()

    def _run(self, period_s: float) -> None:
        while not self._stop.wait(period_s):
            self.peak_bytes = max(self.peak_bytes, rss_bytes())

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, rss_bytes())
        return self.peak_bytes - self.start_bytes


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")

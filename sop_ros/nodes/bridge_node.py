"""bridge: uploads finished episode bags from the spool to the learner over Zenoh.

Watches ``<spool_dir>/ready/`` and uploads each bag, oldest first: it asks the
learner what it already holds (an interrupted upload resumes), streams
checksummed chunks from disk, and moves the bag to ``uploaded/`` only after
the learner's commit ack. Bags the learner rejects go to ``rejected/`` with
the reason. While the learner is unreachable bags simply queue: recording
never waits for the bridge. Progress and queue length are on ``/diagnostics``.

Threads: the upload loop runs on its own thread (``bridge-upload``); it shares
only the progress fields below, guarded by ``_lock``, with the diagnostics
timer on the executor.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.node import Node

from sop_ros.core.config import check_ranges, setting
from sop_ros.nodes.common import Diagnostics, forward_python_logs, run_node
from sop_ros.nodes.params import declare_config
from sop_ros.nodes.zenoh_session import ZenohConfig, close_zenoh, open_zenoh
from sop_ros.transport import (
    BagUploader,
    SpoolConfig,
    SpoolUploader,
    UploadConfig,
    UploadProgress,
    UploadResult,
)

__all__ = ["BridgeConfig", "BridgeNode", "main"]


@dataclass(frozen=True, kw_only=True)
class BridgeConfig:
    """Parameters of the bridge."""

    spool_dir: str = setting("spool", "the recorder's spool directory", read_only=True)
    zenoh: ZenohConfig = field(default_factory=ZenohConfig)
    upload: UploadConfig = field(default_factory=UploadConfig)
    spool: SpoolConfig = field(default_factory=SpoolConfig)

    def __post_init__(self) -> None:
        check_ranges(self)


class BridgeNode(Node):
    """Upload the spool's bags on a background thread; report progress."""

    def __init__(self, **kwargs) -> None:
        super().__init__("bridge", **kwargs)
        self.config = declare_config(self, BridgeConfig)
        self._lock = threading.Lock()
        self._progress: UploadProgress | None = None
        self._uploaded = 0
        self._uploaded_bytes = 0
        self._stop = threading.Event()
        self._session = open_zenoh(self.config.zenoh)
        uploader = BagUploader(self._session, self.config.upload)
        self._spool = SpoolUploader(
            uploader,
            Path(self.config.spool_dir),
            config=self.config.spool,
            on_uploaded=self._on_uploaded,
            progress=self._on_progress,
        )
        forward_python_logs(self, "sop_ros.transport")
        self._thread = threading.Thread(
            target=self._spool.run, args=(self._stop,), name="bridge-upload", daemon=True
        )
        self._thread.start()
        self._diagnostics = Diagnostics(self, self._report)
        self.get_logger().info(
            f"uploading bags from {self.config.spool_dir}/ready as {self.config.upload.robot_id} "
            f"(fleet {self.config.upload.fleet})"
        )

    def _on_progress(self, progress: UploadProgress) -> None:
        with self._lock:
            self._progress = progress

    def _on_uploaded(self, result: UploadResult) -> None:
        with self._lock:
            self._uploaded += 1
            self._uploaded_bytes += self._progress.total_bytes if self._progress else 0
            self._progress = None
        self.get_logger().info(f"uploaded {result.summary()}")

    def _report(self) -> tuple[bytes, str, Sequence[tuple[str, str]]]:
        pending = len(self._spool.pending())
        with self._lock:
            progress, uploaded, uploaded_bytes = self._progress, self._uploaded, self._uploaded_bytes
        values = [
            ("bags_waiting", str(pending)),
            ("bags_uploaded", str(uploaded)),
            ("bytes_uploaded", str(uploaded_bytes)),
        ]
        if progress is not None:
            values += [
                ("uploading", progress.episode_id),
                ("progress", f"{progress.done_bytes}/{progress.total_bytes} B"),
            ]
        level = DiagnosticStatus.WARN if pending > 10 else DiagnosticStatus.OK
        return level, f"{pending} bags waiting, {uploaded} uploaded", values

    def destroy_node(self) -> None:
        """Stop the upload thread (an upload in progress resumes next time) and close the session."""
        self._stop.set()
        self._thread.join(timeout=15.0)
        close_zenoh(self._session, self.get_logger())
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    """Run the bridge node."""
    run_node(BridgeNode, args)


if __name__ == "__main__":
    main()

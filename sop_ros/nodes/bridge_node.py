"""bridge: uploads finished episode bags from the spool to the learner over Zenoh.

Watches ``<spool_dir>/ready/`` and uploads each bag, oldest first: it asks the
learner what it already holds (an interrupted upload resumes), streams
checksummed chunks from disk, and moves the bag to ``uploaded/`` only after
the learner's commit ack. Bags the learner rejects go to ``rejected/`` with
the reason. While the learner is unreachable bags simply queue: recording
never waits for the bridge, and the bridge never waits for the learner (the
Zenoh session opens in the background; diagnostics say WARN until it does).
Progress and queue length are on ``/diagnostics``.

Threads: the Zenoh session connects on its own thread and starts the upload
loop (``bridge-upload``) once open; an unexpected error in that loop is
logged with its traceback and the loop restarts after a back-off. The loop
shares only the progress fields below, guarded by ``_lock``, with the
diagnostics timer on the executor.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.node import Node

from sop_ros.core.config import check_ranges, setting
from sop_ros.core.spool import Spool
from sop_ros.nodes.common import Diagnostics, forward_python_logs, run_node
from sop_ros.nodes.params import declare_config
from sop_ros.nodes.zenoh_session import ZenohConfig, link_diagnostics, start_zenoh
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
        # The robot has one fleet setting, zenoh.fleet, shared with param_update: never a second one.
        object.__setattr__(self, "upload", replace(self.upload, fleet=self.zenoh.fleet))


class BridgeNode(Node):
    """Upload the spool's bags on a background thread; report progress."""

    def __init__(self, **kwargs) -> None:
        super().__init__("bridge", **kwargs)
        self.config = declare_config(self, BridgeConfig)
        self._lock = threading.Lock()
        self._progress: UploadProgress | None = None
        self._uploaded = 0
        self._uploaded_bytes = 0
        self._upload_error = ""
        self._stop = threading.Event()
        self._layout = Spool(self.config.spool_dir)
        self._spool: SpoolUploader | None = None
        self._thread: threading.Thread | None = None
        forward_python_logs(self, "sop_ros.transport")
        self._diagnostics = Diagnostics(self, self._report)
        self._link = start_zenoh(self.config.zenoh, "bridge", self._start_uploading)
        self.get_logger().info(
            f"uploading bags from {self._layout.ready} as {self.config.upload.robot_id} "
            f"(fleet {self.config.upload.fleet}) once the learner is reached"
        )

    def _start_uploading(self, session) -> None:
        """The session is open (connecting thread): start the upload loop."""
        spool = SpoolUploader(
            BagUploader(session, self.config.upload),
            Path(self.config.spool_dir),
            config=self.config.spool,
            on_uploaded=self._on_uploaded,
            progress=self._on_progress,
        )
        thread = threading.Thread(target=self._upload_loop, args=(spool,), name="bridge-upload", daemon=True)
        with self._lock:
            self._spool, self._thread = spool, thread
        thread.start()

    def _upload_loop(self, spool: SpoolUploader) -> None:
        """Run the spool uploader until stopped; an unexpected error is logged and the loop restarts."""
        failures = 0
        while not self._stop.is_set():
            try:
                spool.run(self._stop)
            except Exception as err:  # a bug or a disk error must not end uploading without a word
                failures += 1
                delay = min(60.0, 2.0**failures)
                with self._lock:
                    self._upload_error = f"{type(err).__name__}: {err}"
                self.get_logger().error(
                    f"upload loop failed, restarting in {delay:.0f} s: {err!r}\n{traceback.format_exc()}"
                )
                self._stop.wait(delay)

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
        pending = self._waiting()
        with self._lock:
            progress, uploaded, uploaded_bytes = self._progress, self._uploaded, self._uploaded_bytes
            upload_error = self._upload_error
        link_level, link_message, link_values = link_diagnostics(self._link)
        values = [
            ("bags_waiting", str(pending)),
            ("bags_uploaded", str(uploaded)),
            ("bytes_uploaded", str(uploaded_bytes)),
            ("upload_loop_error", upload_error),
            *link_values,
        ]
        if progress is not None:
            values += [
                ("uploading", progress.episode_id),
                ("progress", f"{progress.done_bytes}/{progress.total_bytes} B"),
            ]
        busy = pending > 10 or upload_error
        level = max(link_level, DiagnosticStatus.WARN if busy else DiagnosticStatus.OK)
        message = "; ".join(m for m in (f"{pending} bags waiting, {uploaded} uploaded", link_message) if m)
        return level, message, values

    def _waiting(self) -> int:
        with self._lock:
            spool = self._spool
        if spool is not None:
            return len(spool.pending())
        if not self._layout.ready.is_dir():
            return 0
        return len(self._layout.ready_bags())

    def destroy_node(self) -> None:
        """Stop the upload thread (an upload in progress resumes next time) and close the session."""
        self._stop.set()
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout=3.0)
        # Closing the session ends a query still in flight; then the thread ends for sure.
        self._link.close()
        if thread is not None:
            thread.join(timeout=5.0)
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    """Run the bridge node."""
    run_node(BridgeNode, args)


if __name__ == "__main__":
    main()

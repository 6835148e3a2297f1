"""param_update: keeps the newest published weights on the robot and hands them to the policy.

Follows the learner's weights manifests over Zenoh (a late joiner asks for
the latest), keeps only the newest version, collects its chunks (pushed once
through the router, missing ones fetched in parallel), verifies every chunk
and the whole file, and writes ``tmp`` → fsync → rename into
``staging_dir``. A verified file goes to the policy's ``policy/stage``
service (which checks names, shapes, dtypes and the model's config hash and
loads a shadow copy), then to ``policy/activate``, which the policy carries
out at once between episodes or defers to the running episode's end. An
interrupted or tampered download never reaches the policy; a refused or
failed activation leaves the previous version running.

The Zenoh session opens in the background: the node runs (and reports WARN)
while the learner is unreachable, and starts following the fleet once it is
reached.

Threads: the session connects on its own thread and creates the fetcher
there; the fetcher runs its own thread and calls back ``_on_ready`` from it;
service calls are made asynchronously from there and complete on the
executor. Status fields are guarded by ``_lock``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.client import Client
from rclpy.node import Node
from rclpy.task import Future
from sop_msgs.msg import PolicyStatus
from sop_msgs.srv import ActivateWeights, StageWeights

from sop_ros.core import topics
from sop_ros.core.config import check_ranges, setting
from sop_ros.core.errors import WeightsError
from sop_ros.core.types import format_version
from sop_ros.core.weights import WeightsManifest
from sop_ros.nodes.common import LATCHED_QOS, Diagnostics, forward_python_logs, run_node
from sop_ros.nodes.params import declare_config
from sop_ros.nodes.zenoh_session import ZenohConfig, link_diagnostics, start_zenoh
from sop_ros.transport import FetchStats, WeightsFetcher, WeightsFetcherConfig

__all__ = ["ParamUpdateConfig", "ParamUpdateNode", "main"]


@dataclass(frozen=True, kw_only=True)
class ParamUpdateConfig:
    """Parameters of the parameter-update node."""

    staging_dir: str = setting("weights", "where verified weights files are kept", read_only=True)
    service_timeout_s: float = setting(60.0, "longest wait for the policy's stage service", unit="s", low=0.1)
    zenoh: ZenohConfig = field(default_factory=ZenohConfig)
    fetch: WeightsFetcherConfig = field(default_factory=WeightsFetcherConfig)

    def __post_init__(self) -> None:
        check_ranges(self)
        # The robot has one fleet setting, zenoh.fleet, shared with the bridge: never a second one.
        object.__setattr__(self, "fetch", replace(self.fetch, fleet=self.zenoh.fleet))


class ParamUpdateNode(Node):
    """Fetch, verify and hand over new weights; report where each version stands."""

    def __init__(self, **kwargs) -> None:
        super().__init__("param_update", **kwargs)
        self.config = declare_config(self, ParamUpdateConfig)
        self._lock = threading.Lock()
        self._active = ""
        self._staged = ""
        self._downloaded = ""
        self._last_error = ""
        group = ReentrantCallbackGroup()
        # sop_msgs carries no type information: requests and responses are Any.
        self._stage: Client[Any, Any] = self.create_client(
            StageWeights, topics.POLICY_STAGE, callback_group=group
        )
        self._activate: Client[Any, Any] = self.create_client(
            ActivateWeights, topics.POLICY_ACTIVATE, callback_group=group
        )
        self.create_subscription(PolicyStatus, topics.POLICY_STATUS, self._on_status, LATCHED_QOS)
        forward_python_logs(self, "sop_ros.transport")
        self._fetcher: WeightsFetcher | None = None
        self._closing = False
        self._diagnostics = Diagnostics(self, self._report)
        self._link = start_zenoh(self.config.zenoh, "param_update", self._start_fetching)

    def _start_fetching(self, session) -> None:
        """The session is open (connecting thread): follow the fleet's weights."""
        fetcher = WeightsFetcher(
            session,
            Path(self.config.staging_dir),
            on_ready=self._on_ready,
            on_error=self._on_error,
            config=self.config.fetch,
        )
        with self._lock:
            closing = self._closing
            if not closing:
                self._fetcher = fetcher
        if closing:  # shut down while the session was opening
            fetcher.close()

    def _on_status(self, msg: PolicyStatus) -> None:
        with self._lock:
            self._active, self._staged = msg.active_version, msg.staged_version

    def _on_error(self, err: WeightsError) -> None:
        with self._lock:
            self._last_error = str(err)
        self.get_logger().error(f"weights refused: {err}")

    def _on_ready(self, manifest: WeightsManifest, path: Path) -> None:
        """A verified file is on disk (fetcher thread): ask the policy to stage it."""
        version = format_version(manifest.version)
        with self._lock:
            self._downloaded = version
        self.get_logger().info(
            f"verified {version} (step {manifest.step}, {manifest.size_bytes} B) at {path}"
        )
        if not self._stage.wait_for_service(timeout_sec=self.config.service_timeout_s):
            self._on_error(WeightsError(f"{version} kept at {path}: policy/stage is not available"))
            return
        request = StageWeights.Request(path=str(path), version=version, sha256=manifest.sha256)
        self._stage.call_async(request).add_done_callback(lambda f: self._staged_answer(version, f))

    def _staged_answer(self, version: str, future: Future[Any]) -> None:
        answer = future.result()
        if answer is None or not answer.accepted:
            reason = answer.message if answer is not None else "no answer"
            self._on_error(WeightsError(f"policy refused to stage {version}: {reason}"))
            return
        self._activate.call_async(ActivateWeights.Request(version=version)).add_done_callback(
            lambda f: self._activated_answer(version, f)
        )

    def _activated_answer(self, version: str, future: Future[Any]) -> None:
        answer = future.result()
        if answer is None or not answer.accepted:
            reason = answer.message if answer is not None else "no answer"
            self._on_error(WeightsError(f"activation of {version} refused: {reason}"))
        else:
            self.get_logger().info(answer.message)

    def _report(self) -> tuple[bytes, str, Sequence[tuple[str, str]]]:
        with self._lock:
            active, staged, downloaded, error = self._active, self._staged, self._downloaded, self._last_error
            fetcher = self._fetcher
        stats = fetcher.stats if fetcher is not None else FetchStats()
        link_level, link_message, link_values = link_diagnostics(self._link)
        level = max(link_level, DiagnosticStatus.WARN if error else DiagnosticStatus.OK)
        return (
            level,
            "; ".join(m for m in (error or f"active {active or '?'}", link_message) if m),
            [
                ("active_version", active),
                ("staged_version", staged),
                ("newest_downloaded", downloaded),
                ("chunks_pushed", str(stats.chunks_pushed)),
                ("chunks_fetched", str(stats.chunks_fetched)),
                ("chunks_rejected", str(stats.chunks_rejected)),
                ("last_error", error),
                *link_values,
            ],
        )

    def destroy_node(self) -> None:
        """Stop the fetcher (a download in progress is abandoned, never handed over), close Zenoh."""
        with self._lock:
            self._closing = True
            fetcher, self._fetcher = self._fetcher, None
        if fetcher is not None:
            fetcher.close()
        self._link.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    """Run the parameter-update node."""
    run_node(ParamUpdateNode, args)


if __name__ == "__main__":
    main()

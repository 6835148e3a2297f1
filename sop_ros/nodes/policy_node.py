"""policy: runs the VLA on the robot's cameras and joint states, publishes action chunks.

A lifecycle node. ``on_configure`` builds the policy (π0: a ``tiny`` or
``full`` random-init preset, or a local checkpoint) and loads the initial
weights; ``on_activate`` starts the inference worker. With ``autostart`` it
configures and activates itself, so ``ros2 run`` alone brings it up.

While an episode runs, the worker takes the newest camera frames and joint
state, runs inference and publishes ``action_chunk`` (and, for joint-space
actions, a ``JointTrajectory`` a stock joint_trajectory_controller accepts)
every ``replan_period_s``. Missing or stale input is never acted on: the
worker publishes nothing and says why, throttled, and the mux holds.

What it refuses (:mod:`sop_ros.core.guards`), holding and reporting ERROR on
``/diagnostics`` with the cause until good input returns: joint states that
lack a joint, name one twice or hold NaN/infinity; images with a non-colour
encoding or format (``16UC1; png``), sizes that disagree with their data, or
data that does not decode; inputs whose header stamp is older than
``max_input_age_s`` or more than ``max_clock_skew_s`` in the future; chunks
the model computed with NaN or infinity. Each chunk's header stamp is the
stamp of the newest input it was computed from; the inference time is in
``infer_ms``. The inference worker outlives any failure: an unexpected
exception is logged once with its traceback, the robot holds, diagnostics
show ERROR naming it, and the worker tries again; the error clears with the
next chunk published (or the next episode event, which also clears a refused
weights file's error).

Weights (:class:`WeightsSwapper`): ``policy/stage`` (``sop_msgs/StageWeights``)
checks the file's sha256 and loads it into a shadow copy without touching
the live weights, on a staging thread, and answers with the outcome when
that takes less than ``stage_answer_wait_s`` (a small model), else at once
with "staging in the background" (the camera callbacks must not wait behind
a 1.5 GB file). ``policy/activate`` swaps the staged weights in at once
between episodes, or at the end of the running episode; asked for a version
still being staged, once staging succeeds. ``policy/status`` (latched) says
which version is active and which is staged.

Threads: sensor callbacks only store the newest message under
``_inputs_lock``. The inference worker is a plain thread owned by this node;
the swapper owns the staging thread and orders every swap decision. The
callback groups (sensors mutually exclusive, services and episode events
reentrant) matter only under a multi-threaded executor.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import CompressedImage, Image, JointState
from sop_msgs.msg import ActionChunk as ActionChunkMsg
from sop_msgs.msg import EpisodeEvent, PolicyStatus
from sop_msgs.srv import ActivateWeights, StageWeights
from trajectory_msgs.msg import JointTrajectory

from sop_ros.core import topics
from sop_ros.core.config import check_ranges, setting
from sop_ros.core.errors import SopError, UnsafeInputError
from sop_ros.core.guards import RecentFault, check_finite, check_stamp
from sop_ros.core.policy import Policy, PolicyConfig, make_policy
from sop_ros.core.types import Observation
from sop_ros.core.weights_swap import WeightsSwapper, check_weights_finite
from sop_ros.nodes.common import (
    COMMAND_QOS,
    LATCHED_QOS,
    SENSOR_QOS,
    Diagnostics,
    RateMeter,
    forward_python_logs,
    run_node,
)
from sop_ros.nodes.convert import (
    chunk_to_msg,
    chunk_to_trajectory,
    image_from_msg,
    joint_positions,
    stamp_to_ns,
)
from sop_ros.nodes.params import declare_config

__all__ = ["PolicyNode", "PolicyNodeConfig", "main"]


@dataclass(frozen=True, kw_only=True)
class PolicyNodeConfig:
    """Parameters of the policy node."""

    autostart: bool = setting(True, "configure and activate at start-up", read_only=True)
    initial_weights: str = setting("", "trainable weights file loaded at configure; empty = the base model")
    replan_period_s: float = setting(0.5, "time between two inferences during an episode", unit="s", low=0.0)
    max_input_age_s: float = setting(
        0.5, "oldest camera frame or joint state acted on (by arrival and by header stamp)", unit="s", low=0.0
    )
    max_clock_skew_s: float = setting(
        0.1,
        "how far in the future an input's header stamp may lie (clock offset between the sensor's "
        "computer and this one); further ahead is refused",
        unit="s",
        low=0.0,
    )
    stage_answer_wait_s: float = setting(
        0.2,
        "longest a stage request waits for its outcome before answering that staging goes on in the "
        "background (keep it well below max_input_age_s: camera callbacks wait as long)",
        unit="s",
        low=0.0,
    )
    compressed_images: bool = setting(True, "subscribe to JPEG CompressedImage instead of raw Image")
    joint_trajectory: bool = setting(False, "also publish each chunk as a trajectory_msgs/JointTrajectory")
    policy: PolicyConfig = field(default_factory=PolicyConfig)

    def __post_init__(self) -> None:
        check_ranges(self)


# Settings applied while running; every other one is read-only.
LIVE_PARAMETERS = ("replan_period_s", "max_input_age_s", "max_clock_skew_s")


class PolicyNode(LifecycleNode):
    """Run the policy and handle weight stage/activate requests.

    Args:
        policy: A ready policy to run instead of building one from the ``policy.*``
            parameters at configure (``make_policy``); its config must be theirs.
        **kwargs: ``rclpy.node.Node`` arguments.
    """

    def __init__(self, *, policy: Policy | None = None, **kwargs) -> None:
        super().__init__("policy", **kwargs)
        self.config = declare_config(
            self, PolicyNodeConfig, live=LIVE_PARAMETERS, on_change=lambda c: setattr(self, "config", c)
        )
        self._given_policy = policy
        self.policy: Policy | None = None
        self._weights: WeightsSwapper | None = None
        # Bumped at every episode event: a chunk computed in one episode is never published in the next.
        self._episode_epoch = 0
        self._inputs_cleared_at = 0.0
        self._inputs_lock = threading.Lock()
        self._images: dict[str, tuple[float, Image | CompressedImage]] = {}
        self._joints: tuple[float, JointState] | None = None
        self._instruction = ""
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._infers = RateMeter()
        self._hold_reason = "not configured"
        # Why the worker could not act (bad input, a failed inference); cleared by the next chunk.
        self._error = ""
        self._faults = RecentFault()
        if self.config.autostart:
            self._autostart_timer = self.create_timer(0.0, self._autostart)

    # The subscriptions, services and worker that use these are made by on_configure, after both.

    @property
    def _model(self) -> Policy:
        if self.policy is None:
            raise RuntimeError("the policy node is used before on_configure built its policy")
        return self.policy

    @property
    def _swapper(self) -> WeightsSwapper:
        if self._weights is None:
            raise RuntimeError("the policy node is used before on_configure built its policy")
        return self._weights

    # ------------------------------------------------------------ lifecycle

    def _autostart(self) -> None:
        self.destroy_timer(self._autostart_timer)
        if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Build the policy and the ROS interfaces."""
        start = time.perf_counter()
        try:
            self.policy = self._given_policy or make_policy(self.config.policy)
            if self.config.initial_weights:
                check_weights_finite(Path(self.config.initial_weights))
                self.policy.load_trainable(self.config.initial_weights)
            if self.config.policy.compile_mode != "none":
                # Compile or capture now, not on the first episode's first observation.
                self.policy.warmup()
        except SopError as err:
            self.get_logger().error(f"cannot build the policy: {err}")
            return TransitionCallbackReturn.FAILURE
        except Exception as err:  # a checkpoint or library failure no check foresaw: stay unconfigured
            detail = "".join(traceback.format_exception(err))
            self.get_logger().error(f"cannot build the policy: {type(err).__name__}: {err}\n{detail}")
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info(
            f"policy {self.policy.base_model_id} ready in {time.perf_counter() - start:.1f} s "
            f"({self.policy.inference_path}), weights {self.policy.active_version}"
        )
        self._weights = WeightsSwapper(self.policy, on_change=self._publish_status)
        forward_python_logs(self, "sop_ros.core.weights_swap")
        sensors = MutuallyExclusiveCallbackGroup()
        control = ReentrantCallbackGroup()
        image_type = CompressedImage if self.config.compressed_images else Image
        for camera in self.config.policy.camera_names:
            topic = topics.camera_topic(camera, compressed=self.config.compressed_images)
            self.create_subscription(
                image_type,
                topic,
                lambda msg, c=camera: self._on_image(c, msg),
                SENSOR_QOS,
                callback_group=sensors,
            )
        self.create_subscription(
            JointState, topics.JOINT_STATES, self._on_joints, SENSOR_QOS, callback_group=sensors
        )
        self.create_subscription(
            EpisodeEvent, topics.EPISODE_EVENTS, self._on_episode, COMMAND_QOS, callback_group=control
        )
        self._chunks = self.create_lifecycle_publisher(ActionChunkMsg, topics.ACTION_CHUNK, COMMAND_QOS)
        self._trajectory = (
            self.create_lifecycle_publisher(JointTrajectory, "joint_trajectory", COMMAND_QOS)
            if self.config.joint_trajectory
            else None
        )
        self._status = self.create_publisher(PolicyStatus, topics.POLICY_STATUS, LATCHED_QOS)
        self.create_service(StageWeights, topics.POLICY_STAGE, self._on_stage, callback_group=control)
        self.create_service(
            ActivateWeights, topics.POLICY_ACTIVATE, self._on_activate, callback_group=control
        )
        self._diagnostics = Diagnostics(self, self._report)
        self._hold_reason = "no episode running"
        self._publish_status()
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Start the inference worker."""
        self._stop.clear()
        self._worker = threading.Thread(target=self._run_worker, name="policy-inference", daemon=True)
        self._worker.start()
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop the inference worker; the robot holds."""
        self._stop_worker()
        return super().on_deactivate(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop the worker before the node goes away."""
        self._stop_worker()
        return TransitionCallbackReturn.SUCCESS

    def destroy_node(self) -> None:
        """Stop the worker thread, then destroy the node."""
        self._stop_worker()
        super().destroy_node()

    def _stop_worker(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._worker is not None:
            self._worker.join(timeout=10.0)
            self._worker = None

    # ------------------------------------------------------------ inputs

    def _on_image(self, camera: str, msg: Image | CompressedImage) -> None:
        with self._inputs_lock:
            self._images[camera] = (time.monotonic(), msg)

    def _on_joints(self, msg: JointState) -> None:
        with self._inputs_lock:
            self._joints = (time.monotonic(), msg)

    def _on_episode(self, msg: EpisodeEvent) -> None:
        self._episode_epoch += 1
        # A failure is reported until the episode it happened in is over; each episode starts clean.
        self._error = self._swapper.last_error = ""
        if msg.kind == EpisodeEvent.START:
            with self._inputs_lock:
                self._instruction = msg.instruction
                # Frames and joint states from before the start may show the last episode's
                # scene (a reset moves things): the first chunk waits for inputs sent since.
                self._images.clear()
                self._joints = None
                self._inputs_cleared_at = time.monotonic()
            self._swapper.episode_started()
            self._model.reset()
            self._wake.set()
        else:
            self._swapper.episode_ended()
        self._publish_status()

    def _observation(self) -> tuple[Observation | None, str]:
        """The newest inputs as an Observation, or (None, why) if any is missing or stale.

        Raises:
            UnsafeInputError: an input is malformed, not finite, or stamped too old or too new.
        """
        now = time.monotonic()
        limit = self.config.max_input_age_s
        with self._inputs_lock:
            images = dict(self._images)
            joints = self._joints
            instruction = self._instruction
        for camera in self.config.policy.camera_names:
            if camera not in images:
                return None, f"no frame from camera {camera!r} yet"
            age = now - images[camera][0]
            if age > limit:
                return None, f"camera {camera!r} frame arrived {age:.2f} s ago (limit {limit} s)"
        if joints is None:
            return None, "no joint_states yet"
        if now - joints[0] > limit:
            return None, f"joint_states arrived {now - joints[0]:.2f} s ago (limit {limit} s)"
        inputs = {f"camera {c!r} frame": images[c][1] for c in self.config.policy.camera_names}
        inputs["joint_states"] = joints[1]
        now_ns = self.get_clock().now().nanoseconds
        for what, msg in inputs.items():
            check_stamp(
                what,
                stamp_to_ns(msg.header.stamp),
                now_ns,
                max_age_s=limit,
                max_skew_s=self.config.max_clock_skew_s,
            )
        state = joint_positions(joints[1], self.config.policy.state_names)
        decoded = {
            c: image_from_msg(images[c][1], f"camera {c!r} frame") for c in self.config.policy.camera_names
        }
        # The chunk answers the newest input it saw: the mux times its rows from this stamp.
        stamp_ns = max(stamp_to_ns(msg.header.stamp) for msg in inputs.values())
        return Observation(images=decoded, state=state, instruction=instruction, stamp_ns=stamp_ns), ""

    # ------------------------------------------------------------ inference

    def _run_worker(self) -> None:
        while not self._stop.is_set():
            try:
                self._work_once()
            except Exception as err:  # the worker must outlive any failure
                if self._stop.is_set() or not self.context.ok():
                    return  # shutting down: the publishers are going away with the context
                self._fail(f"inference worker failed: {type(err).__name__}: {err}", err)
                self._stop.wait(0.5)

    def _work_once(self) -> None:
        if not self._swapper.episode_running:
            self._hold_reason = "no episode running"
            self._wake.wait(timeout=0.2)
            self._wake.clear()
            return
        started = time.monotonic()
        epoch = self._episode_epoch
        try:
            observation, why = self._observation()
        except UnsafeInputError as err:
            self._fail(f"refusing input: {err}")
            self._stop.wait(0.05)
            return
        if observation is None:
            self._hold_reason = why
            # Right after an episode starts, waiting for its first inputs is normal.
            if time.monotonic() - self._inputs_cleared_at > self.config.max_input_age_s:
                self.get_logger().warning(f"not acting: {why}", throttle_duration_sec=5.0)
            self._stop.wait(0.05)
            return
        try:
            chunk = self._model.infer(observation)
            check_finite(f"action chunk of {chunk.policy_version}", chunk.actions)
        except SopError as err:
            self._fail(f"inference failed: {err}")
            self._stop.wait(0.5)
            return
        if not self._swapper.episode_running or epoch != self._episode_epoch:
            return  # the episode ended (and maybe another began) during inference: the chunk is void
        self._chunks.publish(chunk_to_msg(chunk))
        if self._trajectory is not None:
            self._trajectory.publish(chunk_to_trajectory(chunk))
        self._infers.record(chunk.infer_ms / 1e3)
        self._hold_reason = self._error = ""
        self._stop.wait(max(0.0, self.config.replan_period_s - (time.monotonic() - started)))

    def _fail(self, reason: str, err: BaseException | None = None) -> None:
        """Hold and report ``reason``; log it once while it repeats (with the traceback of ``err``)."""
        self._hold_reason = self._error = reason
        if self._faults.report(reason, time.monotonic_ns()):
            detail = "".join(traceback.format_exception(err)) if err is not None else ""
            self.get_logger().error(f"{reason}; holding{chr(10) + detail if detail else ''}")

    # ------------------------------------------------------------ weights

    def _on_stage(
        self, request: StageWeights.Request, response: StageWeights.Response
    ) -> StageWeights.Response:
        answer = self._swapper.stage(
            Path(request.path),
            version=request.version,
            sha256=request.sha256,
            wait_s=self.config.stage_answer_wait_s,
        )
        response.accepted, response.message = answer.accepted, answer.message
        self._publish_status()
        return response

    def _on_activate(
        self, request: ActivateWeights.Request, response: ActivateWeights.Response
    ) -> ActivateWeights.Response:
        answer = self._swapper.activate(request.version)
        response.accepted, response.deferred, response.message = answer
        self._publish_status()
        return response

    # ------------------------------------------------------------ status

    def _publish_status(self) -> None:
        if self.policy is None:
            return
        msg = PolicyStatus(
            active_version=self.policy.active_version,
            staged_version=self.policy.staged_version or "",
            episode_running=self._swapper.episode_running,
            inference_rate=self._infers.rate_hz(),
            inference_latency_ms=self._infers.mean_ms(),
        )
        msg.header.stamp = self.get_clock().now().to_msg()
        self._status.publish(msg)

    def _report(self) -> tuple[bytes, str, Sequence[tuple[str, str]]]:
        error = self._error or self._swapper.last_error
        if error:
            level, message = DiagnosticStatus.ERROR, error
        elif self._hold_reason and self._swapper.episode_running:
            level, message = DiagnosticStatus.WARN, f"holding: {self._hold_reason}"
        else:
            level, message = DiagnosticStatus.OK, self._hold_reason or "acting"
        self._publish_status()
        version = self.policy.active_version if self.policy else ""
        return (
            level,
            message,
            [
                ("inference_rate_hz", f"{self._infers.rate_hz():.2f}"),
                ("inference_ms", f"{self._infers.mean_ms():.1f}"),
                ("active_version", version),
                ("staged_version", (self.policy.staged_version or "") if self.policy else ""),
            ],
        )


def main(args: list[str] | None = None) -> None:
    """Run the policy node."""
    run_node(PolicyNode, args)


if __name__ == "__main__":
    main()

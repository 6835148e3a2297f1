"""New weights go live only between episodes: verified and loaded in the background first.

:class:`WeightsSwapper` runs a robot policy's weights life cycle. ``stage``
checks a file's sha256 and loads it into the policy's shadow copy on a
staging thread, and answers with the outcome if that comes within
``wait_s``, else at once ("staging in the background": a 1.5 GB trainable
set takes a second or two, and the caller may be an executor thread that
camera callbacks wait on). ``activate`` swaps the staged weights in at once
between episodes, or at the end of the running episode (:class:`SwapGate`);
asked for the version still being staged, it swaps once staging succeeds.
The policy node is a thin ROS adapter over it.

Threads: one staging thread at a time, started by ``stage``; every method
may be called from any thread. ``_lock`` orders every decision to swap
(episode boundaries, activation requests, the end of a staging); the
policy's own locks keep a swap from overlapping an inference.

Staging refuses a file holding NaN or infinity in any tensor
(:func:`check_weights_finite`, naming the tensors): such weights would make
every action non-finite. The staging thread never dies on a failure: an
unexpected exception is logged with its traceback and refuses the file like
any other error. ``last_error`` holds the newest refusal until a later
staging or activation succeeds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Protocol

from sop_ros.core.episode import SwapGate
from sop_ros.core.errors import SopError, WeightsError
from sop_ros.core.weights import file_sha256

__all__ = ["StagingPolicy", "SwapAnswer", "WeightsSwapper", "check_weights_finite"]

_log = logging.getLogger(__name__)


def check_weights_finite(path: Path) -> None:
    """Raise unless every floating-point tensor of the safetensors file ``path`` is finite.

    Reads one tensor at a time, so the check needs no more memory than the largest tensor.

    Raises:
        WeightsError: the file cannot be read, or names the tensors holding NaN or infinity.
    """
    import torch
    from safetensors import SafetensorError, safe_open

    bad: list[str] = []
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            for name in handle.keys():  # noqa: SIM118 - a safe_open handle is not a mapping
                tensor = handle.get_tensor(name)
                if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                    count = int((~torch.isfinite(tensor)).sum())
                    bad.append(f"{name} ({count} of {tensor.numel()} values)")
    except (OSError, ValueError, RuntimeError, SafetensorError) as err:
        raise WeightsError(f"cannot read weights {path}: {err}") from None
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more tensors" if len(bad) > 5 else "")
        raise WeightsError(f"{path} holds NaN or infinite values in {shown}; not staged")


class StagingPolicy(Protocol):
    """What the swapper needs of a policy (``Pi0Policy`` has it)."""

    @property
    def active_version(self) -> str:
        """Version of the weights in use."""

    @property
    def staged_version(self) -> str | None:
        """Version waiting in the shadow copy, or None."""

    def stage(self, source: Path, *, version: str | None = None) -> None:
        """Load a weights file into the shadow copy (raises ``SopError`` when it does not fit)."""

    def activate(self) -> float:
        """Swap the shadow copy in; return the stall (ms)."""


class SwapAnswer(NamedTuple):
    """How a stage or activate request ended (or will end)."""

    accepted: bool
    # True when the swap waits for the running episode's end, or for staging to finish.
    deferred: bool
    message: str


@dataclass
class _Staging:
    version: str
    done: threading.Event = field(default_factory=threading.Event)
    answer: SwapAnswer | None = None


class WeightsSwapper:
    """Stage weights in the background; swap them in only between episodes.

    Args:
        policy: The live policy, with a shadow copy to stage into.
        on_change: Called (on any thread) after a staging ended or the weights were swapped.
    """

    def __init__(self, policy: StagingPolicy, *, on_change: Callable[[], None] = lambda: None) -> None:
        self._policy = policy
        self._on_change = on_change
        self._gate = SwapGate()
        self._lock = threading.Lock()
        self._staging: _Staging | None = None
        # An activation was asked for while the staging in progress had not ended.
        self._activate_after_staging = False
        self.last_error = ""

    @property
    def episode_running(self) -> bool:
        """True between an episode's start and its end."""
        return self._gate.episode_running

    def stage(self, path: Path, *, version: str = "", sha256: str = "", wait_s: float = 0.0) -> SwapAnswer:
        """Verify ``path`` against ``sha256`` and load it into the shadow copy, on a staging thread.

        Returns the outcome if it comes within ``wait_s``; else accepted and deferred, with the
        outcome logged (and kept in ``last_error`` if the file is refused). A request while
        another file is being staged is refused: the fleet sends newer weights soon enough.
        """
        job = _Staging(version=version)
        with self._lock:
            busy = self._staging
            if busy is None:
                self._staging = job
        if busy is not None:
            message = f"still staging {busy.version}; {version} not taken"
            _log.warning(message)
            return SwapAnswer(False, False, message)
        thread = threading.Thread(
            target=self._stage, args=(job, path, sha256), name="weights-staging", daemon=True
        )
        thread.start()
        if job.done.wait(wait_s) and job.answer is not None:
            return job.answer
        return SwapAnswer(True, True, f"verifying and staging {version} in the background")

    def activate(self, version: str = "") -> SwapAnswer:
        """Swap in the staged ``version`` (empty: whatever is staged) now or at the episode end."""
        with self._lock:
            staging = self._staging
            if staging is not None and version in ("", staging.version):
                self._activate_after_staging = True
                message = f"{staging.version} will be activated once staged, between episodes"
                answer = SwapAnswer(True, True, message)
            elif (staged := self._policy.staged_version) is None or version not in ("", staged):
                return SwapAnswer(False, False, f"cannot activate {version!r}: staged is {staged!r}")
            else:
                answer = self._request_swap(staged)
        if answer.deferred:
            _log.info(answer.message)
        return answer

    def episode_started(self) -> None:
        """An episode began: swaps wait for its end from now on."""
        with self._lock:
            self._gate.episode_started()

    def episode_ended(self) -> None:
        """The episode ended or was aborted: carry out a swap that waited for it."""
        with self._lock:
            version = self._gate.episode_ended()
            if version is not None:
                self._swap(version, deferred=True)

    def _stage(self, job: _Staging, path: Path, sha256: str) -> None:
        start = time.perf_counter()
        try:
            digest = file_sha256(path)
            if sha256 and digest != sha256.lower():
                raise SopError(f"{path} has sha256 {digest[:12]}…, expected {sha256[:12]}…; not staged")
            check_weights_finite(path)
            self._policy.stage(path, version=job.version or None)
        except (SopError, OSError) as err:
            self.last_error = str(err)
            job.answer = SwapAnswer(False, False, str(err))
            _log.error("refused weights %s: %s", job.version, err)
        except Exception as err:  # the staging thread must answer whatever happens
            self.last_error = f"staging {job.version} failed: {type(err).__name__}: {err}"
            job.answer = SwapAnswer(False, False, self.last_error)
            _log.exception("refused weights %s", job.version)
        else:
            self.last_error = ""
            elapsed_s = time.perf_counter() - start
            job.answer = SwapAnswer(True, False, f"staged {self._policy.staged_version} in {elapsed_s:.2f} s")
            _log.info(job.answer.message)
        with self._lock:
            self._staging = None
            activate, self._activate_after_staging = self._activate_after_staging, False
            staged = self._policy.staged_version
            if activate and job.answer.accepted and staged is not None:
                self._request_swap(staged)
        job.done.set()
        self._on_change()

    def _request_swap(self, version: str) -> SwapAnswer:
        """Swap now between episodes, else have the gate keep it for the episode end (lock held)."""
        if self._gate.request(version):
            return self._swap(version, deferred=False)
        return SwapAnswer(True, True, f"{version} will be activated when the running episode ends")

    def _swap(self, version: str, *, deferred: bool) -> SwapAnswer:
        previous = self._policy.active_version
        try:
            stall_ms = self._policy.activate()
        except SopError as err:
            self.last_error = str(err)
            _log.error("activation of %s failed, %s stays active: %s", version, previous, err)
            return SwapAnswer(False, False, str(err))
        when = "at the episode end" if deferred else "between episodes"
        message = f"activated {version} (was {previous}) {when}; swap stalled {stall_ms:.2f} ms"
        _log.info(message)
        self._on_change()
        return SwapAnswer(True, False, message)

"""A colcon workspace of sop_ros built the way README.md's "Running on a real ROS 2 robot" says.

The ROS 2 install it builds against is this virtual environment: the ROS 2
kilted wheels (rclpy, messages, ament, rosidl) plus the upstream ``launch``,
``launch_ros`` and ``ros2cli`` wheels of ``../shared/ros2-tools`` and colcon
from PyPI, which ``make setup`` installs when ``../shared/ros2-tools`` exists.
The commands are the README's, word for word (:data:`RECIPE`); the one
addition is the CMake fix the kilted wheels need (``ros_wheels_fix.cmake``),
which a real ROS install never needs.

One build is shared by every test of a session, and by later sessions while
the sources are unchanged: it lives in the temp dir under a digest of the
commit and the uncommitted changes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT.parent / "shared" / "ros2-tools"
WHEELS_FIX = Path(__file__).with_name("ros_wheels_fix.cmake")
VENV_BIN = Path(sys.executable).parent

# The README's commands, as the tests run them (test_readme_says_what_the_tests_run checks).
CLONE = "git clone <this repository> src/sop_ros"
ROSDEP = "rosdep install --from-paths src/sop_ros src/sop_ros/sop_msgs --ignore-src -y"
BUILD = "python -m colcon build --base-paths src/sop_ros src/sop_ros/sop_msgs"
SOURCE = "source install/setup.bash"
EXECUTABLES = "ros2 pkg executables sop_ros"
ROBOT_SIM = "ros2 launch sop_ros robot.launch.py robot_id:=sim_1 sim:=true"
RECIPE = (CLONE, ROSDEP, BUILD, SOURCE, EXECUTABLES, ROBOT_SIM)


def missing_tools() -> str:
    """Return why the real ROS 2 tools cannot run here, or "" when they can."""
    if not TOOLS.is_dir():
        return f"{TOOLS} does not exist: no upstream launch/ros2cli wheels to test with"
    absent = [tool for tool in ("ros2", "colcon") if not (VENV_BIN / tool).exists()]
    if absent:
        return f"{', '.join(absent)} not installed in {VENV_BIN.parent}: run `make setup`"
    return ""


def ros_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a shell where the ROS 2 install (this venv's prefix) is sourced."""
    env = dict(os.environ)
    prefix = str(Path(sys.prefix))
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        AMENT_PREFIX_PATH=prefix,
        CMAKE_PREFIX_PATH=prefix,
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        ROS_DOMAIN_ID=env.get("ROS_DOMAIN_ID", "15"),
        PYTHONUNBUFFERED="1",
        RCUTILS_COLORIZED_OUTPUT="0",
    )
    env.pop("VIRTUAL_ENV", None)
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class Workspace:
    """A built workspace: ``path`` holds src/, build/, install/; ``env`` has install/ sourced."""

    path: Path
    env: dict[str, str]
    build_log: str

    def run(self, command: str, *, timeout: float) -> subprocess.CompletedProcess:
        """Run ``command`` in bash in the workspace, after ``source install/setup.bash``."""
        return subprocess.run(
            ["bash", "-c", f"{SOURCE} && {command}"],
            cwd=self.path,
            env=ros_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def _digest() -> str:
    """Digest of what the build is made of: every file but the tests, as in the working tree."""
    outside_tests = ["--", ".", ":!test"]
    files = subprocess.run(
        ["git", "ls-files", "-s", *outside_tests], cwd=ROOT, capture_output=True, check=True
    )
    diff = subprocess.run(
        ["git", "diff", "HEAD", "--binary", *outside_tests], cwd=ROOT, capture_output=True, check=True
    )
    data = files.stdout + diff.stdout + WHEELS_FIX.read_bytes() + sys.prefix.encode()
    return hashlib.sha256(data).hexdigest()[:12]


def build_workspace(timeout_s: float = 900.0) -> Workspace:
    """Clone this repository into a fresh workspace and build it with colcon (or reuse that build).

    The clone is of the current commit; uncommitted changes are applied on top, so
    what is tested is the working tree. Raises AssertionError with colcon's output if
    the build fails or leaves out a package.
    """
    ws = Path(tempfile.gettempdir()) / f"sop_ros_ws_{_digest()}"
    stamp = ws / "BUILT"
    if not stamp.exists():
        shutil.rmtree(ws, ignore_errors=True)
        (ws / "src").mkdir(parents=True)
        log: list[str] = []

        def step(argv: list[str], cwd: Path, given: bytes | None = None) -> None:
            done = subprocess.run(
                argv, cwd=cwd, env=ros_env(), input=given, capture_output=True, timeout=timeout_s
            )
            log.append(f"$ {' '.join(argv)}\n{(done.stdout + done.stderr).decode(errors='replace')}")
            assert done.returncode == 0, "\n".join(log)

        step(CLONE.replace("<this repository>", str(ROOT)).split(), ws)
        changes = subprocess.run(["git", "diff", "HEAD", "--binary"], cwd=ROOT, capture_output=True)
        assert changes.returncode == 0, changes.stderr
        step(["git", "apply", "--allow-empty", "-"], ws / "src" / "sop_ros", changes.stdout)
        # `python -m colcon build ...` with this venv's python, plus the wheels' CMake fix.
        wheels_fix = f"-DCMAKE_PROJECT_INCLUDE={WHEELS_FIX}"
        step([sys.executable, *BUILD.split()[1:], "--cmake-args", wheels_fix], ws)
        text = "\n".join(log)
        for package in ("sop_msgs", "sop_ros"):
            assert (ws / "install" / package).is_dir(), f"colcon did not build {package}:\n{text}"
        (ws / "build.log").write_text(text)
        stamp.write_text("ok\n")
    sourced = subprocess.run(
        ["bash", "-c", f"{SOURCE} && env -0"], cwd=ws, env=ros_env(), capture_output=True, check=True
    ).stdout.decode()
    env = dict(item.split("=", 1) for item in sourced.split("\0") if "=" in item)
    return Workspace(ws, env, (ws / "build.log").read_text())


class Launch:
    """``ros2 launch ...`` in a process group of its own, output to ``log``, as a user starts it."""

    def __init__(self, workspace: Workspace, arguments: str, *, cwd: Path, log: Path) -> None:
        self.command = f"ros2 launch {arguments}"
        self.log = log
        self._out = log.open("w")
        self._started = time.monotonic()
        self.process = subprocess.Popen(
            self.command.split(),
            cwd=cwd,
            env=workspace.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        # Every line gets the seconds since the start, so a slow stop shows who was slow.
        self._copier = threading.Thread(target=self._copy, daemon=True)
        self._copier.start()

    def _copy(self) -> None:
        for raw in self.process.stdout:
            line = raw.decode(errors="replace")
            self._out.write(f"{time.monotonic() - self._started:8.2f} {line}")
            self._out.flush()

    def output(self) -> str:
        """What the launch printed so far."""
        return self.log.read_text(errors="replace")

    def interrupt(self, timeout_s: float) -> float:
        """Ctrl-C: SIGINT to the whole process group; return the seconds until the launch exited.

        Raises AssertionError (after killing the group) if it did not exit within ``timeout_s``.
        """
        started = time.monotonic()
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.command} still running {timeout_s} s after SIGINT") from None
        finally:
            self._copier.join(timeout=10)
            self._out.close()
        return time.monotonic() - started

    def left(self) -> list[str]:
        """Command lines of the processes still in the launch's session."""
        import psutil  # a dependency of the ros2-tools wheels, like the rest of this toolchain

        found = []
        for proc in psutil.process_iter(["pid", "cmdline"]):
            try:
                if os.getsid(proc.info["pid"]) == self.process.pid:
                    found.append(" ".join(proc.info["cmdline"] or []))
            except (ProcessLookupError, PermissionError):
                continue
        return found

    def kill(self) -> None:
        """SIGKILL whatever is left of the group (clean-up after a failure)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)


# What a clean Ctrl-C never prints.
UNCLEAN = (
    "Traceback",
    "KeyboardInterrupt",
    "terminate called",
    "escalating to",  # launch's patience ran out: "... escalating to 'SIGTERM'"
    "sending signal 'SIGTERM'",
    "sending signal 'SIGKILL'",
    "process has died",
)


def unclean_lines(output: str) -> list[str]:
    """Lines of a launch's output that show an unclean stop."""
    return [line for line in output.splitlines() if any(mark in line for mark in UNCLEAN)]


def wait_for(
    condition, *, timeout_s: float, what: str, launches: tuple[Launch, ...] = (), poll_s: float = 1.0
):
    """Poll ``condition()`` until it returns a truthy value; fail with the launches' output tails."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        for launch in launches:
            if launch.process.poll() is not None:
                raise AssertionError(f"{launch.command} exited early:\n{launch.output()[-6000:]}")
        time.sleep(poll_s)
    tails = "\n".join(f"--- {launch.command}\n{launch.output()[-6000:]}" for launch in launches)
    raise AssertionError(f"not within {timeout_s} s: {what}\n{tails}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

#!/usr/bin/env bash
# Create or update .venv with everything sop_ros needs, from PyPI alone:
# ROS 2 kilted rclpy and messages as wheels, sop_msgs built as a wheel,
# torch (CPU), transformers, zenoh, rosbags, then sop_ros itself (editable).
#
# Idempotent: each step records a digest of its inputs in .venv and is
# skipped while they are unchanged, so a second run takes about a second.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="${SOP_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3.11}"

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
die() { printf '\033[1;31m[setup] error:\033[0m %s\n' "$*" >&2; exit 1; }
digest() { cat "$@" | sha256sum | cut -c1-16; }
# pip on some machines is configured with extra local indexes that may be
# absent; their warnings are noise, everything else is shown.
pip_quiet() { "$VENV/bin/python" -m pip "$@" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || return "${PIPESTATUS[0]}"; }

command -v "$PYTHON" >/dev/null 2>&1 \
  || die "Python 3.11 is required ('$PYTHON' not found). On Debian: apt-get install python3.11 python3.11-venv python3.11-dev"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || die "Python 3.11 is required: ROS 2 kilted wheels are built for it; '$PYTHON' is $("$PYTHON" --version 2>&1)"
command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 \
  || die "a C/C++ compiler is required to build sop_msgs. On Debian: apt-get install build-essential"
command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 \
  || die "a C++ compiler is required to build sop_msgs. On Debian: apt-get install g++"

if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV with $("$PYTHON" --version)"
  "$PYTHON" -m venv "$VENV" || die "could not create a virtual environment; on Debian: apt-get install python3.11-venv"
fi

step_done() { [ -f "$VENV/.sop-$1" ] && [ "$(cat "$VENV/.sop-$1")" = "$2" ]; }
mark_done() { echo "$2" > "$VENV/.sop-$1"; }

deps=$(digest "$ROOT/requirements.txt")
if step_done deps "$deps"; then
  say "dependencies up to date (requirements.txt unchanged)"
else
  say "installing pinned dependencies from requirements.txt (ROS 2 kilted wheels, torch CPU, transformers, zenoh, rosbags; a few minutes the first time)"
  pip_quiet install --quiet --upgrade pip
  pip_quiet install --quiet -r "$ROOT/requirements.txt"
  mark_done deps "$deps"
fi

msgs=$(digest "$ROOT"/sop_msgs/CMakeLists.txt "$ROOT"/sop_msgs/package.xml "$ROOT"/sop_msgs/pyproject.toml \
  "$ROOT"/sop_msgs/pip/* "$ROOT"/sop_msgs/msg/* "$ROOT"/sop_msgs/srv/* <(echo "$deps"))
if step_done msgs "$msgs"; then
  say "sop_msgs up to date"
else
  say "building sop_msgs as a wheel (rosidl, about a minute)"
  pip_quiet install --quiet --no-build-isolation --force-reinstall --no-deps "$ROOT/sop_msgs"
  mark_done msgs "$msgs"
fi

pkg=$(digest "$ROOT/setup.py" "$ROOT/setup.cfg" <(echo "$msgs"))
if step_done pkg "$pkg"; then
  say "sop_ros (editable) up to date"
else
  say "installing sop_ros in editable mode"
  pip_quiet install --quiet --no-deps --no-build-isolation -e "$ROOT"
  mark_done pkg "$pkg"
fi

# The ROS 2 test toolchain, only where ../shared/ros2-tools is beside this
# checkout: the upstream launch/launch_ros/ros2cli wheels built there, their
# PyPI dependencies and colcon (test/launch/requirements.txt), and pytest 8 in
# a folder of its own for launch_pytest, which does not load under pytest 9.
TOOLS="$ROOT/../shared/ros2-tools"
# launch_pytest 3.7 breaks on pytest 8.4's fixture objects as well: 8.3 is the newest it takes.
PYTEST_FOR_LAUNCH="pytest==8.3.5"
if [ -d "$TOOLS/wheels" ]; then
  tools=$(digest "$ROOT/test/launch/requirements.txt" "$TOOLS"/wheels/*.whl <(echo "$deps $PYTEST_FOR_LAUNCH"))
  if step_done tools "$tools"; then
    say "ROS 2 test toolchain up to date"
  else
    say "installing the ROS 2 test toolchain (launch, ros2cli from $TOOLS; colcon; pytest 8 for launch_pytest)"
    pip_quiet install --quiet -r "$ROOT/test/launch/requirements.txt"
    pip_quiet install --quiet --no-deps "$TOOLS"/wheels/*.whl
    rm -rf "$VENV/pytest8"
    pip_quiet install --quiet --no-deps --target "$VENV/pytest8" "$PYTEST_FOR_LAUNCH"
    mark_done tools "$tools"
  fi
else
  say "no $TOOLS: the colcon / ros2 launch tests will be skipped"
fi

"$VENV/bin/python" - <<'PY' || die "the environment is incomplete (see the import error above); delete .venv and run again"
from sop_msgs.msg import ActionChunk, EpisodeEvent, Intervention, PolicyStatus  # noqa: F401
import rclpy, torch, transformers, zenoh, rosbags  # noqa: E401,F401
PY
say "ready: $VENV (activate with: source $VENV/bin/activate)"

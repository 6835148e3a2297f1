#!/usr/bin/env bash
# Build .venv-lerobot: LeRobot 0.6.1 (Python 3.12, its own torch and transformers) for the π0
# cross-check in test/unit/core/policy/test_lerobot_crosscheck.py. About 5 GB; several minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
target=.venv-lerobot
if [[ -x "$target/bin/python" ]] && "$target/bin/python" -c "import lerobot.policies.pi0" 2>/dev/null; then
    echo "[lerobot-venv] ready: $target"
    exit 0
fi
python=${PYTHON312:-$(command -v python3.12 || true)}
if [[ -z "$python" ]]; then
    python=$(ls -d /root/.pyenv/versions/3.12*/bin/python 2>/dev/null | tail -1 || true)
fi
if [[ -z "$python" ]]; then
    echo "[lerobot-venv] needs Python 3.12 (LeRobot 0.6 requires it): set PYTHON312=/path/to/python3.12" >&2
    exit 1
fi
"$python" -m venv "$target"
"$target/bin/pip" install --quiet "lerobot[pi]==0.6.1"
echo "[lerobot-venv] ready: $target"

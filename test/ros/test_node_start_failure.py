"""A node that cannot start says the one real error and exits 1, without a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def test_learner_on_cuda_without_cuda_says_so_and_exits(tmp_path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here, so device 'cuda' starts")
    device, expected = "cuda", "device 'cuda' requested but CUDA is not available"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sop_ros.nodes.learner_node",
            "--ros-args",
            "-p",
            f"policy.device:={device}",
            "-p",
            "policy.model:=tiny",
            "-p",
            "listen:=tcp/127.0.0.1:0",
        ],
        cwd=tmp_path,
        env=dict(os.environ, RCUTILS_COLORIZED_OUTPUT="0"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert expected in output and "cannot start" in output, output
    assert "Traceback" not in output and "AttributeError" not in output, output

"""sop_ros: built by colcon (ament_python) on a ROS 2 install, by pip in a virtual environment."""

from __future__ import annotations

import sys
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "sop_ros"
HERE = Path(__file__).parent

# Every node is a console script so that `ros2 run sop_ros <node>` finds it. The node list
# lives in the registry alone; importing it needs nothing outside this source tree.
sys.path.insert(0, str(HERE))
from sop_ros.nodes.registry import console_scripts  # noqa: E402


def share_files(folder: str) -> list[tuple[str, list[str]]]:
    """Map every file under ``folder`` to share/sop_ros/<same relative dir>."""
    mapping: dict[str, list[str]] = {}
    for path in sorted((HERE / folder).rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            rel = path.relative_to(HERE)
            mapping.setdefault(f"share/{PACKAGE}/{rel.parent}", []).append(str(rel))
    return sorted(mapping.items())


setup(
    name=PACKAGE,
    version="0.1.0",
    description="Scalable online post-training of VLA policies on a ROS 2 robot fleet",
    license="Apache-2.0",
    python_requires=">=3.11",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    package_data={PACKAGE: ["py.typed", "simlab/assets/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        *share_files("launch"),
        *share_files("config"),
        *share_files("urdf"),
    ],
    # Versions are pinned once, in requirements.txt; these are the names only.
    install_requires=[
        "numpy",
        "torch",
        "transformers",
        "safetensors",
        "tokenizers",
        "eclipse-zenoh",
        "rosbags",
        "mcap",
        "opencv-python-headless",
        "pyyaml",
        "tqdm",
        "matplotlib",
        "tensorboard",
    ],
    extras_require={
        "test": [
            "pytest",
            "pytest-timeout",
            "ruff",
            "mypy",
            "types-PyYAML",
            "types-tqdm",
            "mcap-ros2-support",
            "yourdfpy",
        ],
    },
    zip_safe=False,
    entry_points={
        "console_scripts": [
            "sop = sop_ros.cli:main",
            *console_scripts(),
        ],
    },
)

"""Find files installed under ``share/sop_ros`` (config, launch, urdf).

On a ROS install they come from the ament index; in the development
virtual environment (editable install) from the source tree.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from sop_ros.core.errors import ConfigError

__all__ = ["share_path"]

_SOURCE_ROOT = Path(__file__).resolve().parents[2]


def share_path(relative: str) -> Path:
    """Return the path of ``share/sop_ros/<relative>``; raises ConfigError if it is nowhere."""
    candidates = []
    with contextlib.suppress(ImportError, LookupError, OSError):
        from ament_index_python.packages import get_package_share_directory

        # Not installed through ament (KeyError), or no ament prefix at all (OSError).
        candidates.append(Path(get_package_share_directory("sop_ros")) / relative)
    candidates.append(_SOURCE_ROOT / relative)
    for path in candidates:
        if path.exists():
            return path
    raise ConfigError(f"{relative} is not installed; looked in {', '.join(str(c) for c in candidates)}")

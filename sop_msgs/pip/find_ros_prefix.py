"""Print the ROS prefix that the PyPI ROS wheels installed into.

The wheels put an ament prefix (lib/, share/, include/) at the root of the
environment they are installed in. Under pip's build isolation that is a
temporary overlay, not sys.prefix, so look for the ament index next to every
site-packages directory on sys.path.
"""

from __future__ import annotations

import sys
from pathlib import Path

MARKER = Path("share/ament_index/resource_index/packages/rosidl_default_generators")


def main() -> int:
    """Print the prefix and return 0, or explain on stderr and return 1."""
    candidates = [Path(sys.prefix)]
    for entry in sys.path:
        path = Path(entry)
        if path.name == "site-packages" and path.parent.name.startswith("python"):
            candidates.append(path.parents[2])
    for prefix in candidates:
        if (prefix / MARKER).exists():
            print(prefix.resolve())
            return 0
    print("no ROS prefix with rosidl_default_generators found on sys.path", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())

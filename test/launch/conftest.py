from __future__ import annotations

import pytest
from workspace import Workspace, build_workspace, missing_tools


@pytest.fixture(scope="session")
def workspace() -> Workspace:
    """The colcon workspace of README.md's robot install, built once per session."""
    reason = missing_tools()
    if reason:
        pytest.skip(reason)
    return build_workspace()

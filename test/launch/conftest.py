from __future__ import annotations

from collections.abc import Callable

import pytest
from workspace import Workspace, build_workspace, missing_tools


@pytest.fixture(scope="session")
def workspace() -> Workspace:
    """The colcon workspace of README.md's robot install, built once per session."""
    reason = missing_tools()
    if reason:
        pytest.skip(reason)
    return build_workspace()


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Print a result line on the terminal even while pytest captures output (CI shows it)."""
    capture = request.config.pluginmanager.getplugin("capturemanager")

    def say(line: str) -> None:
        with capture.global_and_fixture_disabled():
            print(f"\n[{request.node.name}] {line}", flush=True)

    return say

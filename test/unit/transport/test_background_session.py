"""BackgroundSession: a robot's Zenoh session that never blocks, over real Zenoh on loopback."""

from __future__ import annotations

import logging
import time

import pytest
from transport_helpers import CONFIG_DIR, free_port

from sop_ros.core.errors import ConfigError
from sop_ros.transport import BackgroundSession, LinkState
from sop_ros.transport.session import open_session


def wait_until(condition, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_connects_when_the_router_appears_and_logs_each_change_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sop_ros.transport.session")
    endpoint = f"tcp/127.0.0.1:{free_port()}"
    opened = []
    started = time.monotonic()
    link = BackgroundSession(
        CONFIG_DIR / "test_client.json5",
        {"connect/endpoints": [endpoint]},
        on_open=opened.append,
        name="probe",
        attempt_timeout_s=0.3,
        first_delay_s=0.05,
        max_delay_s=0.2,
        watch_period_s=0.1,
    )
    router = None
    try:
        assert time.monotonic() - started < 0.5  # the caller never waits for the router
        assert wait_until(lambda: link.status()[3] >= 3)  # several attempts, all failed
        assert link.state == LinkState.CONNECTING and link.session is None and not opened
        router = open_session(CONFIG_DIR / "test_router.json5", {"listen/endpoints": [endpoint]})
        assert wait_until(lambda: link.state == LinkState.CONNECTED)
        assert len(opened) == 1 and link.session is opened[0]
        router.close()
        assert wait_until(lambda: link.state == LinkState.DISCONNECTED)
        router = open_session(CONFIG_DIR / "test_router.json5", {"listen/endpoints": [endpoint]})
        assert wait_until(lambda: link.state == LinkState.CONNECTED)
        assert len(opened) == 1  # Zenoh reconnected the same session
    finally:
        closing = time.monotonic()
        link.close()
        assert time.monotonic() - closing < 3.0
        if router is not None:
            router.close()
    messages = [r.getMessage() for r in caplog.records if r.name == "sop_ros.transport.session"]
    assert sum("unreachable" in m for m in messages) == 1, messages  # once, not once per attempt
    assert sum("connected to the zenoh router" in m for m in messages) == 1, messages
    assert sum("router lost" in m for m in messages) == 1, messages
    assert sum("reached again" in m for m in messages) == 1, messages
    assert link.state == LinkState.CLOSED


def test_close_while_connecting_returns_promptly() -> None:
    link = BackgroundSession(
        CONFIG_DIR / "test_client.json5",
        {"connect/endpoints": [f"tcp/127.0.0.1:{free_port()}"]},
        on_open=lambda session: None,
        attempt_timeout_s=1.0,
    )
    time.sleep(0.2)
    started = time.monotonic()
    link.close()
    assert time.monotonic() - started < 3.5
    assert link.state == LinkState.CLOSED and link.session is None


def test_a_wrong_config_fails_once_with_the_reason(tmp_path) -> None:
    link = BackgroundSession(tmp_path / "missing.json5", on_open=lambda session: None)
    try:
        assert wait_until(lambda: link.state == LinkState.FAILED)
        _, _, error, attempts = link.status()
        assert "does not exist" in error and attempts == 1
    finally:
        link.close()


def test_a_failing_on_open_is_reported_not_swallowed(fleet) -> None:
    def broken(session) -> None:
        raise ConfigError("fleet name 'a/b' is not a key segment")

    link = BackgroundSession(
        CONFIG_DIR / "test_client.json5", {"connect/endpoints": [fleet.endpoint]}, on_open=broken
    )
    try:
        assert wait_until(lambda: link.state == LinkState.FAILED)
        assert "a/b" in link.status()[2] and link.session is None
    finally:
        link.close()


def test_bad_timing_is_refused() -> None:
    with pytest.raises(ConfigError, match="retry timing"):
        BackgroundSession({}, on_open=lambda s: None, attempt_timeout_s=0.0)

"""Key space, headers, rate cap and session opening."""

from __future__ import annotations

import time

import pytest
from transport_helpers import CONFIG_DIR

from sop_ros.core.errors import ConfigError, IntegrityError, TransportError
from sop_ros.transport.session import (
    RateLimiter,
    RemoteError,
    RetryPolicy,
    decode_header,
    encode_header,
    fleet_key,
    open_session,
    query_once,
    reply_error,
)


@pytest.mark.parametrize("bad", ["*", "**", "a/b", "", "r$1", "x?y"])
def test_key_segments_that_would_match_other_robots_are_refused(bad):
    with pytest.raises(ConfigError):
        fleet_key("f", "upload", bad)
    assert fleet_key("f", "upload", "robot-01") == "sop/f/upload/robot-01"


def test_headers_carry_schema_and_kind():
    header = decode_header(encode_header("ack", index=3), "ack")
    assert header["index"] == 3
    with pytest.raises(IntegrityError, match="kind"):
        decode_header(encode_header("ack"), "chunk")
    with pytest.raises(IntegrityError, match="schema"):
        decode_header(b'{"schema": 99, "kind": "ack"}', "ack")
    with pytest.raises(IntegrityError):
        decode_header(b"\x80\x04pickle?", "ack")


def test_rate_limiter_holds_the_cap():
    limiter = RateLimiter(4e6, burst_bytes=100_000)
    start = time.monotonic()
    for _ in range(10):
        limiter.acquire(100_000)  # 1 MB in total at 4 MB/s, the first 100 kB free
    elapsed = time.monotonic() - start
    assert 0.2 <= elapsed < 0.5


def test_retry_backoff_doubles_up_to_the_cap():
    policy = RetryPolicy(backoff_s=0.5, max_backoff_s=3.0)
    assert [policy.delay_s(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    with pytest.raises(ConfigError):
        RetryPolicy(max_attempts=0)


def test_open_session_reports_bad_config_clearly(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        open_session(tmp_path / "missing.json5")
    with pytest.raises(ConfigError, match="invalid zenoh config"):
        open_session(CONFIG_DIR / "test_client.json5", {"mode": "emperor"})


@pytest.mark.timeout(30)
def test_only_the_learners_own_error_header_is_a_verdict(fleet):
    server, client = fleet.client(), fleet.client()

    def answer(query):
        kind = str(query.key_expr).rsplit("/", 1)[-1]
        if kind == "slow":
            time.sleep(1.0)  # past the client's timeout: Zenoh answers for the learner
            return
        if kind == "refused":
            reply_error(query, "bad bag", retry=False)
        else:
            query.reply_err(b"Timeout")  # what Zenoh itself sends, not a header of ours

    queryable = server.declare_queryable("sop/t/q/*", answer)
    try:
        for _ in range(10):  # a fresh client may query before the queryable's route reached it
            try:
                query_once(client, "sop/t/q/refused", timeout_s=5.0)
            except RemoteError:
                break
            except TransportError:
                time.sleep(0.2)
        with pytest.raises(RemoteError) as refused:
            query_once(client, "sop/t/q/refused", timeout_s=5.0)
        assert refused.value.reason.endswith("bad bag") and refused.value.retry is False
        for kind in ("raw", "slow"):
            with pytest.raises(TransportError) as info:
                query_once(client, f"sop/t/q/{kind}", timeout_s=0.2)
            assert not isinstance(info.value, RemoteError), kind  # no answer, so never a refusal for good
    finally:
        queryable.undeclare()

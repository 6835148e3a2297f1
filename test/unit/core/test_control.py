from __future__ import annotations

import numpy as np

from sop_ros.core.control import ChunkBroker, CommandMux, ControlConfig, Source
from sop_ros.core.types import ActionChunk

MS = 1_000_000


def chunk(start: float, stamp_ns: int, horizon: int = 5) -> ActionChunk:
    rows = np.arange(horizon, dtype=np.float32)[:, None] + start
    return ActionChunk(actions=rows, action_names=("x",), control_period_s=0.1, stamp_ns=stamp_ns)


def test_broker_serves_the_row_due_now_and_holds_when_stale_or_exhausted() -> None:
    broker = ChunkBroker(ControlConfig(max_chunk_age_s=1.0))
    assert broker.action_at(0) == (None, "no action chunk yet")
    broker.add(chunk(10.0, stamp_ns=0))
    assert broker.action_at(0)[0][0] == 10.0
    assert broker.action_at(250 * MS)[0][0] == 12.0
    action, why = broker.action_at(600 * MS)
    assert action is None and "exhausted" in why
    action, why = broker.action_at(1500 * MS)
    assert action is None and "1.50 s old" in why


def test_broker_ensembles_overlapping_chunks() -> None:
    broker = ChunkBroker(ControlConfig(ensemble_decay=0.0))
    broker.add(chunk(0.0, stamp_ns=0))
    broker.add(chunk(100.0, stamp_ns=100 * MS))
    assert broker.action_at(100 * MS)[0][0] == 100.0  # newest only when ensembling is off
    blended = ChunkBroker(ControlConfig(ensemble_decay=np.log(2.0)))
    blended.add(chunk(0.0, stamp_ns=0))
    blended.add(chunk(100.0, stamp_ns=100 * MS))
    # weights 1 (newest, row 0 = 100) and 0.5 (older, row 1 = 1)
    assert np.isclose(blended.action_at(100 * MS)[0][0], (100.0 + 0.5 * 1.0) / 1.5)


def test_human_always_wins_and_policy_restarts_from_a_fresh_chunk() -> None:
    mux = CommandMux(ControlConfig(max_command_age_s=0.5))
    mux.on_chunk(chunk(0.0, stamp_ns=0))
    assert mux.tick(0).source is Source.POLICY
    mux.on_intervention(True, np.array([7.0]), stamp_ns=50 * MS)
    out = mux.tick(60 * MS)
    assert out.source is Source.HUMAN and out.action[0] == 7.0
    mux.on_chunk(chunk(20.0, stamp_ns=70 * MS))  # the policy keeps producing chunks
    assert mux.tick(80 * MS).source is Source.HUMAN
    mux.on_intervention(False, None, stamp_ns=100 * MS)
    out = mux.tick(110 * MS)
    assert out.source is Source.HOLD  # pre-hand-back plans are void
    mux.on_chunk(chunk(30.0, stamp_ns=90 * MS))  # computed before the hand-back: ignored
    assert mux.tick(120 * MS).source is Source.HOLD
    mux.on_chunk(chunk(40.0, stamp_ns=130 * MS))
    out = mux.tick(130 * MS)
    assert out.source is Source.POLICY and out.action[0] == 40.0


def test_a_silent_joystick_hands_control_back() -> None:
    mux = CommandMux(ControlConfig(max_command_age_s=0.5))
    mux.on_intervention(True, np.array([1.0]), stamp_ns=0)
    assert mux.tick(400 * MS).source is Source.HUMAN
    assert mux.tick(400 * MS).expired_command_age_s is None
    expired = mux.tick(600 * MS)
    assert expired.source is Source.HOLD
    assert expired.expired_command_age_s == 0.6, "the tick that ends the intervention says why"
    assert not mux.human_active
    assert mux.tick(700 * MS).expired_command_age_s is None, "reported once"


def test_reconfigure_applies_new_age_limits_from_now_on() -> None:
    mux = CommandMux(ControlConfig(max_chunk_age_s=1.0, max_command_age_s=0.5))
    mux.on_chunk(chunk(10.0, stamp_ns=0, horizon=50))
    assert mux.tick(500 * MS).source is Source.POLICY
    mux.reconfigure(ControlConfig(max_chunk_age_s=0.2, max_command_age_s=0.5))
    out = mux.tick(500 * MS)
    assert out.source is Source.HOLD and "limit 0.2 s" in out.reason
    mux.on_intervention(True, np.array([1.0]), 400 * MS)
    assert mux.tick(500 * MS).source is Source.HUMAN
    mux.reconfigure(ControlConfig(max_chunk_age_s=0.2, max_command_age_s=0.05))
    assert mux.tick(500 * MS).expired_command_age_s is not None

"""A second Ctrl-C during clean-up is noticed, not obeyed: the clean-up is what keeps data safe."""

from __future__ import annotations

import os
import signal

from sop_ros.core.interrupts import ignoring_interrupts


def test_signals_inside_the_block_only_call_notice_and_the_handlers_come_back() -> None:
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    noticed = []
    with ignoring_interrupts(lambda: noticed.append(1)):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
    assert len(noticed) == 2
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before

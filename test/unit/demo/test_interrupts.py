"""A second Ctrl-C during the demo's clean-up is reported, not obeyed: the clean-up is what loses nothing."""

from __future__ import annotations

import os
import signal

from sop_ros.demo.run import _deaf_to_interrupts


def test_interrupts_during_clean_up_are_reported_and_the_handler_comes_back(capsys) -> None:
    before = signal.getsignal(signal.SIGINT)
    with _deaf_to_interrupts("still stopping"):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
    assert capsys.readouterr().out.count("still stopping") == 2
    assert signal.getsignal(signal.SIGINT) is before

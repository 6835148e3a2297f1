"""Clean-up that a second Ctrl-C cannot cut short.

A process stopping on Ctrl-C or SIGTERM often gets the signal twice: a
terminal sends Ctrl-C to every process of its foreground group, and a parent
that stops its children (``sop demo`` stopping its robots, a supervisor)
sends its own. A second ``KeyboardInterrupt`` in the middle of the clean-up
leaves bags unclosed and threads running, and the process then hangs at exit.
Inside :func:`ignoring_interrupts` each further signal only calls ``notice``.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

__all__ = ["ignoring_interrupts"]


@contextlib.contextmanager
def ignoring_interrupts(notice: Callable[[], None]) -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM call ``notice`` instead of interrupting.

    Only the main thread receives signals; elsewhere the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signums = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, lambda *_: notice()) for signum in signums}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

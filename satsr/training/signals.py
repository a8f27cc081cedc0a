"""Stop requests of a training run: Ctrl-C (and SIGTERM, through the CLI).

Inside `stop_requests()`, a first SIGINT asks the loop to finish the iteration, save a
checkpoint and stop (`StopRequest.requested`); a second aborts at once (KeyboardInterrupt).
A step still running STOP_GRACE_S seconds after the first counts as the second: a stop request
is never left waiting on a step of minutes. DataLoader workers ignore SIGINT
(`ignore_sigint`): the main process handles it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

#: Seconds a stop request (Ctrl-C, SIGTERM) waits for the running step before it aborts it.
STOP_GRACE_S = 20.0


def ignore_sigint(_: int) -> None:
    """DataLoader worker init: Ctrl-C is handled by the main process only."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class StopRequest:
    """Whether a stop was asked for, and the timer that turns it into an abort."""

    def __init__(self) -> None:
        self.requested = False
        self.timer: threading.Timer | None = None

    def cancel_timer(self) -> None:
        """The step ended in time: no abort."""
        if self.timer is not None:
            self.timer.cancel()


@contextlib.contextmanager
def stop_requests() -> Iterator[StopRequest]:
    """First Ctrl-C (or SIGTERM): finish the iteration, save, stop. Second: abort at once.
    A step still running STOP_GRACE_S seconds after the first counts as the second. Outside
    the main thread nothing is installed; the previous handler is restored on exit."""
    stop = StopRequest()
    old_handler: Any = None
    if threading.current_thread() is threading.main_thread():

        def second() -> None:
            with contextlib.suppress(OSError):
                os.kill(os.getpid(), signal.SIGINT)

        def handler(signum: int, frame: Any) -> None:
            if stop.requested:
                raise KeyboardInterrupt
            stop.requested = True
            stop.timer = threading.Timer(STOP_GRACE_S, second)
            stop.timer.daemon = True
            stop.timer.start()

        old_handler = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        stop.cancel_timer()
        if old_handler is not None:
            signal.signal(signal.SIGINT, old_handler)

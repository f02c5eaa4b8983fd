"""Graceful stop on SIGTERM / SIGINT: finish the current step, checkpoint, then stop."""

from __future__ import annotations

import signal
import sys
import threading


class StopRequest:
    """Context manager that turns SIGTERM (preemption, torchrun shutdown) and a first Ctrl-C
    into a flag checked between steps; a second Ctrl-C interrupts at once.

    Handlers are only installed in the main thread; elsewhere the flag simply stays False.
    """

    SIGNALS = ("SIGTERM", "SIGINT")

    def __init__(self, announce: bool = True):
        self.requested: str | None = None
        self.announce = announce
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.requested == "SIGINT" and name == "SIGINT":
            raise KeyboardInterrupt
        self.requested = self.requested or name
        if self.announce:
            print(
                f"\n{name} received: stopping after this step and writing a checkpoint"
                + (" (Ctrl-C again to abort now)" if name == "SIGINT" else ""),
                file=sys.stderr,
            )

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                signum = getattr(signal, name)
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

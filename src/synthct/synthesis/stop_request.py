"""Stopping a training run cleanly on Ctrl-C or SIGTERM: finish the iteration, checkpoint, stop.

A signal that arrives while the optimiser is stepping would leave half-updated weights if it
raised at once; instead :class:`StopRequest` records it and the training loop checks it after
each whole iteration, writes the checkpoint of the iterations done and raises
:class:`~synthct.synthesis.errors.TrainingInterrupted` (``synthct train --resume`` continues
from there). A second signal stops at once (the default handler's KeyboardInterrupt). Only
single-process runs install the handlers: under ``torchrun`` the ranks would stop at different
iterations and leave the others waiting in a collective, so there the agent's own handling
stands (the last periodic checkpoint is where ``--resume`` starts).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

__all__ = ["StopRequest"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Context manager: ``signal_name`` is set once SIGINT or SIGTERM arrived.

    Parameters
    ----------
    enabled : bool
        Install the handlers (single-process runs, main thread only; otherwise this does
        nothing and ``signal_name`` stays None).
    """

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal_name is not None:  # the second one: stop now
            self._restore()
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name

    def _restore(self) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}

    def __enter__(self) -> StopRequest:
        if self.enabled:
            for number in _SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._restore()

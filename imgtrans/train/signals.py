"""Stopping a run cleanly: the first Ctrl-C (or SIGTERM) asks the trainer to stop after its step."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Iterator


@contextlib.contextmanager
def stop_requests() -> Iterator[threading.Event]:
    """Turn the first Ctrl-C (or SIGTERM) into a request to stop after the current step.

    A second Ctrl-C interrupts at once. Outside the main thread, signals are left alone.
    """
    event = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield event
        return

    owner = os.getpid()

    def handler(signum: int, frame) -> None:
        if os.getpid() != owner:  # a loading process forked before it could ignore Ctrl-C: the trainer speaks
            return
        if event.is_set():
            raise KeyboardInterrupt
        event.set()
        print("\nstopping after this step and saving a checkpoint (Ctrl-C again to abort)", flush=True)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield event
    finally:
        for s, h in previous.items():
            signal.signal(s, h)

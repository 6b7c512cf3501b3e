"""Stopping a run cleanly, however it is stopped: Ctrl-C, ``timeout``, a scheduler, a closed terminal.

``SIGINT`` (Ctrl-C), ``SIGTERM`` (``timeout``, ``kill``, a scheduler's preemption) and ``SIGHUP`` (the
terminal went away) all mean the same: finish the current step, save a checkpoint, exit with
``128 + signal`` (130, 143, 129). They are usually sent to the whole process *group*, the
data-loading processes included; those must not die of them, or the trainer would stop on "DataLoader
worker is killed by signal" and save nothing. So the loading processes ignore the three signals
([ignore_in_worker][imgtrans.train.signals.ignore_in_worker]) and are shut down by the trainer, and
they are forked with the signals blocked ([blocked][imgtrans.train.signals.blocked]), so that none
arrives between the fork and the moment a worker ignores it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopRequest(threading.Event):
    """Set when a stop signal arrived; ``signum`` is the first one (``None`` before any)."""

    signum: int | None = None

    @property
    def exit_status(self) -> int:
        """The shell's convention for a process stopped by a signal: ``128 + signal`` (130 for Ctrl-C)."""
        return 128 + (self.signum or signal.SIGINT)


@contextlib.contextmanager
def stop_requests() -> Iterator[StopRequest]:
    """Turn the first SIGINT, SIGTERM or SIGHUP into a request to stop after the current step.

    A second one interrupts at once (``KeyboardInterrupt``). Outside the main thread, signals are
    left alone.
    """
    event = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield event
        return

    owner = os.getpid()

    def handler(signum: int, frame) -> None:
        if os.getpid() != owner:  # a loading process forked before it could ignore the signal: the trainer speaks
            return
        if event.is_set():
            raise KeyboardInterrupt
        event.signum = signum
        event.set()
        name = signal.Signals(signum).name
        print(f"\n{name}: stopping after this step and saving a checkpoint (Ctrl-C again to abort)", flush=True)

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield event
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def blocked() -> Iterator[None]:
    """Hold the stop signals back while loading processes are forked; they arrive (once) right after."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def ignore_in_worker(worker_id: int | None = None) -> None:
    """In a loading process: ignore the stop signals (the trainer stops it), then unblock them.

    Ignoring a blocked signal discards it, so a signal sent to the group while this process was
    being forked is dropped here, not delivered.
    """
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)

"""Output that may vanish: a closed pipe (``imgtrans train ... | head``, a killed ``tee``) or a terminal that
went away never ends a run.

[dropping_output][imgtrans.train.output.dropping_output] wraps ``sys.stdout`` and ``sys.stderr`` so
that the first write that fails (``EPIPE``, ``EIO``...) turns that stream off: the failure is said
once on the other stream if it still works, the file descriptor is pointed at ``/dev/null`` (so
that nothing fails again, not even the interpreter's last flush), and training goes on. The run's
own records (``log.jsonl``, TensorBoard, checkpoints) are files and keep being written.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator, TextIO


class DroppingStream:
    """A text stream whose writes stop, silently, after the first one that fails."""

    def __init__(self, stream: TextIO, name: str, other: "DroppingStream | None" = None) -> None:
        self._stream, self.name, self.other, self.lost = stream, name, other, False

    def write(self, text: str) -> int:
        if not self.lost:
            try:
                return self._stream.write(text)
            except (OSError, ValueError):  # EPIPE, EIO, ENXIO; ValueError: the stream was closed
                self._lose()
        return len(text)

    def flush(self) -> None:
        if not self.lost:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                self._lose()

    def _lose(self) -> None:
        self.lost = True
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())  # what the stream still holds drains into /dev/null
            os.close(devnull)
        if self.other is not None and not self.other.lost:
            self.other.write(f"imgtrans train: warning: {self.name} was closed (a closed pipe or terminal); training "
                             "goes on without it, and log.jsonl keeps every record\n")  # fmt: skip
            self.other.flush()

    def isatty(self) -> bool:
        return not self.lost and self._stream.isatty()

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


@contextlib.contextmanager
def dropping_output() -> Iterator[None]:
    """Inside the block, ``sys.stdout`` and ``sys.stderr`` drop their output after a failed write.

    (Each is a [DroppingStream][imgtrans.train.output.DroppingStream].)
    """
    out, err = sys.stdout, sys.stderr
    if out is None or err is None:
        yield
        return
    sys.stdout, sys.stderr = DroppingStream(out, "the standard output"), DroppingStream(err, "the standard error")
    sys.stdout.other, sys.stderr.other = sys.stderr, sys.stdout
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = out, err

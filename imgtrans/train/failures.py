"""How a run fails: each failure says what happened, which step was reached and which checkpoint was kept."""

from __future__ import annotations


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss or weight; the last good checkpoint was left intact."""


class DataError(ValueError):
    """The training data failed after the start (a file deleted, truncated or damaged); the steps so far were saved."""

    def __init__(self, problem: str, step: int, kept: str) -> None:
        self.problem, self.step, self.kept = problem, step, kept
        super().__init__(self._message("fit(resume=True)", "skip_bad_images=True"))

    @property
    def cli_message(self) -> str:
        return self._message("--resume", "--skip-bad-images")

    def _message(self, resume: str, skip: str) -> str:
        return (f"{self.problem.rstrip('.')}. Training stopped after step {self.step} and {self.kept}; fix the data, "
                f"then continue with {resume} (or pass over unreadable files with {skip})")


class SampleWarning(UserWarning):
    """A sample grid could not be written; training went on."""

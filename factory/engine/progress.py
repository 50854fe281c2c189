"""Progress of a run, per finished dialogue: a bar on a terminal, plain lines elsewhere."""

from __future__ import annotations

import sys
import time
from typing import Protocol


class Progress(Protocol):
    def update(self, count: int) -> None: ...
    def close(self) -> None: ...


class LogProgress:
    """Progress where nobody watches a terminal (a log file, CI, a job runner): a plain line every
    ``interval`` seconds and one at the end, not a bar redrawn into the log at every dialogue."""

    def __init__(self, total: int, done: int, interval: float = 10.0) -> None:
        self.total, self.n, self.interval = total, done, interval
        self.started = self.last = time.monotonic()
        self._say()

    def update(self, count: int) -> None:
        self.n += count
        if time.monotonic() - self.last >= self.interval:
            self._say()

    def _say(self) -> None:
        self.last = time.monotonic()
        share = self.n / self.total if self.total else 1.0
        print(
            f"dialogues: {self.n}/{self.total} ({share:.0%}) after {self.last - self.started:.0f} s",
            file=sys.stderr,
            flush=True,
        )

    def close(self) -> None:
        self._say()


def progress_for(total: int, done: int, show: bool) -> Progress | None:
    """A bar on a terminal, log lines elsewhere; either advances per finished dialogue."""
    if not show:
        return None
    if not sys.stderr.isatty():
        return LogProgress(total, done)
    from tqdm.auto import tqdm

    bar: Progress = tqdm(total=total, initial=done, desc="dialogues", unit="dlg")
    return bar

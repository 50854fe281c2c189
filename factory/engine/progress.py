"""Progress of a run: dialogues done of planned, accepted so far, calls and tokens a second, the
cost so far and an ETA. A bar on a terminal; elsewhere (a log, CI, a job runner) or with
``--quiet``, a plain line a minute and one at the end, never a bar redrawn into a file.

Dialogues and calls move as each dialogue finishes (on Ray, as the workers report); accepted,
tokens and cost move as each chunk is journaled, since only then are its records on the driver.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from factory.critics.base import passed_so_far
from factory.engine.budget import record_tokens
from factory.llm.pricing import Prices, usd
from factory.records import DialogueRecord

LOG_INTERVAL_SECONDS = 60.0


class RunProgress:
    """The counts and rates both displays show. Rates are this attempt's (a resumed run's
    earlier dialogues count as done and accepted, not as speed)."""

    def __init__(self, total: int, done: int, prices: Prices | None = None) -> None:
        self.total, self.n = total, done
        self.prices = prices if prices is not None and prices.priced else None
        self.started = time.monotonic()
        self.done_now = self.calls = self.tokens = self.accepted = 0
        self.cost = 0.0

    def update(self, dialogues: int, calls: int = 0) -> None:
        self.n += dialogues
        self.done_now += dialogues
        self.calls += calls

    def extend(self, dialogues: int, why: str) -> None:
        """More dialogues planned while running (a top-up round): the total grows."""
        self.total += dialogues

    def journaled(self, records: list[DialogueRecord], earlier: bool = False) -> None:
        self.accepted += sum(passed_so_far(record) for record in records)
        if self.prices is not None:
            self.cost += sum(self.prices.record(record) or 0.0 for record in records)
        if not earlier:
            self.tokens += sum(record_tokens(record) for record in records)

    def figures(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        parts = [
            f"accepted {self.accepted}",
            f"{self.calls / elapsed:.1f} calls/s",
            f"{self.tokens / elapsed:,.0f} tok/s",
        ]
        if self.prices is not None:
            parts.append(usd(self.cost))
        return ", ".join(parts)

    def eta(self) -> str:
        if not self.done_now or self.n >= self.total:
            return "ETA -"
        elapsed = time.monotonic() - self.started
        return f"ETA {_duration(elapsed / self.done_now * (self.total - self.n))}"

    def close(self) -> None:
        pass


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


class LogProgress(RunProgress):
    """A plain line every ``interval`` seconds, and one at the end."""

    def __init__(self, total: int, done: int, prices: Prices | None = None, interval: float = LOG_INTERVAL_SECONDS):
        super().__init__(total, done, prices)
        self.interval = interval
        self.last = self.started
        self._say()

    def update(self, dialogues: int, calls: int = 0) -> None:
        super().update(dialogues, calls)
        if time.monotonic() - self.last >= self.interval:
            self._say()

    def extend(self, dialogues: int, why: str) -> None:
        super().extend(dialogues, why)
        print(f"{dialogues} more dialogue(s): {why}", file=sys.stderr, flush=True)

    def _say(self) -> None:
        self.last = time.monotonic()
        share = self.n / self.total if self.total else 1.0
        print(
            f"dialogues: {self.n}/{self.total} ({share:.0%}) after {_duration(self.last - self.started)}; "
            f"{self.figures()}; {self.eta()}",
            file=sys.stderr,
            flush=True,
        )

    def close(self) -> None:
        self._say()


class BarProgress(RunProgress):
    """tqdm's bar (done/planned, its own ETA), the other figures after it."""

    def __init__(self, total: int, done: int, prices: Prices | None = None) -> None:
        super().__init__(total, done, prices)
        from tqdm.auto import tqdm

        self.bar: Any = tqdm(total=total, initial=done, desc="dialogues", unit="dlg")

    def update(self, dialogues: int, calls: int = 0) -> None:
        super().update(dialogues, calls)
        self.bar.set_postfix_str(self.figures(), refresh=False)
        self.bar.update(dialogues)

    def extend(self, dialogues: int, why: str) -> None:
        super().extend(dialogues, why)
        self.bar.total = self.total
        self.bar.write(f"{dialogues} more dialogue(s): {why}")
        self.bar.refresh()

    def journaled(self, records: list[DialogueRecord], earlier: bool = False) -> None:
        super().journaled(records, earlier)
        self.bar.set_postfix_str(self.figures(), refresh=False)

    def close(self) -> None:
        self.bar.close()


def progress_for(
    total: int, done: int, show: bool, prices: Prices | None = None, quiet: bool = False
) -> RunProgress | None:
    """A bar on a terminal, a line a minute elsewhere or when ``quiet``; none when not ``show``."""
    if not show:
        return None
    if quiet or not sys.stderr.isatty():
        return LogProgress(total, done, prices)
    return BarProgress(total, done, prices)

"""The run-wide decision, once every dialogue is judged: run-wide deduplication (for the dialogues
that passed every other critic), then ``accepted`` = passed by every verdict it has."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from factory.critics.base import passed_so_far
from factory.critics.dedup import dedup_verdict, near_duplicates
from factory.recipes.critics import CriticsConfig
from factory.records import DialogueRecord


def settle_run(
    critics: CriticsConfig, batches: Callable[[], Iterable[list[DialogueRecord]]]
) -> Callable[[DialogueRecord], None]:
    """What gives each record of the run its last verdict and its ``accepted`` flag. The
    duplicates are found first, over the whole run read a batch at a time; the function it returns
    may then be applied to each record as many times as the records are read."""
    duplicates = near_duplicates(batches(), critics.dedup.threshold) if critics.dedup.enabled else None

    def settle(record: DialogueRecord) -> None:
        if duplicates is not None and passed_so_far(record):
            record.verdicts.append(dedup_verdict(duplicates, record.id))
        record.accepted = passed_so_far(record)

    return settle

"""Run-wide near-duplicate removal over the dialogues that passed every expert (their turns'
word 3-grams, by :mod:`factory.near_duplicates`). Of two near-duplicates the one with the later id
is rejected, naming the one it repeats."""

from __future__ import annotations

from collections.abc import Iterable

from datasketch import LeanMinHash

from factory.critics.base import passed_so_far
from factory.near_duplicates import first_repeats, signature
from factory.records import DialogueRecord, Verdict

CRITIC_NAME = "dedup"


def dialogue_text(record: DialogueRecord) -> str:
    return " ".join(turn.text for turn in record.turns)


def near_duplicates(batches: Iterable[list[DialogueRecord]], threshold: float) -> dict[str, tuple[str, float]]:
    """For each contender (a dialogue that passed every expert) that repeats one with a lower id:
    (that id, estimated Jaccard). Reads the run a batch at a time; what it keeps per dialogue is
    its id and its signature (128 integers)."""
    signed: list[tuple[str, LeanMinHash]] = [
        (record.id, signature(dialogue_text(record))) for batch in batches for record in batch if passed_so_far(record)
    ]
    return first_repeats(sorted(signed, key=lambda pair: pair[0]), threshold)


def dedup_verdict(found: dict[str, tuple[str, float]], record_id: str) -> Verdict:
    if record_id in found:
        original, similarity = found[record_id]
        return Verdict(
            critic=CRITIC_NAME,
            passed=False,
            score=round(1 - similarity, 4),
            reason=f"near-duplicate of {original} (estimated Jaccard {similarity:.2f})",
        )
    return Verdict(critic=CRITIC_NAME, passed=True, score=1.0, reason="no near-duplicate in the run")

"""Run-wide near-duplicate removal: MinHash signatures of each dialogue's word 3-grams, LSH bands
to find candidate pairs, and the estimated Jaccard similarity to decide. Of two near-duplicates the
one with the later id is rejected, naming the one it repeats."""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable

import numpy as np

from factory.critics.base import passed_so_far
from factory.records import DialogueRecord, Verdict

CRITIC_NAME = "dedup"
PERMUTATIONS = 128
BANDS = 32  # 4 rows per band: pairs above ~0.5 Jaccard very likely share a band
_PRIME = (1 << 61) - 1
_WORD = re.compile(r"[a-z0-9']+")


def shingles(record: DialogueRecord, size: int = 3) -> set[int]:
    words = _WORD.findall(" ".join(turn.text for turn in record.turns).lower())
    grams = {" ".join(words[i : i + size]) for i in range(max(1, len(words) - size + 1))} if words else set()
    return {int.from_bytes(hashlib.blake2b(g.encode(), digest_size=8).digest(), "little") >> 3 for g in grams}


def signatures(sets: list[set[int]], seed: int = 1) -> np.ndarray:
    generator = np.random.default_rng(seed)
    a = generator.integers(1, _PRIME, PERMUTATIONS, dtype=np.uint64).astype(object)
    b = generator.integers(0, _PRIME, PERMUTATIONS, dtype=np.uint64).astype(object)
    rows = []
    for items in sets:
        if not items:
            rows.append([_PRIME] * PERMUTATIONS)
            continue
        values = np.array(sorted(items), dtype=object)
        rows.append([min((a[k] * values + b[k]) % _PRIME) for k in range(PERMUTATIONS)])
    return np.array(rows, dtype=object)


def near_duplicates(batches: Iterable[list[DialogueRecord]], threshold: float) -> dict[str, tuple[str, float]]:
    """For each contender (a dialogue that passed every expert) that repeats one with a lower id:
    (that id, estimated Jaccard). Reads the run a batch at a time; what it keeps per dialogue is
    its id and its signature (128 integers)."""
    ids: list[str] = []
    blocks: list[np.ndarray] = []
    for batch in batches:
        contenders = [r for r in batch if passed_so_far(r)]
        if contenders:
            ids.extend(r.id for r in contenders)
            blocks.append(signatures([shingles(r) for r in contenders]).astype(np.uint64))
    if not ids:
        return {}
    order = sorted(range(len(ids)), key=ids.__getitem__)
    ordered = [ids[i] for i in order]
    sigs = np.concatenate(blocks)[order]
    rows = PERMUTATIONS // BANDS
    buckets: dict[tuple[int, bytes], list[int]] = defaultdict(list)
    for index, sig in enumerate(sigs):
        for band in range(BANDS):
            buckets[(band, sig[band * rows : (band + 1) * rows].tobytes())].append(index)
    duplicates: dict[str, tuple[str, float]] = {}
    for members in buckets.values():
        for position, later in enumerate(members):
            if ordered[later] in duplicates:
                continue
            for earlier in members[:position]:
                if ordered[earlier] in duplicates:
                    continue
                similarity = float(np.mean(sigs[earlier] == sigs[later]))
                if similarity >= threshold:
                    duplicates[ordered[later]] = (ordered[earlier], similarity)
                    break
    return duplicates


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

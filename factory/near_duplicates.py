"""Near-duplicate texts, found the one way the factory finds them: MinHash signatures of each
text's word 3-grams in datasketch's LSH index, and the estimated Jaccard similarity to decide.
The run's dedup critic and the persona pool both ask it; of two near-duplicates the earlier one
(in the order they are offered) is kept."""

from __future__ import annotations

import re
from collections.abc import Iterable

from datasketch import LeanMinHash, MinHash, MinHashLSH

PERMUTATIONS = 128
SEED = 1
_WORD = re.compile(r"[a-z0-9']+")


def shingles(text: str, size: int = 3) -> set[bytes]:
    """The word ``size``-grams of a text (lower-cased; a text shorter than that is one gram)."""
    words = _WORD.findall(text.lower())
    return {" ".join(words[i : i + size]).encode() for i in range(max(1, len(words) - size + 1))} if words else set()


def signature(text: str) -> LeanMinHash:
    """A text's MinHash: 128 integers, the same for the same text in any process."""
    minhash = MinHash(num_perm=PERMUTATIONS, seed=SEED)
    minhash.update_batch(sorted(shingles(text)))
    return LeanMinHash(minhash)


def first_repeats(keyed: Iterable[tuple[str, LeanMinHash]], threshold: float) -> dict[str, tuple[str, float]]:
    """For each key, in the order given, whose text repeats an earlier kept one (estimated Jaccard
    at least ``threshold``): (the earliest such key, the similarity). A repeat is not kept, so a
    third copy names the first, not the second."""
    index = MinHashLSH(threshold=threshold, num_perm=PERMUTATIONS)
    order: dict[str, int] = {}
    kept: dict[str, LeanMinHash] = {}
    repeats: dict[str, tuple[str, float]] = {}
    for key, minhash in keyed:
        similar = [
            (order[other], other, similarity)
            for other in index.query(minhash)
            if (similarity := minhash.jaccard(kept[other])) >= threshold
        ]
        if similar:
            _, earliest, similarity = min(similar)
            repeats[key] = (earliest, similarity)
            continue
        order[key] = len(order)
        kept[key] = minhash
        index.insert(key, minhash)
    return repeats

"""How far the accepted split is from real persona conversations: distances over sentence
embeddings of the turns, as dialogue-simulation toolkits report them, so two versions or two
models can be compared at a glance.

- Fréchet distance between Gaussians fitted to the two sets of turn embeddings (as FID does for
  images): 0 for the same distribution; it grows with a shift in what is said and how varied it is.
- Precision and recall over k-nearest-neighbour balls (Kynkäänniemi et al., 2019): the share of
  generated turns that fall where real turns are (fidelity), and the share of real turns that
  fall where generated ones are (coverage).

The reference is measured against itself (one half against the other) beside it: that is how close
a sample of real conversations comes to other real conversations.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np

from factory.llm.embeddings import Embedder
from factory.personas.statements import load_spc_rows

REFERENCE_TURNS = 1000  # turns of the reference drawn (each half of it, for its own baseline)
NEIGHBOURS = 3


def reference_turns(path: Path, count: int, seed: int) -> list[str]:
    """A seeded sample of the reference conversations' turns."""
    turns = [text for row in load_spc_rows(path) for _, text in row.conversation]
    return random.Random(seed).sample(turns, min(count, len(turns)))


def frechet_distance(first: np.ndarray, second: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(C1 + C2 - 2 (C1 C2)^1/2), the square root's trace from the eigenvalues
    of C1^1/2 C2 C1^1/2 (symmetric, so numpy's eigh suffices)."""
    mean_gap = float(np.sum((first.mean(axis=0) - second.mean(axis=0)) ** 2))
    c1, c2 = np.cov(first, rowvar=False), np.cov(second, rowvar=False)
    values, vectors = np.linalg.eigh(c1)
    root = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root @ c2 @ root), 0, None)).sum()
    return mean_gap + float(np.trace(c1) + np.trace(c2) - 2 * cross)


def _radii(points: np.ndarray, k: int) -> np.ndarray:
    """Each point's distance to its k-th nearest other point of the same set."""
    distances = np.sqrt(np.clip(2 - 2 * points @ points.T, 0, None))  # unit vectors
    return np.sort(distances, axis=1)[:, min(k, len(points) - 1)]


def coverage(points: np.ndarray, balls: np.ndarray, k: int) -> float:
    """The share of ``points`` inside some ball of radius its k-th neighbour around a ``balls`` point."""
    radii = _radii(balls, k)
    distances = np.sqrt(np.clip(2 - 2 * points @ balls.T, 0, None))
    return float((distances <= radii[None, :]).any(axis=1).mean())


def distances(generated: np.ndarray, real: np.ndarray) -> dict[str, Any]:
    return {
        "turns": len(generated),
        "frechet": round(frechet_distance(generated, real), 4),
        "precision": round(coverage(generated, real, NEIGHBOURS), 4),
        "recall": round(coverage(real, generated, NEIGHBOURS), 4),
    }


def measure_against(accepted_turns: list[str], path: Path, embedder: Embedder, seed: int) -> dict[str, Any]:
    """The accepted turns against the reference, and the reference's halves against each other."""
    reference = reference_turns(path, 2 * REFERENCE_TURNS, seed)
    half = len(reference) // 2
    vectors = embedder.embed([*reference, *accepted_turns])
    first, second, generated = vectors[:half], vectors[half : 2 * half], vectors[2 * half :]
    figures: dict[str, Any] = {"reference": path.name, "embedder": embedder.name}
    if len(generated) < 2 * NEIGHBOURS:
        return {**figures, "accepted": {"turns": len(generated)}}
    # the baseline with as many turns as were accepted: a distance depends on the sample's size
    return {**figures, "accepted": distances(generated, first), "baseline": distances(second[: len(generated)], first)}

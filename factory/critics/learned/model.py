"""A trained critic as a folder: its weights, what it was trained on, and how well it did on data
it did not see. Scoring needs numpy and the sentence embedder it was trained with, nothing else.

``critic.json`` holds the provenance (the training data's hash, the corruptions used, the labels),
the held-out metrics, the calibration and the threshold; ``weights.npz`` holds the arrays.
"""

from __future__ import annotations

import hashlib
import json
import threading
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from factory.critics.learned.features import FEATURES, DialogueVectors, Probes, features
from factory.errors import FactoryError
from factory.llm.embeddings import Embedder
from factory.records import DialogueRecord

FORMAT_VERSION = 1
META_FILE = "critic.json"
WEIGHTS_FILE = "weights.npz"
SHIPPED = Path(__file__).resolve().parents[2] / "data" / "critics" / "learned"
# every conversation's part, fixed by its id: 70% train, 15% calibrate, 15% the held-out test
PART_SHARES = (("train", 0.70), ("calibrate", 0.85), ("test", 1.0))
ARRAYS = (
    "query",
    "key",
    "opener_w",
    "boilerplate_w",
    "reference",
    "reference_owner",
    "mean",
    "scale",
    "detectors_w",
    "detectors_b",
)


class CriticFolderError(FactoryError):
    """A trained critic's folder that is missing, incomplete or not one."""


@dataclass
class Head:
    """One logistic detector per way a conversation goes wrong (a corruption, or the labels), on the
    standardised features: a dialogue is as real as the product of every detector's "real", so a
    dialogue that fails one way fails, whatever the others say. Then Platt calibration."""

    mean: np.ndarray
    scale: np.ndarray
    detectors_w: np.ndarray  # (features, detectors)
    detectors_b: np.ndarray  # (detectors,)
    detectors: tuple[str, ...] = ()
    calibration: tuple[float, float] = (1.0, 0.0)  # probability = sigmoid(a * logit + b)

    def each(self, rows: np.ndarray) -> np.ndarray:
        """Each detector's log-probability that the dialogue is real, (rows, detectors)."""
        z = ((rows - self.mean) / self.scale) @ self.detectors_w + self.detectors_b
        return np.asarray(-np.logaddexp(0, -z))

    def logits(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.each(rows).sum(axis=1))

    def probabilities(self, rows: np.ndarray) -> np.ndarray:
        a, b = self.calibration
        return np.asarray(1 / (1 + np.exp(-np.clip(a * self.logits(rows) + b, -30, 30))))


@dataclass
class LearnedCritic:
    probes: Probes
    head: Head
    threshold: float
    meta: dict[str, Any]
    folder: Path | None = None
    _cache: OrderedDict[str, np.ndarray] = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # persona statements recur across a run's casts: each is embedded once while it is in use
    cache_size: int = field(default=50_000, repr=False)

    @property
    def name(self) -> str:
        return f"learned {self.meta.get('version', '?')}"

    def embed(self, texts: list[str], embedder: Embedder) -> np.ndarray:
        """Vectors of ``texts``, from the cache where it has them (least recently used go first)."""
        with self._lock:
            found = {}
            for text in texts:
                if text in self._cache:
                    self._cache.move_to_end(text)
                    found[text] = self._cache[text]
        missing = list(dict.fromkeys(text for text in texts if text not in found))
        if missing:
            found.update(zip(missing, embedder.embed(missing)))
            with self._lock:
                for text in missing:
                    self._cache[text] = found[text]
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return np.stack([found[text] for text in texts]) if texts else np.zeros((0, 0), dtype=np.float32)

    def vectors(self, profiles: list[list[str]], lines: list[tuple[int, str]], embedder: Embedder) -> DialogueVectors:
        statements = [s for profile in profiles for s in profile]
        texts = [text for _, text in lines]
        vectors = self.embed([*statements, *texts], embedder)
        per_speaker, start = [], 0
        for profile in profiles:
            per_speaker.append(vectors[start : start + len(profile)])
            start += len(profile)
        return DialogueVectors(vectors[start:], [who for who, _ in lines], per_speaker, texts)

    def probability(self, dialogues: list[DialogueVectors]) -> np.ndarray:
        rows = np.stack([features(d, self.probes) for d in dialogues]) if dialogues else np.zeros((0, len(FEATURES)))
        return self.head.probabilities(rows)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {
            "query": self.probes.query, "key": self.probes.key, "opener_w": self.probes.opener[0],
            "boilerplate_w": self.probes.boilerplate[0], "reference": self.probes.reference,
            "reference_owner": self.probes.reference_owner, "mean": self.head.mean, "scale": self.head.scale,
            "detectors_w": self.head.detectors_w, "detectors_b": self.head.detectors_b,
        }  # fmt: skip
        stored: dict[str, Any] = {k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()}
        stored["reference"] = np.asarray(self.probes.reference, dtype=np.float16)  # half the size, same ranks
        stored["reference_owner"] = np.asarray(self.probes.reference_owner, dtype=np.int32)
        np.savez_compressed(folder / WEIGHTS_FILE, **stored)
        meta = {
            **self.meta,
            "format": FORMAT_VERSION,
            "features": list(FEATURES),
            "biases": {
                "opener": self.probes.opener[1],
                "boilerplate": self.probes.boilerplate[1],
            },
            "detectors": list(self.head.detectors),
            "calibration": list(self.head.calibration),
            "threshold": self.threshold,
            "weights_sha256": hashlib.sha256((folder / WEIGHTS_FILE).read_bytes()).hexdigest(),
        }
        (folder / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def part_of(conversation_id: str) -> str:
    """train, calibrate or test: fixed by the id's hash, so a conversation never changes part."""
    fraction = int(hashlib.sha256(conversation_id.encode()).hexdigest()[:8], 16) / 16**8
    return next(part for part, upper in PART_SHARES if fraction < upper)


def load_critic(folder: Path) -> LearnedCritic:
    """The critic in ``folder``; one line naming the folder when it is not a usable one."""
    meta_path, weights_path = folder / META_FILE, folder / WEIGHTS_FILE
    if not folder.is_dir():
        raise CriticFolderError(f"{folder}: no trained critic here (the folder does not exist)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        with np.load(weights_path) as stored:
            arrays = {name: np.asarray(stored[name], dtype=np.float64) for name in ARRAYS}
        biases = meta["biases"]
        a, b = (float(x) for x in meta["calibration"])
        threshold = float(meta["threshold"])
    except FileNotFoundError as exc:
        raise CriticFolderError(f"{folder}: not a trained critic ({Path(str(exc.filename)).name} is missing)") from exc
    except (ValueError, KeyError, TypeError, OSError, zipfile.BadZipFile) as exc:
        raise CriticFolderError(f"{folder}: the trained critic is corrupt ({type(exc).__name__}: {exc})") from exc
    if meta.get("format") != FORMAT_VERSION or meta.get("features") != list(FEATURES):
        raise CriticFolderError(
            f"{folder}: trained for another version of the features (format {meta.get('format')}); "
            "train it again with `persona-factory critics train`"
        )
    probes = Probes(
        arrays["query"], arrays["key"], (arrays["opener_w"], float(biases["opener"])),
        (arrays["boilerplate_w"], float(biases["boilerplate"])), arrays["reference"],
        arrays["reference_owner"].astype(np.int64),
    )  # fmt: skip
    head = Head(
        arrays["mean"], arrays["scale"], arrays["detectors_w"], arrays["detectors_b"],
        tuple(str(name) for name in meta["detectors"]), (a, b),
    )  # fmt: skip
    return LearnedCritic(probes, head, threshold, meta, folder)


def record_parts(record: DialogueRecord) -> tuple[list[list[str]], list[tuple[int, str]]]:
    """A record's speakers' statements and its (speaker index, text) lines."""
    index = {persona.id: n for n, persona in enumerate(record.speakers)}
    profiles = [list(persona.statements) for persona in record.speakers]
    return profiles, [(index.get(turn.speaker, -1), turn.text) for turn in record.turns]

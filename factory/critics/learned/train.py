"""`persona-factory critics train`: fit the learned critic on real conversations and corruptions of them.

Real conversations are the positives; each is corrupted in every way :mod:`corruptions` knows for
the negatives. Labelled dialogues (a reviewer's, a judge's) are added as they were labelled. The
conversations are split by id, before anything is fitted: 70% train the probes and the head, 15%
calibrate the probability and choose the threshold, 15% are the held-out test the metrics come
from. The boilerplate lines are split the same way, so the held-out figure for inserted boilerplate
is on lines the critic never saw.

Training needs torch and scikit-learn (the ``embedded`` extra); scoring needs only numpy.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from factory.critics.learned.corruptions import BOILERPLATE, CORRUPTIONS, Conversation, corrupted
from factory.critics.learned.features import DialogueVectors, Probes, features
from factory.critics.learned.model import PART_SHARES, Head, LearnedCritic, part_of, record_parts
from factory.errors import InputError, PersonaFileError
from factory.llm.embeddings import Embedder
from factory.personas.statements import load_spc_rows
from factory.recipes.critics import CriticsConfig
from factory.recipes.llm import LLMConfig
from factory.records import DialogueRecord

# the lengths the real conversations are shown at, from their start (0: whole), as generated ones are short
WINDOWS = (6, 8, 12, 16, 0)
RESPONSE_DIMENSIONS = 64
REFERENCE_PERSONAS = 256  # the training part's personas a speaker's own is measured against


@dataclass(frozen=True)
class Example:
    talk: Conversation
    good: bool
    kind: str  # "original", a corruption's name, or where a label came from
    weight: float = 1.0


@dataclass
class TrainingData:
    """The conversations to learn from, each under an id the split is drawn on."""

    conversations: dict[str, Conversation]
    labelled: list[tuple[str, Example]] = field(default_factory=list)  # (id, example), by reviewer or judge
    sources: list[dict[str, Any]] = field(default_factory=list)  # what each came from, with its sha256


def file_source(path: Path, conversations: int) -> dict[str, Any]:
    return {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "conversations": conversations}


def spc_training_data(path: Path) -> TrainingData:
    """The conversations of a Synthetic-Persona-Chat file (CSV or JSONL), each under its row's id."""
    conversations = {
        row.id: Conversation([list(p) for p in row.personas], list(row.conversation))
        for row in load_spc_rows(path)
        if len(row.conversation) >= 4
    }
    if len(conversations) < 20:
        raise PersonaFileError("needs at least 20 conversations of four or more turns to train on", path=path)
    return TrainingData(conversations, sources=[file_source(path, len(conversations))])


def frames_of(part: str) -> list[str]:
    """Boilerplate lines by part: every third is kept from training, for the held-out parts."""
    held_out = [frame for index, frame in enumerate(BOILERPLATE) if index % 3 == 0]
    return held_out if part != "train" else [f for f in BOILERPLATE if f not in held_out]


def examples(data: TrainingData, part: str, corruptions: Sequence[str], rng: random.Random) -> list[Example]:
    """The part's originals (at a few lengths) and a corruption of each per kind, with labelled dialogues."""
    ids = sorted(i for i in data.conversations if part_of(i) == part)
    talks = [data.conversations[i] for i in ids]
    made = []
    for talk in talks:
        lengths = sorted({min(n or len(talk.lines), len(talk.lines)) for n in rng.sample(WINDOWS, 2)})
        for length in lengths:
            window = Conversation(talk.profiles, talk.lines[:length])
            bad = corrupted(window, talks, corruptions, rng, frames_of(part))
            made.append(Example(window, True, "original", weight=max(1, len(bad))))
            made += [Example(b, False, name) for name, b in bad]
    made += [example for i, example in data.labelled if part_of(i) == part]
    return made


def _vectors(items: list[Example], embedder: Embedder, critic_like: LearnedCritic) -> list[DialogueVectors]:
    texts = list(
        dict.fromkeys(
            t for e in items for t in [*(s for p in e.talk.profiles for s in p), *(x for _, x in e.talk.lines)]
        )
    )
    critic_like.embed(texts, embedder)  # one pass over every distinct text, cached
    return [critic_like.vectors(e.talk.profiles, e.talk.lines, embedder) for e in items]


def train_response_model(pairs: list[tuple[np.ndarray, np.ndarray]], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Query and key projections such that a turn's query meets the next turn's key before the
    other turns' keys of its batch (in-batch contrastive, as response-selection models train)."""
    import torch

    torch.manual_seed(seed)
    first = torch.tensor(np.stack([a for a, _ in pairs]), dtype=torch.float32)
    second = torch.tensor(np.stack([b for _, b in pairs]), dtype=torch.float32)
    dimensions = first.shape[1]
    query = torch.nn.Linear(dimensions, RESPONSE_DIMENSIONS, bias=False)
    key = torch.nn.Linear(dimensions, RESPONSE_DIMENSIONS, bias=False)
    optimiser = torch.optim.AdamW([*query.parameters(), *key.parameters()], lr=3e-3, weight_decay=1e-2)
    generator = torch.Generator().manual_seed(seed)
    for _epoch in range(6):
        order = torch.randperm(len(pairs), generator=generator)
        for start in range(0, len(order) - 31, 256):
            batch = order[start : start + 256]
            q = torch.nn.functional.normalize(query(first[batch]), dim=1)
            k = torch.nn.functional.normalize(key(second[batch]), dim=1)
            loss = torch.nn.functional.cross_entropy(q @ k.T / 0.05, torch.arange(len(batch)))
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]  # unannotated upstream
            optimiser.step()
    return query.weight.detach().numpy().T.copy(), key.weight.detach().numpy().T.copy()


def _probe(positives: np.ndarray, negatives: np.ndarray, seed: int) -> tuple[np.ndarray, float]:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=0.5, class_weight="balanced", max_iter=2000, random_state=seed)
    model.fit(np.concatenate([positives, negatives]), [1] * len(positives) + [0] * len(negatives))
    return model.coef_[0].copy(), float(model.intercept_[0])


def train_probes(data: TrainingData, embedder: Embedder, cache: LearnedCritic, seed: int) -> Probes:
    talks = [t for i, t in data.conversations.items() if part_of(i) == "train"]
    pairs, openers, later = [], [], []
    for talk in talks:
        vectors = cache.embed([text for _, text in talk.lines], embedder)
        pairs += [(vectors[i], vectors[i + 1]) for i in range(len(vectors) - 1)]
        openers.append(vectors[0])
        later += list(vectors[2:])
    rng = random.Random(seed)
    later_sample = np.stack(rng.sample(later, min(len(later), 4 * len(openers))))
    frames = frames_of("train")
    # a frame alone, and before or after a real line, as the corruption and small models put it
    lines = [text for talk in talks for _, text in talk.lines]
    framed = frames + [
        rng.choice((f"{rng.choice(frames)} {text}", f"{text} {rng.choice(frames)}")) for text in rng.sample(lines, 300)
    ]
    query, key = train_response_model(pairs, seed)
    profiles = list({tuple(p): None for talk in talks for p in talk.profiles if p})
    chosen = rng.sample(profiles, min(REFERENCE_PERSONAS, len(profiles)))
    reference = cache.embed([s for profile in chosen for s in profile], embedder)
    owner = np.array([n for n, profile in enumerate(chosen) for _ in profile])
    return Probes(
        query, key, _probe(np.stack(openers), later_sample, seed),
        _probe(cache.embed(framed, embedder), later_sample, seed), reference, owner,
    )  # fmt: skip


def fit_head(rows: np.ndarray, items: list[Example], seed: int) -> Head:
    """A logistic detector per kind of bad dialogue, each fitted on the originals (and dialogues
    labelled good) against that kind alone, the two sides weighted equal."""
    from sklearn.linear_model import LogisticRegression

    mean, scale = rows.mean(axis=0), rows.std(axis=0)
    scale = np.where(scale == 0, 1, scale)
    standard = (rows - mean) / scale
    good = np.array([e.good for e in items])
    kinds = sorted({e.kind for e in items if not e.good})
    weights, biases = [], []
    for kind in kinds:
        chosen = good | np.array([e.kind == kind for e in items])
        model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000, random_state=seed)
        model.fit(standard[chosen], good[chosen].astype(int))
        weights.append(model.coef_[0])
        biases.append(float(model.intercept_[0]))
    return Head(mean, scale, np.stack(weights, axis=1), np.array(biases), tuple(kinds))


def calibrate(logits: np.ndarray, good: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """Platt's scaling on data the head did not see, the classes weighted equal."""
    from sklearn.linear_model import LogisticRegression

    balance = np.where(good, weights.sum() / (2 * weights[good].sum()), weights.sum() / (2 * weights[~good].sum()))
    model = LogisticRegression(C=100.0, max_iter=1000).fit(
        logits[:, None], good.astype(int), sample_weight=balance * weights
    )
    return float(model.coef_[0][0]), float(model.intercept_[0])


ORIGINALS_PASSED = 0.9  # the threshold passes nine in ten real conversations of the calibration part


def best_threshold(probabilities: np.ndarray, good: np.ndarray) -> float:
    """The highest probability that still passes :data:`ORIGINALS_PASSED` of the real conversations
    of the calibration part: a filter that rejects people's own talk rejects good dialogue too."""
    originals = np.sort(probabilities[good])
    if not len(originals):
        return 0.5
    return float(np.floor(originals[int((1 - ORIGINALS_PASSED) * len(originals))] * 1000) / 1000)


Progress = Callable[[str], None]


def train_critic(
    data: TrainingData,
    embedder: Embedder,
    *,
    corruptions: Sequence[str] = tuple(CORRUPTIONS),
    seed: int = 0,
    say: Progress = lambda _line: None,
) -> LearnedCritic:
    """A calibrated critic with its held-out metrics (:func:`held_out_metrics`) in its meta."""
    rng = random.Random(seed)
    placeholder = Probes(
        np.zeros((1, 1)), np.zeros((1, 1)), (np.zeros(1), 0.0), (np.zeros(1), 0.0), np.zeros((0, 1)), np.zeros(0)
    )
    cache = LearnedCritic(placeholder, Head(*(np.zeros(1),) * 4), 0.5, {}, cache_size=10**7)
    parts = {part: examples(data, part, corruptions, rng) for part, _ in PART_SHARES}
    say(", ".join(f"{part}: {len(items)} dialogues" for part, items in parts.items()))
    say("embedding the turns and personas")
    vectors = {part: _vectors(items, embedder, cache) for part, items in parts.items()}
    say("training the response model and the probes")
    probes = train_probes(data, embedder, cache, seed)
    rows = {part: np.stack([features(v, probes) for v in vectors[part]]) for part in parts}
    good = {part: np.array([e.good for e in parts[part]]) for part in parts}
    weights = {part: np.array([e.weight for e in parts[part]], dtype=float) for part in parts}
    say("fitting the head")
    head = fit_head(rows["train"], parts["train"], seed)
    head.calibration = calibrate(head.logits(rows["calibrate"]), good["calibrate"], weights["calibrate"])
    threshold = best_threshold(head.probabilities(rows["calibrate"]), good["calibrate"])
    meta = {
        "version": datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S"),
        "embedder": embedder.name,
        "training": {
            "sources": data.sources,
            "corruptions": list(corruptions),
            "seed": seed,
            "dialogues": {part: len(items) for part, items in parts.items()},
            "conversations": {p: sum(part_of(i) == p for i in data.conversations) for p, _ in PART_SHARES},
            "labelled": len(data.labelled),
            "threshold_rule": f"the highest that passes {ORIGINALS_PASSED:.0%} of the calibration part's originals",
        },
        "held_out": held_out_metrics(head.probabilities(rows["test"]), parts["test"], threshold, weights["test"]),
    }
    return LearnedCritic(probes, head, round(threshold, 4), meta)


def held_out_metrics(
    probabilities: np.ndarray, items: list[Example], threshold: float, weights: np.ndarray
) -> dict[str, Any]:
    """AUROC of originals against each corruption, pass rates at the threshold, and the calibration
    error with the classes weighted as in training (equal)."""
    from factory.critics.evaluate import auroc

    good = np.array([e.good for e in items])
    originals = [float(p) for p, e in zip(probabilities, items) if e.kind == "original"]
    kinds = sorted({e.kind for e in items if not e.good})
    per_kind = {}
    for kind in kinds:
        bad = [float(p) for p, e in zip(probabilities, items) if e.kind == kind]
        per_kind[kind] = {
            "dialogues": len(bad),
            "auroc": round(auroc(originals + bad, [True] * len(originals) + [False] * len(bad)) or 0.0, 4),
            "rejected": round(float(np.mean([p < threshold for p in bad])), 4),
        }
    bins = np.minimum((probabilities * 10).astype(int), 9)
    calibration_error = 0.0
    for b in set(bins.tolist()):
        inside = bins == b
        w = weights[inside]
        gap = abs(np.average(probabilities[inside], weights=w) - np.average(good[inside], weights=w))
        calibration_error += gap * w.sum() / weights.sum()
    return {
        "dialogues": len(items),
        "auroc": round(auroc(probabilities.tolist(), good.tolist()) or 0.0, 4),
        "originals_passed": round(float(np.mean([p >= threshold for p in originals])), 4) if originals else None,
        "expected_calibration_error": round(float(calibration_error), 4),
        "corruptions": per_kind,
    }


def _conversation(record: DialogueRecord) -> Conversation:
    return Conversation(*record_parts(record))


def reviewed_data(where: str, version: str | None) -> TrainingData:
    """A version's labelled sample as training dialogues: in character by the reviewers' majority
    (a tie is not), each labelled dialogue under its own id."""
    from factory.dataset.review_section import read_state
    from factory.review import card_of, opened, sample_dialogues

    target, version = opened(where, version)
    truth = read_state(card_of(target, version)).in_character()
    if not truth:
        raise InputError(f"{version} has no labels yet; label its sampled dialogues first (`review label`)")
    labelled = [
        (row["id"], Example(_conversation(DialogueRecord.model_validate(row)), truth[row["id"]], "reviewed"))
        for row in sample_dialogues(target, version)
        if row["id"] in truth
    ]
    return TrainingData({}, labelled, [{"reviewed": f"{where} {version}", "labels": len(labelled)}])


def combined(first: TrainingData, *more: TrainingData) -> TrainingData:
    data = TrainingData(dict(first.conversations), list(first.labelled), list(first.sources))
    for other in more:
        data.conversations.update(other.conversations)
        data.labelled += other.labelled
        data.sources += other.sources
    return data


def judged_data(
    where: str, version: str | None, count: int, critics: CriticsConfig, llm: LLMConfig, seed: int
) -> TrainingData:
    """``count`` dialogues of a version, drawn with ``seed``, labelled once by the faithfulness
    judge (a verdict it could not give is left out): what the learned critic distils from it."""
    from contextlib import ExitStack

    from factory.critics.eval_data import Labelled
    from factory.critics.evaluate import evaluate
    from factory.critics.jury import judge_panels, needs_generator
    from factory.llm.endpoint import open_endpoint
    from factory.llm.keys import ApiKeys
    from factory.review import opened, version_rows

    target, version = opened(where, version)
    # a dialogue whose generation failed has no turns to judge; the draw is over ids in order, so
    # it does not follow the order the run happened to finish its dialogues in
    records = sorted(
        (record for record in map(DialogueRecord.model_validate, version_rows(target, version)) if record.turns),
        key=lambda record: record.id,
    )
    if not records:
        raise InputError(f"{version} has no dialogues with turns to judge", field="--dialogues")
    chosen = random.Random(seed).sample(records, min(count, len(records)))
    keys = ApiKeys()
    with ExitStack() as stack:
        spec = stack.enter_context(open_endpoint(llm)) if needs_generator(critics, ["faithfulness"]) else None
        panels = judge_panels(critics, llm, spec, keys, names=["faithfulness"])
        evaluation = evaluate(
            spec, keys, ["faithfulness"], [Labelled(r) for r in chosen], [], critics=critics, panels=panels
        )
    labelled = [
        (record.id, Example(_conversation(record), bool(item["passed"]), "judged"))
        for record, item in zip(chosen, evaluation.items)
        if item["answered"]
    ]
    judges = [juror.spec.model for panel in panels.values() for juror in panel.jurors] or [spec.model if spec else "?"]
    return TrainingData({}, labelled, [{"judged": f"{where} {version}", "by": judges, "labels": len(labelled)}])

"""`persona-factory critics eval`: how far to trust the critics, measured on labelled dialogues.

Data:
- Synthetic-Persona-Chat conversations (CSV or JSONL in the SPC format): each original dialogue is
  labelled faithful, and the same dialogue with User 1's persona swapped for another row's is
  labelled unfaithful; the originals are also labelled well formed (the heuristic gate must pass
  them: they are what the generator is shown); for quality, each original is paired with a copy
  whose turns are shuffled, and the original should win.
- JSONL of rated dialogues: ``{"personas": [[...], [...]], "turns": [{"speaker": 1, "text": ...}],
  "faithful": true|false, "toxic": true|false, "well_formed": true|false, "rating": 1-5}`` (every
  label optional); for quality, pairs of dialogues with different ratings (the higher should win).

Each expert is scored against the label of what it exists to judge (:data:`EXPERT_LABELS`):
accuracy (it passes what the label says should pass and fails the rest), AUROC of its score (or of
its pass/fail when it gives none) with "should pass" as the positive class, and Spearman
correlation with the ratings. Only answered items are scored: a judge call that failed or a reply
that could not be used is counted apart, and an expert most of whose items went unanswered fails
the evaluation (a broken endpoint must not read as a chance-level critic). What the data cannot
measure (no label, no rating, no MBTI or Big Five personas for portrayal) is refused.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factory.critics.base import JudgeContext
from factory.critics.quality import POLICIES, compare
from factory.errors import EndpointError, InputError, PersonaFileError
from factory.jsonl import read_jsonl
from factory.llm.spec import EndpointSpec
from factory.llm.tasks import JsonTaskRunner
from factory.personas.statements import load_spc_rows
from factory.recipes.critics import CriticsConfig, critic_names
from factory.recipes.generation import GenerationConfig
from factory.records import DialogueRecord, GenerationMeta, PersonaProfile, Turn, Verdict

PER_DIALOGUE = critic_names("dialogue")
DEFAULT_EXPERTS = ("faithfulness", "apc", "quality")
LLM_FREE = {"heuristic"}

# The label each expert is scored against, and whether the expert should pass when it is true.
EXPERT_LABELS: dict[str, tuple[str, bool]] = {
    "heuristic": ("well_formed", True),
    "faithfulness": ("faithful", True),
    "apc": ("faithful", True),
    "attribution": ("faithful", True),  # a persona swapped out makes its speaker's turns unattributable
    "toxicity": ("toxic", False),
    "portrayal": ("portrayed", True),
}
LABELS = ("faithful", "toxic", "well_formed")


@dataclass
class Labelled:
    record: DialogueRecord
    labels: dict[str, bool] = field(default_factory=dict)
    rating: float | None = None

    def should_pass(self, expert: str) -> bool | None:
        label, when_true = EXPERT_LABELS[expert]
        value = self.labels.get(label)
        return None if value is None else value == when_true


def _record(id_: str, profiles: list[list[str]], lines: list[tuple[int, str]], seed: int) -> DialogueRecord:
    speakers = [
        PersonaProfile(id=f"{id_}-u{n + 1}", kind="statements", statements=list(statements))
        for n, statements in enumerate(profiles)
    ]
    return DialogueRecord(
        id=id_,
        recipe="critics-eval",
        speakers=speakers,
        turns=[Turn(speaker=speakers[speaker].id, text=text) for speaker, text in lines],
        generation=GenerationMeta(model="", prompt_hash="", seed=seed),
    )


def spc_eval_set(
    path: Path, count: int, rng: random.Random
) -> tuple[list[Labelled], list[tuple[DialogueRecord, DialogueRecord]]]:
    """Originals (faithful), persona-swapped copies (unfaithful), and (original, shuffled) pairs."""
    rows = [row for row in load_spc_rows(path) if row.conversation and len(row.conversation) >= 4]
    if len(rows) < 2:
        raise PersonaFileError("needs at least two conversations with four or more turns", path=path)
    chosen = rng.sample(rows, min(count, len(rows)))
    labelled: list[Labelled] = []
    pairs = []
    for row in chosen:
        lines = list(row.conversation)
        profiles = [list(row.personas[0]), list(row.personas[1])]
        original = _record(f"{row.id}-original", profiles, lines, row.row)
        donor = rng.choice([other for other in rows if other.row != row.row])
        swapped = _record(f"{row.id}-swapped", [list(donor.personas[0]), profiles[1]], lines, row.row)
        labelled += [
            Labelled(original, {"faithful": True, "well_formed": True}),
            Labelled(swapped, {"faithful": False}),
        ]
        shuffled_lines = list(lines)
        while shuffled_lines == lines:
            rng.shuffle(shuffled_lines)
        pairs.append((original, _record(f"{row.id}-shuffled", profiles, shuffled_lines, row.row)))
    return labelled, pairs


def _rated(item: Any, path: Path, number: int) -> Labelled:
    personas = item.get("personas") if isinstance(item, dict) else None
    if (
        not isinstance(personas, list)
        or len(personas) < 2
        or not all(isinstance(p, list) and p and all(isinstance(s, str) for s in p) for p in personas)
    ):
        raise PersonaFileError(
            "expected two or more lists of persona statements", path=path, row=number, field="personas"
        )
    lines = []
    for index, turn in enumerate(item.get("turns") or []):
        speaker, text = (turn.get("speaker"), turn.get("text")) if isinstance(turn, dict) else (None, None)
        if not isinstance(speaker, int) or not 1 <= speaker <= len(personas) or not isinstance(text, str):
            raise PersonaFileError(
                f"a turn is {{speaker: 1..{len(personas)}, text: string}}",
                path=path,
                row=number,
                field=f"turns[{index}]",
            )
        lines.append((speaker - 1, text))
    if not lines:
        raise PersonaFileError("no turns", path=path, row=number, field="turns")
    labels = {}
    for label in LABELS:
        value = item.get(label)
        if value is not None and not isinstance(value, bool):
            raise PersonaFileError("must be true or false", path=path, row=number, field=label)
        if value is not None:
            labels[label] = value
    rating = item.get("rating")
    if rating is not None and (isinstance(rating, bool) or not isinstance(rating, (int, float))):
        raise PersonaFileError("must be a number", path=path, row=number, field="rating")
    return Labelled(_record(f"{path.stem}-r{number}", personas, lines, number), labels, rating)


def rated_pairs(
    labelled: list[Labelled], count: int, rng: random.Random
) -> list[tuple[DialogueRecord, DialogueRecord]]:
    """(higher rated, lower rated) pairs of dialogues, for the pairwise quality expert."""
    rated = [item for item in labelled if item.rating is not None]
    pairs = [(a.record, b.record) for a in rated for b in rated if (a.rating or 0) > (b.rating or 0)]
    return rng.sample(pairs, min(count, len(pairs)))


def load_rated_jsonl(path: Path) -> list[Labelled]:
    if not path.is_file():
        raise PersonaFileError("file not found", path=path)
    labelled = [_rated(item, path, number) for number, item in read_jsonl(path)]
    if not labelled:
        raise PersonaFileError("no dialogues", path=path)
    return labelled


def auroc(scores: list[float], positives: list[bool]) -> float | None:
    """Probability that a random positive scores above a random negative (ties count half)."""
    pos = [s for s, p in zip(scores, positives) if p]
    neg = [s for s, p in zip(scores, positives) if not p]
    if not pos or not neg:
        return None
    wins = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            ranks[order[position]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def spearman(xs: list[float], ys: list[float]) -> float | None:
    if len(xs) < 3:
        return None
    rx, ry = _ranks(xs), _ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    var = (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5
    return cov / var if var else None


def verdict_score(verdict: Verdict) -> float:
    return verdict.score if verdict.score is not None else (1.0 if verdict.passed else 0.0)


def measurable(
    expert: str, labelled: list[Labelled], pairs: list[tuple[DialogueRecord, DialogueRecord]], where: str
) -> None:
    """Refuse an expert the data cannot measure, rather than print a figure that means nothing."""
    if expert == "quality":
        if not pairs:
            raise InputError(
                f"quality cannot be measured on {where}: it needs pairs of dialogues of different quality "
                "(SPC conversations, or rated dialogues with different ratings)",
                field="--experts",
            )
        return
    if expert == "portrayal" and not any(p.mbti or p.big_five for item in labelled for p in item.record.speakers):
        raise InputError(
            f"portrayal cannot be measured on {where}: its personas have no MBTI type or Big Five levels to infer back",
            field="--experts",
        )
    label = EXPERT_LABELS[expert][0]
    if not any(item.should_pass(expert) is not None or item.rating is not None for item in labelled):
        raise InputError(
            f"{expert} cannot be measured on {where}: no item has a {label!r} label or a rating", field="--experts"
        )


def measure_of(expert: str, labelled: list[Labelled], spc: bool) -> str:
    label = EXPERT_LABELS[expert][0]
    labelled_items = [item for item in labelled if item.should_pass(expert) is not None]
    if not labelled_items:
        return "human ratings"
    if spc:
        return {"faithful": "faithful vs persona-swapped", "well_formed": "pass rate on SPC originals"}.get(
            label, label
        )
    return f"{label!r} labels" + (" and ratings" if any(item.rating is not None for item in labelled) else "")


def expert_figures(
    name: str, labelled: list[Labelled], verdicts: list[Verdict], *, spc: bool = False
) -> dict[str, Any]:
    answered = [(item, verdict) for item, verdict in zip(labelled, verdicts) if verdict.answered]
    known = [(item.should_pass(name), verdict) for item, verdict in answered if item.should_pass(name) is not None]
    rated = [(item.rating, verdict) for item, verdict in answered if item.rating is not None]
    unanswered = [verdict for verdict in verdicts if not verdict.answered]
    return {
        "expert": name,
        "examples": len(labelled),
        "answered": len(answered),
        "measure": measure_of(name, labelled, spc),
        "accuracy": sum(v.passed == truth for truth, v in known) / len(known) if known else None,
        "auroc": auroc([verdict_score(v) for _, v in known], [bool(truth) for truth, _ in known]),
        "spearman": spearman([verdict_score(v) for _, v in rated], [float(r or 0) for r, _ in rated]),
        "unanswered": len(unanswered),
        "first_unanswered": unanswered[0].reason if unanswered else None,
        "tokens": sum(v.tokens for v in verdicts),
    }


class MostlyUnanswered(EndpointError):
    """The judge answered too few items for a figure to mean anything."""


def check_answered(figures: list[dict[str, Any]]) -> None:
    for figure in figures:
        asked = figure["answered"] + figure["unanswered"]
        if asked and figure["unanswered"] * 2 > asked:
            raise MostlyUnanswered(
                f"{figure['expert']}: the judge left {figure['unanswered']} of {asked} items unanswered, so nothing "
                f"was measured (the first: {figure['first_unanswered'] or 'no answer'})"
            )


def per_item_rows(name: str, labelled: list[Labelled], verdicts: list[Verdict]) -> list[dict[str, Any]]:
    return [
        {
            "expert": name,
            "id": item.record.id,
            "labels": item.labels,
            "rating": item.rating,
            "should_pass": item.should_pass(name),
            "passed": verdict.passed,
            "score": verdict.score,
            "answered": verdict.answered,
            "reason": verdict.reason,
        }
        for item, verdict in zip(labelled, verdicts)
    ]


@dataclass
class Evaluation:
    figures: list[dict[str, Any]]
    items: list[dict[str, Any]]


def evaluate(
    spec: EndpointSpec | None,
    api_key: str | None,
    experts: list[str],
    labelled: list[Labelled],
    pairs: list[tuple[DialogueRecord, DialogueRecord]],
    *,
    critics: CriticsConfig | None = None,
    show_progress: bool = True,
    spc: bool = False,
) -> Evaluation:
    """Every expert's figures (and each item's verdict); ``spec`` may be None when no expert needs a model."""
    from factory.critics.registry import JUDGES

    critics = critics or CriticsConfig()
    figures, items = [], []
    with JsonTaskRunner(spec, api_key) as runner:
        context = JudgeContext(runner.client, GenerationConfig(min_turns=2, max_turns=1000))
        for name in experts:
            if name == "quality":
                outcomes = runner.gather(
                    (compare((0, a), (1, b), critics.quality, context, seed) for seed, (a, b) in enumerate(pairs)),
                    desc=name,
                    show_progress=show_progress,
                )
                answered = [winners for winners, _ in outcomes if winners is not None]
                right = sum(sum(w == 0 for w in winners.values()) > len(POLICIES) / 2 for winners in answered)
                figures.append(
                    {
                        "expert": "quality",
                        "examples": len(pairs),
                        "answered": len(answered),
                        "measure": "original vs turn-shuffled pairs" if spc else "higher- vs lower-rated pairs",
                        "accuracy": right / len(answered) if answered else None,
                        "auroc": None,
                        "spearman": None,
                        "unanswered": len(pairs) - len(answered),
                        "first_unanswered": None,
                        "tokens": sum(tokens for _, tokens in outcomes),
                    }
                )
                items += [
                    {
                        "expert": "quality",
                        "id": f"{a.id} vs {b.id}",
                        "winners": winners,
                        "answered": winners is not None,
                    }
                    for (a, b), (winners, _) in zip(pairs, outcomes)
                ]
                continue
            judge, config = JUDGES[name], getattr(critics, name)
            verdicts = runner.gather(
                (judge(item.record, config, context) for item in labelled), desc=name, show_progress=show_progress
            )
            figures.append(expert_figures(name, labelled, verdicts, spc=spc))
            items += per_item_rows(name, labelled, verdicts)
    return Evaluation(figures, items)

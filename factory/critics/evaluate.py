"""`persona-factory critics eval`: how far to trust the critics, measured on labelled dialogues.

Data:
- Synthetic-Persona-Chat conversations (CSV or JSONL in the SPC format): each original dialogue is
  labelled faithful, and the same dialogue with User 1's persona swapped for another row's is
  labelled unfaithful; for quality, each original is paired with a copy whose turns are shuffled,
  and the original should win.
- JSONL of rated dialogues: ``{"personas": [[...], [...]], "turns": [{"speaker": 1, "text": ...}],
  "faithful": true|false, "rating": 1-5}`` (``faithful`` and ``rating`` each optional).

Figures: accuracy (the expert passes faithful and fails unfaithful dialogues), AUROC of the
expert's score (or of its pass/fail when it gives none) with faithful as the positive class,
Spearman correlation with human ratings where there are any, and for quality the pairwise accuracy
(the share of pairs whose original takes the majority of the policy votes).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factory.config import CriticsConfig, GenerationConfig
from factory.critics.base import JudgeContext
from factory.critics.quality import POLICIES, compare
from factory.errors import PersonaFileError
from factory.jsonl import read_jsonl
from factory.llm.client import EndpointSpec
from factory.llm.tasks import JsonTaskRunner
from factory.personas.statements import load_spc_rows
from factory.records import DialogueRecord, GenerationMeta, PersonaProfile, Turn, Verdict

PER_DIALOGUE = ("heuristic", "faithfulness", "apc", "toxicity", "portrayal", "attribution")
DEFAULT_EXPERTS = ("faithfulness", "apc", "quality")


@dataclass
class Labelled:
    record: DialogueRecord
    faithful: bool | None = None
    rating: float | None = None


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


def spc_eval_set(path: Path, count: int, rng: random.Random) -> tuple[list[Labelled], list[tuple[DialogueRecord, DialogueRecord]]]:
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
        labelled += [Labelled(original, faithful=True), Labelled(swapped, faithful=False)]
        shuffled_lines = list(lines)
        while shuffled_lines == lines:
            rng.shuffle(shuffled_lines)
        pairs.append((original, _record(f"{row.id}-shuffled", profiles, shuffled_lines, row.row)))
    return labelled, pairs


def _rated(item: Any, path: Path, number: int) -> Labelled:
    personas = item.get("personas") if isinstance(item, dict) else None
    if not isinstance(personas, list) or len(personas) < 2 or not all(
        isinstance(p, list) and p and all(isinstance(s, str) for s in p) for p in personas
    ):
        raise PersonaFileError("expected two or more lists of persona statements", path=path, row=number, field="personas")
    lines = []
    for index, turn in enumerate(item.get("turns") or []):
        speaker, text = (turn.get("speaker"), turn.get("text")) if isinstance(turn, dict) else (None, None)
        if not isinstance(speaker, int) or not 1 <= speaker <= len(personas) or not isinstance(text, str):
            raise PersonaFileError(
                f"a turn is {{speaker: 1..{len(personas)}, text: string}}", path=path, row=number, field=f"turns[{index}]"
            )
        lines.append((speaker - 1, text))
    if not lines:
        raise PersonaFileError("no turns", path=path, row=number, field="turns")
    faithful, rating = item.get("faithful"), item.get("rating")
    if faithful is not None and not isinstance(faithful, bool):
        raise PersonaFileError("must be true or false", path=path, row=number, field="faithful")
    if rating is not None and not isinstance(rating, (int, float)):
        raise PersonaFileError("must be a number", path=path, row=number, field="rating")
    return Labelled(_record(f"{path.stem}-r{number}", personas, lines, number), faithful, rating)


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


def expert_figures(name: str, labelled: list[Labelled], verdicts: list[Verdict]) -> dict[str, Any]:
    known = [(item, verdict) for item, verdict in zip(labelled, verdicts) if item.faithful is not None]
    rated = [(item, verdict) for item, verdict in zip(labelled, verdicts) if item.rating is not None]
    return {
        "expert": name,
        "examples": len(labelled),
        "measure": "faithful vs persona-swapped" if known else "human ratings",
        "accuracy": sum(v.passed == item.faithful for item, v in known) / len(known) if known else None,
        "auroc": auroc([verdict_score(v) for _, v in known], [bool(item.faithful) for item, _ in known]),
        "spearman": spearman([verdict_score(v) for _, v in rated], [float(item.rating or 0) for item, _ in rated]),
        "unanswered": sum(v.score is None and not v.passed and v.reason.startswith(("unparsable", "judge call")) for v in verdicts),
        "tokens": sum(v.tokens for v in verdicts),
    }


def evaluate(
    spec: EndpointSpec,
    api_key: str | None,
    experts: list[str],
    labelled: list[Labelled],
    pairs: list[tuple[DialogueRecord, DialogueRecord]],
    *,
    critics: CriticsConfig | None = None,
    show_progress: bool = True,
) -> list[dict[str, Any]]:
    from factory.critics.experts import JUDGES

    critics = critics or CriticsConfig()
    figures = []
    with JsonTaskRunner(spec, api_key) as runner:
        context = JudgeContext(runner.client, spec, GenerationConfig(min_turns=2, max_turns=1000))
        for name in experts:
            if name == "quality":
                outcomes = runner.gather(
                    (compare((0, a), (1, b), critics.quality, context, seed) for seed, (a, b) in enumerate(pairs)),
                    desc=name, show_progress=show_progress,
                )
                answered = [winners for winners, _ in outcomes if winners is not None]
                right = sum(sum(w == 0 for w in winners.values()) > len(POLICIES) / 2 for winners in answered)
                figures.append({
                    "expert": "quality", "examples": len(pairs), "measure": "original vs turn-shuffled pairs",
                    "accuracy": right / len(pairs) if pairs else None, "auroc": None, "spearman": None,
                    "unanswered": len(pairs) - len(answered), "tokens": sum(tokens for _, tokens in outcomes),
                })
                continue
            judge, config = JUDGES[name], getattr(critics, name)
            verdicts = runner.gather(
                (judge(item.record, config, context) for item in labelled), desc=name, show_progress=show_progress
            )
            figures.append(expert_figures(name, labelled, verdicts))
    return figures

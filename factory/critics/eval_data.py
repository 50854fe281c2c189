"""The labelled dialogues `persona-factory critics eval` measures the critics on, and what each
critic is scored against.

Data:
- Synthetic-Persona-Chat conversations (CSV or JSONL in the SPC format): each original dialogue is
  labelled faithful, and the same dialogue with User 1's persona swapped for another row's is
  labelled unfaithful; the originals are also labelled well formed (the heuristic gate must pass
  them: they are what the generator is shown); for quality, each original is paired with a copy
  whose turns are shuffled, and the original should win.
- JSONL of rated dialogues: ``{"personas": [[...], [...]], "turns": [{"speaker": 1, "text": ...}],
  "faithful": true|false, "toxic": true|false, "well_formed": true|false, "rating": 1-5}`` (every
  label optional); for quality, pairs of dialogues with different ratings (the higher should win).

Each critic is scored against the label of what it exists to judge (its spec's ``label``); what the
data cannot measure (no label, no rating, no MBTI or Big Five personas for portrayal) is refused.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factory.critics.registry import critic_spec
from factory.errors import InputError, PersonaFileError
from factory.generation.cleaning import PLACEHOLDER
from factory.jsonl import read_jsonl
from factory.personas.statements import load_spc_rows
from factory.records import DialogueRecord, GenerationMeta, PersonaProfile, Turn

LABELS = ("faithful", "toxic", "well_formed")


@dataclass
class Labelled:
    record: DialogueRecord
    labels: dict[str, bool] = field(default_factory=dict)
    rating: float | None = None

    def should_pass(self, expert: str) -> bool | None:
        label, when_true = critic_spec(expert).label
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
    path: Path, count: int, rng: random.Random, only: Callable[[str], bool] | None = None
) -> tuple[list[Labelled], list[tuple[DialogueRecord, DialogueRecord]]]:
    """Originals (faithful), persona-swapped copies (unfaithful), and (original, shuffled) pairs;
    with ``only``, the originals are drawn from the conversations whose id it passes (a trained
    critic's held-out ones)."""
    rows = [row for row in load_spc_rows(path) if row.conversation and len(row.conversation) >= 4]
    if len(rows) < 2:
        raise PersonaFileError("needs at least two conversations with four or more turns", path=path)
    drawn_from = [row for row in rows if only is None or only(row.id)]
    chosen = rng.sample(drawn_from, min(count, len(drawn_from)))
    labelled: list[Labelled] = []
    pairs = []
    for row in chosen:
        lines = list(row.conversation)
        profiles = [list(row.personas[0]), list(row.personas[1])]
        original = _record(f"{row.id}-original", profiles, lines, row.row)
        donor = rng.choice([other for other in rows if other.row != row.row])
        swapped = _record(f"{row.id}-swapped", [list(donor.personas[0]), profiles[1]], lines, row.row)
        # a line with a template placeholder ("Hi, I'm [user 1 name]") is the data's artefact: such an
        # original is not counted as well formed, nor as malformed
        templated = any(PLACEHOLDER.search(text) for _, text in lines)
        labelled += [
            Labelled(original, {"faithful": True, **({} if templated else {"well_formed": True})}),
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
    label = critic_spec(expert).label[0]
    if not any(item.should_pass(expert) is not None or item.rating is not None for item in labelled):
        raise InputError(
            f"{expert} cannot be measured on {where}: no item has a {label!r} label or a rating", field="--experts"
        )


def measure_of(expert: str, labelled: list[Labelled], spc: bool) -> str:
    label = critic_spec(expert).label[0]
    labelled_items = [item for item in labelled if item.should_pass(expert) is not None]
    if not labelled_items:
        return "human ratings"
    if spc:
        return {
            "faithful": "faithful vs persona-swapped",
            "well_formed": "pass rate on SPC originals (without placeholders)",
        }.get(label, label)
    return f"{label!r} labels" + (" and ratings" if any(item.rating is not None for item in labelled) else "")

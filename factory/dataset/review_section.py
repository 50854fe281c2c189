"""The review section of a dataset card: the state a version's review is in, kept in the card itself.

A version's card carries ``persona_factory.review_status`` (in_review, approved, rejected) in its
YAML, and a "Review" section in its body: a checklist a reviewer ticks (``- [x]``), the dialogues
to read (drawn at random with a recorded seed), and the sign-offs. Everything the review knows is
read from the card, so a reviewer who ticks boxes in the Hub's editor drives it as well as one who
uses ``persona-factory review``.
"""

from __future__ import annotations

import html
import random
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import yaml

from factory.errors import ReviewError
from factory.records import DialogueRecord, PersonaProfile

# What a reviewer confirms, by what the version holds: a dialogue dataset or a persona bank.
CHECKLISTS = {
    "dialogues": {
        "coverage": "Coverage is balanced across the persona cells (see the pass rates by persona cell).",
        "samples_read": "I read every sampled dialogue listed below.",
        "no_harm": "None of them is toxic or holds identifying information about a real person.",
        "critics": "Critic agreement is acceptable for this data (see the critics' pass rates and report).",
    },
    "personas": {
        "coverage": "Coverage is balanced across kinds, MBTI types, Big Five bands and genders (see the coverage tables).",
        "samples_read": "I read every sampled persona listed below.",
        "no_harm": "No persona is a real, identifiable person, holds personal data, or is a demeaning stereotype.",
        "dropped": "The personas that were dropped, and why, are acceptable (see Dropped).",
    },
}
# What a reviewer may flag a dialogue for, besides the yes/no of in character and a quality of 1-5.
LABEL_FLAGS = ("toxic", "identifying", "off_persona", "repetitive")
SECTION_START = "<!-- review:start -->"
SECTION_END = "<!-- review:end -->"
_BOX = re.compile(r"^- \[([ xX])\] .*<!-- review:(\w+) -->\s*$", re.M)


LEAST_SURE = "least_sure"  # the sample's first list: the dialogues the learned critic is least sure of


@dataclass
class ReviewState:
    status: str = "in_review"
    kind: str = "dialogues"  # which checklist: dialogues or personas
    checklist: dict[str, bool] = field(default_factory=dict)
    samples: dict[str, list[str]] = field(default_factory=dict)  # split -> dialogue ids to read
    seed: int = 0
    signoffs: list[dict[str, str]] = field(default_factory=list)
    reasons: str = ""
    # the sample's strata: split, persona cell, how many of the version's rows it holds, which were drawn
    strata: list[dict[str, Any]] = field(default_factory=list)
    # per dialogue and reviewer: id, reviewer, in_character, quality, flags, note, date
    labels: list[dict[str, Any]] = field(default_factory=list)
    labels_required: bool = False  # approval waits for a label on every sampled dialogue

    def __post_init__(self) -> None:
        self.checklist = {key: self.checklist.get(key, False) for key in CHECKLISTS[self.kind]}

    @property
    def items(self) -> dict[str, str]:
        return CHECKLISTS[self.kind]

    @property
    def missing(self) -> list[str]:
        return [key for key, done in self.checklist.items() if not done]

    @property
    def sampled(self) -> list[str]:
        return [i for ids in self.samples.values() for i in ids]

    @property
    def unlabelled(self) -> list[str]:
        labelled = {label["id"] for label in self.labels}
        return [i for i in self.sampled if i not in labelled]

    def weights(self) -> dict[str, float]:
        """Each sampled row's weight: the rows of its stratum it stands for (1 without strata, as
        in cards written before the sample was stratified; 0 for the learned critic's least sure,
        which are chosen, not drawn, and so stand for no one in an estimate)."""
        weights = {i: 0.0 if split == LEAST_SURE else 1.0 for split, ids in self.samples.items() for i in ids}
        for stratum in self.strata:
            for i in stratum["ids"]:
                weights[i] = stratum["size"] / len(stratum["ids"])
        return weights

    def in_character(self) -> dict[str, bool]:
        """Each labelled dialogue's in-character label: the reviewers' majority, a tie counting as not
        in character (a dialogue one reviewer doubts is not one to trust)."""
        votes: dict[str, list[bool]] = {}
        for label in self.labels:
            votes.setdefault(label["id"], []).append(bool(label["in_character"]))
        return {i: sum(v) > len(v) / 2 for i, v in votes.items()}

    def split_of(self, dialogue_id: str) -> str | None:
        return next((split for split, ids in self.samples.items() if dialogue_id in ids), None)


def card_kind(metadata: dict[str, Any]) -> str:
    return "personas" if (metadata.get("persona_factory") or {}).get("kind") == "persona_bank" else "dialogues"


def persona_cell(persona: PersonaProfile) -> str:
    """The cell a persona is drawn from in the review's stratified sample: its MBTI type, or its kind."""
    return f"mbti={persona.mbti}" if persona.mbti else f"kind={persona.kind}"


def dialogue_cell(record: DialogueRecord) -> str:
    """A dialogue's stratum: its first speaker's cell (every speaker's would split a small sample to nothing)."""
    return persona_cell(record.speakers[0]) if record.speakers else "none"


def pick_samples(
    cells_by_split: dict[str, dict[str, str]], seed: int, per_split: dict[str, int]
) -> tuple[dict[str, list[str]], list[dict[str, Any]]]:
    """The rows to read of each split, drawn with ``seed`` and stratified over persona cells
    (``cells_by_split`` maps each row's id to its cell): each cell gets its share of the split's
    draws (largest remainder), so the sample is spread as the split is, and the strata recorded
    with their sizes weight each labelled row for estimates over the whole version."""
    rng = random.Random(seed)
    samples: dict[str, list[str]] = {}
    strata: list[dict[str, Any]] = []
    for split, cells in cells_by_split.items():
        wanted = min(per_split.get(split, 0), len(cells))
        if not wanted:
            continue
        by_cell: dict[str, list[str]] = defaultdict(list)
        for row_id in sorted(cells):
            by_cell[cells[row_id]].append(row_id)
        for cell, drawn in _allocate({cell: len(ids) for cell, ids in sorted(by_cell.items())}, wanted, rng).items():
            ids = sorted(rng.sample(by_cell[cell], drawn))
            strata.append({"split": split, "cell": cell, "size": len(by_cell[cell]), "ids": ids})
        samples[split] = sorted(i for stratum in strata if stratum["split"] == split for i in stratum["ids"])
    return samples, strata


def _allocate(sizes: dict[str, int], wanted: int, rng: random.Random) -> dict[str, int]:
    """``wanted`` draws shared over strata in proportion to their sizes, remainders to the largest
    fractions (ties broken by ``rng``); strata that get none are left out."""
    total = sum(sizes.values())
    exact = {cell: wanted * size / total for cell, size in sizes.items()}
    shares = {cell: int(value) for cell, value in exact.items()}
    order = sorted(sizes, key=lambda cell: (-(exact[cell] - shares[cell]), rng.random()))
    for cell in order[: wanted - sum(shares.values())]:
        shares[cell] += 1
    return {cell: share for cell, share in shares.items() if share}


def render_section(state: ReviewState) -> str:
    lines = [SECTION_START, "## Review", "", f"Status: **{state.status}**", ""]
    lines += [
        f"- [{'x' if state.checklist.get(key) else ' '}] {text} <!-- review:{key} -->"
        for key, text in state.items.items()
    ]
    lines += ["", f"Dialogues to read (drawn with seed {state.seed}; `persona-factory review sample` prints them):", ""]
    for split, ids in state.samples.items():
        shown = (
            "least sure first (the learned critic's probability nearest 0.5; chosen, not drawn, so they count in no "
            "estimate)"
            if split == LEAST_SURE
            else split
        )
        lines.append(f"- {shown}: " + ", ".join(f"`{i}`" for i in ids))
    if state.kind == "dialogues":
        lines += ["", "Labels (`persona-factory review label`, or the review app):", ""]
        lines += [_label_line(label) for label in state.labels] or ["- none yet"]
    lines += ["", "Sign-offs:", ""]
    lines += [
        f"- {s['reviewer']}: {s['decision']} ({s['date']}){' - ' + as_text(s['notes']) if s.get('notes') else ''}"
        for s in state.signoffs
    ] or ["- none yet"]
    if state.reasons:
        lines += ["", f"Rejected because: {as_text(state.reasons)}"]
    lines += ["", SECTION_END]
    return "\n".join(lines)


# Markdown's marks that take effect in the middle of a line (emphasis, code, links, tables,
# strikethrough); a backslash makes each a literal. "<" and "&" are HTML-escaped instead.
_MARKDOWN = re.compile(r"([\\`*_\[\]|~])")


def as_text(free_text: str) -> str:
    """A reviewer's own words, shown as written inside one list item: on one line (a "---" line
    would end the card's body or start a rule), HTML escaped and Markdown's marks made literal.
    The review state in the metadata keeps the words unchanged."""
    one_line = " ".join(free_text.split())
    return _MARKDOWN.sub(r"\\\1", html.escape(one_line, quote=False))


def _label_line(label: dict[str, Any]) -> str:
    flags = f", flagged {', '.join(label['flags'])}" if label.get("flags") else ""
    note = f" - {as_text(label['note'])}" if label.get("note") else ""
    character = "in character" if label["in_character"] else "NOT in character"
    return f"- `{label['id']}`: {character}, quality {label['quality']}{flags} ({label['reviewer']}, {label['date']}){note}"


def split_card(text: str) -> tuple[dict[str, Any], str]:
    """A card's YAML metadata and its body."""
    match = re.match(r"^---\n(.*?)\n---\n", text, re.S)
    if not match:
        raise ReviewError("the card has no YAML metadata block")
    return yaml.safe_load(match.group(1)) or {}, text[match.end() :]


def read_state(text: str) -> ReviewState:
    """The review state of a card: the status and sign-offs from its YAML, the ticks from its body."""
    metadata, body = split_card(text)
    ours = metadata.get("persona_factory") or {}
    review = ours.get("review") or {}
    state = ReviewState(
        status=ours.get("review_status", "in_review"),
        kind=card_kind(metadata),
        samples=review.get("samples") or {},
        seed=review.get("seed", 0),
        signoffs=review.get("signoffs") or [],
        reasons=review.get("reasons") or "",
        strata=review.get("strata") or [],
        labels=review.get("labels") or [],
        labels_required=bool(review.get("labels_required", False)),
    )
    for mark, key in _BOX.findall(body):
        if key in state.checklist:
            state.checklist[key] = mark.lower() == "x"
    return state


def write_state(text: str, state: ReviewState) -> str:
    """The card with this review state in its YAML and its Review section (added if missing)."""
    metadata, body = split_card(text)
    if state.kind != card_kind(metadata):  # a fresh state for this card: its checklist is the card's kind
        state = ReviewState(**{**state.__dict__, "kind": card_kind(metadata), "checklist": state.checklist})
    ours = metadata.setdefault("persona_factory", {})
    ours["review_status"] = state.status
    ours["review"] = {
        "seed": state.seed,
        "samples": state.samples,
        "checklist": state.checklist,
        "signoffs": state.signoffs,
        "strata": state.strata,
        "labels": state.labels,
        "labels_required": state.labels_required,
        **({"reasons": state.reasons} if state.reasons else {}),
    }
    section = render_section(state)
    if SECTION_START in body and SECTION_END in body:
        body = body[: body.index(SECTION_START)] + section + body[body.index(SECTION_END) + len(SECTION_END) :]
    else:
        body = body.rstrip("\n") + "\n\n" + section + "\n"
    return join_card(metadata, body)


def join_card(metadata: dict[str, Any], body: str) -> str:
    """A card from its YAML metadata and its body (what :func:`split_card` took apart)."""
    return f"---\n{yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True)}---\n{body}"


def with_review_status(card: str, status: str) -> str:
    """The card with its review status set (and a review section, if it had none)."""
    state = read_state(card)
    state.status = status
    return write_state(card, state)

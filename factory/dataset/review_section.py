"""The review section of a dataset card: the state a version's review is in, kept in the card itself.

A version's card carries ``persona_factory.review_status`` (in_review, approved, rejected) in its
YAML, and a "Review" section in its body: a checklist a reviewer ticks (``- [x]``), the dialogues
to read (drawn at random with a recorded seed), and the sign-offs. Everything the review knows is
read from the card, so a reviewer who ticks boxes in the Hub's editor drives it as well as one who
uses ``persona-factory review``.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from factory.errors import ReviewError

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
SECTION_START = "<!-- review:start -->"
SECTION_END = "<!-- review:end -->"
_BOX = re.compile(r"^- \[([ xX])\] .*<!-- review:(\w+) -->\s*$", re.M)


@dataclass
class ReviewState:
    status: str = "in_review"
    kind: str = "dialogues"  # which checklist: dialogues or personas
    checklist: dict[str, bool] = field(default_factory=dict)
    samples: dict[str, list[str]] = field(default_factory=dict)  # split -> dialogue ids to read
    seed: int = 0
    signoffs: list[dict[str, str]] = field(default_factory=list)
    reasons: str = ""

    def __post_init__(self) -> None:
        self.checklist = {key: self.checklist.get(key, False) for key in CHECKLISTS[self.kind]}

    @property
    def items(self) -> dict[str, str]:
        return CHECKLISTS[self.kind]

    @property
    def missing(self) -> list[str]:
        return [key for key, done in self.checklist.items() if not done]


def card_kind(metadata: dict[str, Any]) -> str:
    return "personas" if (metadata.get("persona_factory") or {}).get("kind") == "persona_bank" else "dialogues"


def pick_samples(ids_by_split: dict[str, list[str]], seed: int, per_split: dict[str, int]) -> dict[str, list[str]]:
    rng = random.Random(seed)
    return {
        split: sorted(rng.sample(sorted(ids), min(per_split.get(split, 0), len(ids))))
        for split, ids in ids_by_split.items()
        if ids and per_split.get(split, 0)
    }


def render_section(state: ReviewState) -> str:
    lines = [SECTION_START, "## Review", "", f"Status: **{state.status}**", ""]
    lines += [
        f"- [{'x' if state.checklist.get(key) else ' '}] {text} <!-- review:{key} -->"
        for key, text in state.items.items()
    ]
    lines += ["", f"Dialogues to read (drawn with seed {state.seed}; `persona-factory review sample` prints them):", ""]
    for split, ids in state.samples.items():
        lines.append(f"- {split}: " + ", ".join(f"`{i}`" for i in ids))
    lines += ["", "Sign-offs:", ""]
    lines += [
        f"- {s['reviewer']}: {s['decision']} ({s['date']}){' - ' + s['notes'] if s.get('notes') else ''}"
        for s in state.signoffs
    ] or ["- none yet"]
    if state.reasons:
        lines += ["", f"Rejected because: {state.reasons}"]
    lines += ["", SECTION_END]
    return "\n".join(lines)


def _split_card(text: str) -> tuple[dict[str, Any], str]:
    match = re.match(r"^---\n(.*?)\n---\n", text, re.S)
    if not match:
        raise ReviewError("the card has no YAML metadata block")
    return yaml.safe_load(match.group(1)) or {}, text[match.end() :]


def read_state(text: str) -> ReviewState:
    """The review state of a card: the status and sign-offs from its YAML, the ticks from its body."""
    metadata, body = _split_card(text)
    ours = metadata.get("persona_factory") or {}
    review = ours.get("review") or {}
    state = ReviewState(
        status=ours.get("review_status", "in_review"),
        kind=card_kind(metadata),
        samples=review.get("samples") or {},
        seed=review.get("seed", 0),
        signoffs=review.get("signoffs") or [],
        reasons=review.get("reasons") or "",
    )
    for mark, key in _BOX.findall(body):
        if key in state.checklist:
            state.checklist[key] = mark.lower() == "x"
    return state


def write_state(text: str, state: ReviewState) -> str:
    """The card with this review state in its YAML and its Review section (added if missing)."""
    metadata, body = _split_card(text)
    if state.kind != card_kind(metadata):  # a fresh state for this card: its checklist is the card's kind
        state = ReviewState(**{**state.__dict__, "kind": card_kind(metadata), "checklist": state.checklist})
    ours = metadata.setdefault("persona_factory", {})
    ours["review_status"] = state.status
    ours["review"] = {
        "seed": state.seed,
        "samples": state.samples,
        "checklist": state.checklist,
        "signoffs": state.signoffs,
        **({"reasons": state.reasons} if state.reasons else {}),
    }
    section = render_section(state)
    if SECTION_START in body and SECTION_END in body:
        body = body[: body.index(SECTION_START)] + section + body[body.index(SECTION_END) + len(SECTION_END) :]
    else:
        body = body.rstrip("\n") + "\n\n" + section + "\n"
    return f"---\n{yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True)}---\n{body}"


def with_review_status(card: str, status: str) -> str:
    """The card with its review status set (and a review section, if it had none)."""
    state = read_state(card)
    state.status = status
    return write_state(card, state)

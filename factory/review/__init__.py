"""The review of a version, step by step: sign, approve, reject.

What a step requires (every checklist box ticked, no standing reject, a version still in review)
is decided here, on the review state the card holds (:mod:`factory.dataset.review_section`); where
the card is saved and what releasing means is the target's (:mod:`factory.review.targets`). The
CLI only turns flags into these calls.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from factory.dataset.manifest import manifest_of
from factory.dataset.review_section import LABEL_FLAGS, ReviewState, read_state, write_state
from factory.errors import InputError, ReviewError
from factory.hub import HUB_PREFIX, looks_like_repo_id, repo_id
from factory.records import speaker_label
from factory.review.targets import HubTarget, LocalTarget, ReviewTarget

DECISIONS = ("approve", "reject")
# A name as a card shows it and a reader recognises it: letters or digits first, then those, spaces
# and . _ @ ' - (an e-mail address, "Ana María", "j.doe"); nothing that renders as markup.
REVIEWER_NAME = re.compile(r"[^\W_][\w .@'-]{0,63}")


def reviewer_name(name: str) -> str:
    """The reviewer, as every label and sign-off records them; a step by nobody is refused."""
    name = name.strip()
    if not REVIEWER_NAME.fullmatch(name):
        shown = f"{name!r} is not a reviewer name" if name else "a reviewer name is required"
        raise InputError(
            f"{shown}: up to 64 letters, digits, spaces and . _ @ ' -, starting with a letter or digit",
            field="--reviewer",
        )
    return name


def open_target(where: str) -> ReviewTarget:
    """A folder that exists, or a Hub repository written ``hf://org/name``. Anything else is a
    mistake (often a mistyped folder), refused before any request goes out with the token."""
    if where.startswith(HUB_PREFIX):
        return HubTarget(repo_id(where, field="target"))
    if Path(where).is_dir():
        return LocalTarget(where)
    hint = f"; for the Hub repository, write {HUB_PREFIX}{where}" if looks_like_repo_id(where) else ""
    raise InputError(f"no such dataset folder{hint}", path=where)


def card_of(target: ReviewTarget, version: str) -> str:
    return target.file(version, "README.md").decode("utf-8")


def opened(where: str, version: str | None) -> tuple[ReviewTarget, str]:
    """The target and the version a review command is about: the one named, or the latest in review."""
    target = open_target(where)
    return target, version or target.latest_in_review()


def sign_version(
    target: ReviewTarget, version: str, reviewer: str, decision: str, notes: str, checks: list[str]
) -> ReviewState:
    if decision not in DECISIONS:
        raise InputError(f"decision must be approve or reject, not {decision!r}", field="--decision")
    reviewer = reviewer_name(reviewer)
    card = card_of(target, version)
    state = sign(read_state(card), reviewer, decision, notes, checks)
    target.save(version, write_state(card, state), f"{version}: signed by {reviewer} ({decision})")
    return state


def approve_version(target: ReviewTarget, version: str) -> None:
    """Release a version whose review is complete; refused (ReviewError) otherwise."""
    card = card_of(target, version)
    state = read_state(card)
    approvable(state)
    state.status = "approved"
    target.approve(version, write_state(card, state), f"{version}: approved")


def reject_version(target: ReviewTarget, version: str, reasons: str) -> None:
    card = card_of(target, version)
    state = read_state(card)
    if state.status != "in_review":
        raise ReviewError(f"{version} is {state.status}, not in review")
    state.status, state.reasons = "rejected", reasons
    target.reject(version, write_state(card, state), f"{version}: rejected", reasons)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def label_version(target: ReviewTarget, version: str, reviewer: str, label: dict[str, Any]) -> ReviewState:
    """Record a reviewer's label of one sampled dialogue in the card (replacing that reviewer's
    earlier label of it)."""
    reviewer = reviewer_name(reviewer)
    card = card_of(target, version)
    state = add_label(read_state(card), reviewer, label)
    target.save(version, write_state(card, state), f"{version}: {label['id']} labelled by {reviewer}")
    return state


def add_label(state: ReviewState, reviewer: str, label: dict[str, Any]) -> ReviewState:
    if state.status != "in_review":
        raise ReviewError(f"this version is {state.status}, not in review")
    if state.kind != "dialogues":
        raise ReviewError("labels are for dialogue versions; a persona bank's review is its checklist")
    if label["id"] not in state.sampled:
        raise InputError(
            f"{label['id']} is not one of the sampled dialogues; label one of {', '.join(state.sampled) or 'none'}"
        )
    if not (isinstance(label["quality"], int) and 1 <= label["quality"] <= 5):
        raise InputError(f"quality must be a whole number from 1 to 5, not {label['quality']!r}", field="--quality")
    unknown = [flag for flag in label.get("flags", []) if flag not in LABEL_FLAGS]
    if unknown:
        raise InputError(
            f"unknown flag(s) {', '.join(unknown)}; the flags are {', '.join(LABEL_FLAGS)}", field="--flag"
        )
    entry = {
        "id": label["id"],
        "reviewer": reviewer,
        "in_character": bool(label["in_character"]),
        "quality": label["quality"],
        "flags": list(label.get("flags", [])),
        "note": label.get("note", ""),
        "date": _now(),
    }
    kept = [old for old in state.labels if (old["id"], old["reviewer"]) != (entry["id"], reviewer)]
    state.labels = [*kept, entry]
    return state


def sign(state: ReviewState, reviewer: str, decision: str, notes: str, checks: list[str]) -> ReviewState:
    unknown = [c for c in checks if c not in state.checklist]
    if unknown:
        raise InputError(f"unknown checklist item(s) {', '.join(unknown)}; the items are {', '.join(state.checklist)}")
    if state.status != "in_review":
        raise ReviewError(f"this version is {state.status}, not in review")
    for check in checks:
        state.checklist[check] = True
    state.signoffs.append(
        {
            "reviewer": reviewer,
            "decision": decision,
            "notes": notes,
            "date": _now(),
        }
    )
    return state


def standing_decisions(state: ReviewState) -> dict[str, str]:
    """Each reviewer's last word: a later sign-off replaces that reviewer's earlier one."""
    return {signoff["reviewer"]: signoff["decision"] for signoff in state.signoffs}


def approvable(state: ReviewState) -> None:
    if state.status != "in_review":
        raise ReviewError(f"this version is {state.status}, not in review")
    if state.missing:
        raise ReviewError(
            "the checklist is incomplete: "
            + ", ".join(state.missing)
            + " (tick them with `review sign --check ...` or in the card)"
        )
    if state.labels_required and state.unlabelled:
        raise ReviewError(
            f"{len(state.unlabelled)} sampled dialogue(s) have no label yet: {', '.join(state.unlabelled)} "
            "(`review label --id ...` or the review app)"
        )
    decisions = standing_decisions(state)
    objecting = sorted(reviewer for reviewer, decision in decisions.items() if decision != "approve")
    if objecting:
        raise ReviewError(
            f"{', '.join(objecting)} signed off with decision reject; a reject stands until that reviewer signs "
            "again with --decision approve (or the version is rejected with `review reject`)"
        )
    if "approve" not in decisions.values():
        raise ReviewError("no reviewer has signed off with decision approve (`review sign --decision approve`)")


def version_rows(target: ReviewTarget, version: str) -> Iterator[dict[str, Any]]:
    """Every row of the version's splits, a shard at a time."""
    import pyarrow.parquet as pq

    manifest = manifest_of(target.file(version, "manifest.json"), f"{version}: manifest.json")
    for split in manifest.splits.values():
        for name in split.files:
            yield from pq.read_table(io.BytesIO(target.file(version, name))).to_pylist()


def sample_dialogues(target: ReviewTarget, version: str) -> list[dict[str, Any]]:
    """The rows the card asks the reviewer to read, in the card's order."""
    state = read_state(card_of(target, version))
    wanted = {i for ids in state.samples.values() for i in ids}
    rows = {row["id"]: row for row in version_rows(target, version) if row["id"] in wanted}
    return [rows[i] for ids in state.samples.values() for i in ids if i in rows]


def format_dialogue(row: dict[str, Any]) -> str:
    """A dialogue as a reviewer reads it in a terminal: who is who, the turns, the verdicts."""
    if "turns" not in row:  # a persona of a bank
        return "\n".join([f"== {row['id']} ({row['kind']})", *(f"   - {s}" for s in row["statements"]), ""])
    names: dict[str, str] = {}
    lines = [f"== {row['id']}  ({'accepted' if row['accepted'] else 'rejected'})"]
    for index, speaker in enumerate(row["speakers"], start=1):
        names[speaker["id"]] = speaker.get("name") or speaker_label(index)
        lines.append(f"   {names[speaker['id']]}: " + " ".join(speaker["statements"]))
    lines.append("")
    lines += [f"   {names.get(t['speaker'], t['speaker'])}: {t['text']}" for t in row["turns"]]
    lines.append("")
    lines += [f"   [{'pass' if v['passed'] else 'FAIL'}] {v['critic']}: {v['reason']}" for v in row["verdicts"]]
    return "\n".join([*lines, ""])

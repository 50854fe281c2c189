"""The review workflow, driven by the dataset card.

A version's card carries ``persona_factory.review_status`` (in_review, approved, rejected) in its
YAML, and a "Review" section in its body: a checklist a reviewer ticks (``- [x]``), the dialogues
to read (drawn at random with a recorded seed), and the sign-offs. Everything the workflow knows
is read from the card, so a reviewer who ticks boxes in the Hub's editor drives it as well as one
who uses ``persona-factory review``.

Targets: a local dataset folder (review branches, ``main`` and tags; see DatasetFolder) or a Hub
repository (the version's pull request, ``main`` and tags).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import yaml

from factory.errors import FactoryError, InputError

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
CHECKLIST = CHECKLISTS["dialogues"]
SECTION_START = "<!-- review:start -->"
SECTION_END = "<!-- review:end -->"
_BOX = re.compile(r"^- \[([ xX])\] .*<!-- review:(\w+) -->\s*$", re.M)


class ReviewError(FactoryError):
    """The review cannot take this step (the message says what is missing)."""


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


def sign(state: ReviewState, reviewer: str, decision: str, notes: str, checks: list[str]) -> ReviewState:
    unknown = [c for c in checks if c not in state.checklist]
    if unknown:
        raise ReviewError(f"unknown checklist item(s) {', '.join(unknown)}; the items are {', '.join(state.checklist)}")
    if state.status != "in_review":
        raise ReviewError(f"this version is {state.status}, not in review")
    for check in checks:
        state.checklist[check] = True
    state.signoffs.append(
        {
            "reviewer": reviewer,
            "decision": decision,
            "notes": notes,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
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
    decisions = standing_decisions(state)
    objecting = sorted(reviewer for reviewer, decision in decisions.items() if decision != "approve")
    if objecting:
        raise ReviewError(
            f"{', '.join(objecting)} signed off with decision reject; a reject stands until that reviewer signs "
            "again with --decision approve (or the version is rejected with `review reject`)"
        )
    if "approve" not in decisions.values():
        raise ReviewError("no reviewer has signed off with decision approve (`review sign --decision approve`)")


# -- where reviewed versions live -------------------------------------------------------------


class LocalTarget:
    """A dataset folder: versions in review are branches, released ones are main and tags."""

    def __init__(self, path: str) -> None:
        from factory.dataset.folder import DatasetFolder

        self.folder = DatasetFolder(path)
        if not self.folder.is_repository():
            raise ReviewError(f"{self.folder.path} is not a persona-factory dataset folder")
        self.name = str(self.folder.path)

    def latest_in_review(self) -> str:
        for version in reversed(self.folder.review_versions()):
            if version not in self.folder.released_versions() and read_state(self.card(version)).status == "in_review":
                return version
        raise ReviewError(f"{self.name} has no version in review")

    def card(self, version: str) -> str:
        return self.folder.read_bytes(self.folder.resolve(version), "README.md").decode("utf-8")

    def file(self, version: str, name: str) -> bytes:
        return self.folder.read_bytes(self.folder.resolve(version), name)

    def save(self, version: str, card: str, message: str) -> None:
        with self.folder.locked():
            on = self.folder.branch()
            self.folder.commit_card(version, card, message)
            self.folder.git("checkout", "-q", on)

    def approve(self, version: str, card: str, message: str) -> None:
        with self.folder.locked():
            self.folder.release(version, card, message)

    def reject(self, version: str, card: str, message: str, reasons: str) -> None:
        """The card says why; the working tree leaves the rejected version for the latest released
        one (main), so loading the folder never returns a version a reviewer turned down."""
        with self.folder.locked():
            on = self.folder.branch()
            self.folder.commit_card(version, card, message)
            self.folder.git("checkout", "-q", "main" if on == self.folder.ref_for(version) else on)


class HubTarget:
    """A Hub dataset repository: a version in review is an open pull request titled
    ``vX.Y.Z: review``; approving merges it into main and tags main."""

    def __init__(self, repo: str) -> None:
        from factory.hub import hub_api

        self.api = hub_api()
        self.name = repo

    def _pulls(self) -> dict[str, tuple[int, str]]:
        refs = self.api.list_repo_refs(self.name, repo_type="dataset", include_pull_requests=True)
        found = {}
        for pull in refs.pull_requests:
            number = int(pull.name.rsplit("/", 1)[1])
            details = self.api.get_discussion_details(self.name, number, repo_type="dataset")
            if details.title.endswith(": review"):
                found[details.title.split(":", 1)[0]] = (number, details.status)
        return found

    def _revision(self, version: str) -> str:
        refs = self.api.list_repo_refs(self.name, repo_type="dataset")
        if any(tag.name == version for tag in refs.tags):
            return version
        pull = self._pulls().get(version)
        if pull is None:
            raise ReviewError(f"{self.name} has no pull request for {version}")
        return f"refs/pr/{pull[0]}"

    def latest_in_review(self) -> str:
        from factory.dataset.folder import parse_version
        from factory.hub import hub_errors

        with hub_errors("to list the pull requests of", self.name):
            open_versions = [v for v, (_, status) in self._pulls().items() if status == "open" and parse_version(v)]
        if not open_versions:
            raise ReviewError(f"{self.name} has no version in review")
        return max(open_versions, key=parse_version)  # type: ignore[arg-type]

    def file(self, version: str, name: str) -> bytes:
        from huggingface_hub import hf_hub_download

        from factory.hub import hub_errors

        with hub_errors(f"{name} of {version} from", self.name):
            path = hf_hub_download(
                self.name, name, repo_type="dataset", revision=self._revision(version), token=self.api.token
            )
        with open(path, "rb") as handle:
            return handle.read()

    def card(self, version: str) -> str:
        return self.file(version, "README.md").decode("utf-8")

    def save(self, version: str, card: str, message: str) -> None:
        from huggingface_hub import CommitOperationAdd

        from factory.hub import hub_errors

        with hub_errors(f"the card of {version} for", self.name):
            self.api.create_commit(
                self.name,
                [CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card.encode("utf-8"))],
                commit_message=message,
                repo_type="dataset",
                revision=self._revision(version),
            )

    def approve(self, version: str, card: str, message: str) -> None:
        from factory.hub import hub_errors

        with hub_errors(f"the release of {version} of", self.name):
            number = self._pulls()[version][0]
            self.save(version, card, message)
            self.api.merge_pull_request(self.name, number, repo_type="dataset", comment=message)
            self.api.create_tag(self.name, tag=version, revision="main", repo_type="dataset", tag_message=message)

    def reject(self, version: str, card: str, message: str, reasons: str) -> None:
        from factory.hub import hub_errors

        with hub_errors(f"to close the review of {version} of", self.name):
            number = self._pulls()[version][0]
            self.save(version, card, message)
            self.api.change_discussion_status(self.name, number, "closed", repo_type="dataset", comment=reasons)


def open_target(where: str) -> LocalTarget | HubTarget:
    """A folder that exists, or a Hub repository written ``hf://org/name``. Anything else is a
    mistake (often a mistyped folder), refused before any request goes out with the token."""
    from pathlib import Path

    from factory.hub import HUB_PREFIX, looks_like_repo_id, repo_id

    if where.startswith(HUB_PREFIX):
        return HubTarget(repo_id(where, field="target"))
    if Path(where).is_dir():
        return LocalTarget(where)
    hint = f"; for the Hub repository, write {HUB_PREFIX}{where}" if looks_like_repo_id(where) else ""
    raise InputError(f"no such dataset folder{hint}", path=where)


def sample_dialogues(target: LocalTarget | HubTarget, version: str) -> list[dict[str, Any]]:
    """The rows the card asks the reviewer to read, in the card's order."""
    import io
    import json as json_module

    import pyarrow.parquet as pq

    state = read_state(target.card(version))
    manifest = json_module.loads(target.file(version, "manifest.json"))
    wanted = {i for ids in state.samples.values() for i in ids}
    rows: dict[str, dict[str, Any]] = {}
    for split in manifest.get("splits", {}).values():
        for name in split.get("files", []):
            for row in pq.read_table(io.BytesIO(target.file(version, name))).to_pylist():
                if row["id"] in wanted:
                    rows[row["id"]] = row
    return [rows[i] for ids in state.samples.values() for i in ids if i in rows]


def format_dialogue(row: dict[str, Any]) -> str:
    """A dialogue as a reviewer reads it in a terminal: who is who, the turns, the verdicts."""
    if "turns" not in row:  # a persona of a bank
        return "\n".join([f"== {row['id']} ({row['kind']})", *(f"   - {s}" for s in row["statements"]), ""])
    names = {}
    lines = [f"== {row['id']}  ({'accepted' if row['accepted'] else 'rejected'})"]
    for index, speaker in enumerate(row["speakers"], start=1):
        names[speaker["id"]] = speaker.get("name") or f"User {index}"
        lines.append(f"   {names[speaker['id']]}: " + " ".join(speaker["statements"]))
    lines.append("")
    lines += [f"   {names.get(t['speaker'], t['speaker'])}: {t['text']}" for t in row["turns"]]
    lines.append("")
    lines += [f"   [{'pass' if v['passed'] else 'FAIL'}] {v['critic']}: {v['reason']}" for v in row["verdicts"]]
    return "\n".join([*lines, ""])

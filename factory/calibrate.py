"""Critics calibrated against the reviewers' labels of one version.

The review's sample is drawn stratified over the accepted and rejected splits and over persona
cells (:func:`factory.dataset.review_section.pick_samples`), and each labelled dialogue stands for
its stratum's rows, so the figures here estimate the whole version, not the sample: how often a
critic's pass was a dialogue people found in character (precision), how many of those it passed
(recall), how well its score ranks them (AUROC), and what share of the accepted split is in
character. Intervals are Wilson's at 95%, on the sample's effective size (Kish) when the weights
differ.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from factory.critics.evaluate import auroc
from factory.dataset.card_sections import TRUST_HEADING, markdown_table
from factory.dataset.review_section import SECTION_START, ReviewState, join_card, read_state, split_card, write_state
from factory.errors import InputError, ReviewError
from factory.records import FORMAT
from factory.review import card_of, opened, sample_dialogues

Z95 = 1.959963984540054

# Critics whose verdict is a score against a recipe threshold, and that threshold for a score: the
# score is what the verdict records, the threshold is what the recipe says (grounding records its
# margin in [-1, 1] as a score in [0, 1]).
RECIPE_THRESHOLD: dict[str, Callable[[float], float]] = {
    "grounding": lambda score: round(2 * score - 1, 4),
    "apc": lambda score: round(score, 4),
    "attribution": lambda score: round(score, 4),
}


@dataclass
class Estimate:
    """A weighted share with its Wilson 95% interval; ``n`` is the sample it rests on."""

    value: float | None
    low: float | None
    high: float | None
    n: int

    def show(self) -> str:
        if self.value is None or self.low is None or self.high is None:
            return "n/a"
        return f"{self.value:.2f} [{self.low:.2f}, {self.high:.2f}]"


def wilson(successes: float, n: float) -> tuple[float, float]:
    """Wilson's 95% score interval for ``successes`` of ``n`` (``n`` may be an effective size)."""
    p = successes / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 / (1 + Z95**2 / n) * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n**2))
    return max(0.0, centre - half), min(1.0, centre + half)


def weighted_share(hits: list[bool], weights: list[float]) -> Estimate:
    """The share of hits, each counted at its weight; rows of weight 0 (chosen, not drawn) are left out."""
    kept = [(hit, weight) for hit, weight in zip(hits, weights) if weight > 0]
    hits, weights = [hit for hit, _ in kept], [weight for _, weight in kept]
    if not hits:
        return Estimate(None, None, None, 0)
    total = sum(weights)
    value = sum(w for hit, w in zip(hits, weights) if hit) / total
    effective = total**2 / sum(w * w for w in weights)
    low, high = wilson(value * effective, effective)
    return Estimate(round(value, 4), round(low, 4), round(high, 4), len(hits))


@dataclass
class CriticAgreement:
    critic: str
    labelled: int  # labelled dialogues this critic judged
    passed: int
    precision: Estimate
    recall: Estimate
    auroc: float | None
    threshold: float | None = None  # the recipe threshold reaching the target precision, if one does
    threshold_precision: Estimate | None = None
    threshold_note: str = ""


@dataclass
class Calibration:
    version: str
    labels: int  # labelled sampled dialogues
    target_precision: float
    accepted_in_character: Estimate
    critics: list[CriticAgreement] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def calibrate(state: ReviewState, rows: list[dict[str, Any]], version: str, target_precision: float) -> Calibration:
    """The agreement of every critic that judged the labelled dialogues (``rows``, as published)."""
    truth = state.in_character()
    weights = state.weights()
    labelled = [row for row in rows if row["id"] in truth]
    accepted = [row for row in labelled if row["accepted"]]
    calibration = Calibration(
        version=version,
        labels=len(labelled),
        target_precision=target_precision,
        accepted_in_character=weighted_share([truth[r["id"]] for r in accepted], [weights[r["id"]] for r in accepted]),
    )
    critics = list(dict.fromkeys(v["critic"] for row in labelled for v in row["verdicts"] if v["critic"] != FORMAT))
    for critic in critics:
        judged = [(row["id"], v) for row in labelled for v in row["verdicts"] if v["critic"] == critic]
        calibration.critics.append(_agreement(critic, judged, truth, weights, target_precision))
    return calibration


def _agreement(
    critic: str,
    judged: list[tuple[str, dict[str, Any]]],
    truth: dict[str, bool],
    weights: dict[str, float],
    target_precision: float,
) -> CriticAgreement:
    passed = [(i, v) for i, v in judged if v["passed"]]
    in_character = [(i, v) for i, v in judged if truth[i]]
    scored = [(i, v["score"]) for i, v in judged if v.get("score") is not None]
    agreement = CriticAgreement(
        critic=critic,
        labelled=len(judged),
        passed=len(passed),
        precision=weighted_share([truth[i] for i, _ in passed], [weights[i] for i, _ in passed]),
        recall=weighted_share([v["passed"] for _, v in in_character], [weights[i] for i, _ in in_character]),
        auroc=_rounded(auroc([s for _, s in scored], [truth[i] for i, _ in scored], [weights[i] for i, _ in scored])),
    )
    if critic in RECIPE_THRESHOLD:
        _propose_threshold(agreement, scored, truth, weights, target_precision)
    return agreement


def _propose_threshold(
    agreement: CriticAgreement,
    scored: list[tuple[str, float]],
    truth: dict[str, bool],
    weights: dict[str, float],
    target: float,
) -> None:
    """The lowest score cut whose passes reach ``target`` precision on the labels: the one that
    keeps the most in-character dialogues while people agree with what it keeps often enough."""
    for cut in sorted({score for _, score in scored}):
        kept = [i for i, score in scored if score >= cut]
        estimate = weighted_share([truth[i] for i in kept], [weights[i] for i in kept])
        if estimate.value is not None and estimate.value >= target:
            agreement.threshold = RECIPE_THRESHOLD[agreement.critic](cut)
            agreement.threshold_precision = estimate
            return
    agreement.threshold_note = f"no threshold reaches precision {target:g} on these labels"


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def render_table(calibration: Calibration) -> str:
    """The agreement table as ``critics calibrate`` prints it and the card shows it."""
    header = ["critic", "labelled", "passed", "precision [95%]", "recall [95%]", "AUROC", "proposed threshold"]
    rows = [
        [
            c.critic, c.labelled, c.passed, c.precision.show(), c.recall.show(),
            "n/a" if c.auroc is None else f"{c.auroc:.2f}",
            c.threshold_note or ("-" if c.threshold is None else f"{c.threshold:g} (precision {_shown(c)})"),
        ]
        for c in calibration.critics
    ]  # fmt: skip
    return markdown_table(header, rows)


def _shown(agreement: CriticAgreement) -> str:
    return agreement.threshold_precision.show() if agreement.threshold_precision else "n/a"


CHANGES_HEADING = "## Changes since"


def calibrate_version(where: str, version: str | None, target_precision: float) -> Calibration:
    """Calibrate the critics of a version against its labels; the figures go into its card (the
    trust section and the changes)."""
    if not 0 < target_precision <= 1:
        raise InputError(f"must be in (0, 1], not {target_precision}", field="--target-precision")
    target, version = opened(where, version)
    card = card_of(target, version)
    state = read_state(card)
    if not state.labels:
        raise ReviewError(f"{version} has no labels yet; label its sampled dialogues first (`review label`)")
    calibration = calibrate(state, sample_dialogues(target, version), version, target_precision)
    card = with_calibration(card, calibration)
    target.save(version, card, f"{version}: critics calibrated against {calibration.labels} labels")
    return calibration


def with_calibration(card: str, calibration: Calibration) -> str:
    """The card with the calibration in its YAML, its trust section and its changes."""
    metadata, body = split_card(card)
    metadata.setdefault("persona_factory", {})["calibration"] = calibration.as_dict()
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    change = (
        f"Critics calibrated on {date} against {calibration.labels} reviewer labels: the accepted split is in "
        f"character at {calibration.accepted_in_character.show()} (estimated for the whole split from its "
        "stratified sample)."
    )
    trust = "Against this version's reviewers (`persona-factory critics calibrate`, target precision "
    trust += f"{calibration.target_precision:g}):\n\n{render_table(calibration)}\n\n{change}"
    body = _put_block(body, "calibration", TRUST_HEADING, trust)
    if CHANGES_HEADING in body:
        body = _put_block(body, "calibration-change", CHANGES_HEADING, change)
    card = join_card(metadata, body)
    return write_state(card, read_state(card))  # the review section stays as the state says


def _put_block(body: str, name: str, heading: str, text: str) -> str:
    """``text`` between markers at the end of the section under ``heading`` (replacing what an
    earlier calibration put there); a missing section is added before the review section."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start in body and end in body:
        body = body[: body.index(start)] + body[body.index(end) + len(end) :].lstrip("\n")
    block = f"{start}\n{text}\n{end}\n"
    if heading in body:
        following = body.find("\n## ", body.index(heading) + len(heading))
        at = following + 1 if following >= 0 else len(body)
    else:
        before = [body.index(mark) for mark in ("\n## Use\n", SECTION_START) if mark in body]
        at = min(before) + 1 if before else len(body)
        block = f"{heading}\n\n{block}"
    return body[:at] + block + "\n" + body[at:]


def write_thresholds(path: Path, calibration: Calibration, version_recipe: str) -> list[str]:
    """Set each proposed threshold in the recipe at ``path`` (the version's own recipe when the
    file does not exist yet); the settings it changed."""
    text = path.read_text(encoding="utf-8") if path.exists() else version_recipe
    recipe = yaml.safe_load(text) or {}
    changed = []
    for agreement in calibration.critics:
        if agreement.threshold is None:
            continue
        critics = recipe.setdefault("critics", {})
        critics.setdefault(agreement.critic, {})["threshold"] = agreement.threshold
        changed.append(f"critics.{agreement.critic}.threshold = {agreement.threshold:g}")
    if changed:  # a file with nothing to change is left as it was, comments and all
        path.write_text(yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return changed

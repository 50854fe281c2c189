"""`persona-factory critics eval`: how far to trust the critics, measured on labelled dialogues.

The data and its labels are read in :mod:`factory.critics.eval_data`.

Each expert is scored against the label of what it exists to judge (its spec's ``label``):
accuracy (it passes what the label says should pass and fails the rest), AUROC of its score (or of
its pass/fail when it gives none) with "should pass" as the positive class, and Spearman
correlation with the ratings. Only answered items are scored: a judge call that failed or a reply
that could not be used is counted apart, and an expert most of whose items went unanswered fails
the evaluation (a broken endpoint must not read as a chance-level critic). What the data cannot
measure (no label, no rating, no MBTI or Big Five personas for portrayal) is refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factory.critics.base import JudgeContext, JudgePanel
from factory.critics.eval_data import (
    Labelled,
    load_rated_jsonl,
    measurable,
    measure_of,
    rated_pairs,
    spc_eval_set,
)
from factory.critics.jury import judge_panels, needs_generator
from factory.critics.learned.critic import loaded
from factory.critics.learned.model import part_of
from factory.critics.quality import compare
from factory.critics.registry import critic_specs, verdict_of
from factory.errors import MostlyUnanswered, RecipeError
from factory.llm.embeddings import Embedder, open_embedder
from factory.llm.endpoint import endpoint_provenance, open_endpoint
from factory.llm.keys import ApiKeys
from factory.llm.spec import EndpointSpec
from factory.llm.tasks import JsonTaskRunner
from factory.recipes import Recipe
from factory.recipes.critics import CriticsConfig, LearnedCriticConfig
from factory.recipes.generation import GenerationConfig
from factory.recipes.judges import JudgeLLMConfig
from factory.recipes.llm import LLMConfig
from factory.records import DialogueRecord, Verdict
from factory.settings import resolve_data_path


def auroc(scores: list[float], positives: list[bool], weights: list[float] | None = None) -> float | None:
    """Probability that a random positive scores above a random negative (ties count half); with
    ``weights``, each example counts as that many (a stratified sample's rows stand for their stratum)."""
    weights = weights or [1.0] * len(scores)
    pos = [(s, w) for s, p, w in zip(scores, positives, weights) if p]
    neg = [(s, w) for s, p, w in zip(scores, positives, weights) if not p]
    if not sum(w for _, w in pos) or not sum(w for _, w in neg):
        return None
    wins = sum(wa * wb * ((a > b) + 0.5 * (a == b)) for a, wa in pos for b, wb in neg)
    return wins / (sum(w for _, w in pos) * sum(w for _, w in neg))


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
    keys: ApiKeys,
    experts: list[str],
    labelled: list[Labelled],
    pairs: list[tuple[DialogueRecord, DialogueRecord]],
    *,
    critics: CriticsConfig | None = None,
    panels: dict[str, JudgePanel] | None = None,
    embedder: Embedder | None = None,
    show_progress: bool = True,
    spc: bool = False,
) -> Evaluation:
    """Every expert's figures (and each item's verdict), judged as a run would: by each critic's
    judges (``panels``; the generator's endpoint ``spec`` for a critic without), a jury aggregated.
    ``spec`` may be None when no judge needs it."""
    critics = critics or CriticsConfig()
    panels = panels or {}
    figures, items = [], []
    with JsonTaskRunner(spec, keys) as runner:
        clients = {juror.spec: runner.client_for(juror.spec) for panel in panels.values() for juror in panel.jurors}
        context = JudgeContext(
            runner.client, GenerationConfig(min_turns=2, max_turns=1000), judge_model=spec.model if spec else None,
            panels=panels, clients=clients, embedder=embedder,
        )  # fmt: skip
        for name in experts:
            if name == "quality":
                figure, rows = _quality(runner, context, critics, pairs, show_progress=show_progress, spc=spc)
                figures.append(figure)
                items += rows
                continue
            config = critics.settings_of(name)
            verdicts = runner.gather(
                (verdict_of(name, item.record, config, context) for item in labelled),
                desc=name,
                show_progress=show_progress,
            )
            figures.append(expert_figures(name, labelled, verdicts, spc=spc))
            items += per_item_rows(name, labelled, verdicts)
            if name == "learned" and spc and pairs:
                figure, rows = _against_shuffled(runner, context, config, labelled, verdicts, pairs, show_progress)
                figures.append(figure)
                items += rows
    return Evaluation(figures, items)


def _against_shuffled(
    runner: JsonTaskRunner,
    context: JudgeContext,
    config: Any,
    labelled: list[Labelled],
    verdicts: list[Verdict],
    pairs: list[tuple[DialogueRecord, DialogueRecord]],
    show_progress: bool,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The learned critic's figures for originals against their turn-shuffled copies: it exists to
    tell a conversation from its lines out of order, which a persona swap does not test."""
    shuffled = [Labelled(b, {"faithful": False}) for _, b in pairs]
    judged = runner.gather(
        (verdict_of("learned", item.record, config, context) for item in shuffled),
        desc="learned (shuffled)",
        show_progress=show_progress,
    )
    originals = [(item, v) for item, v in zip(labelled, verdicts) if item.labels.get("faithful")]
    both = [item for item, _ in originals] + shuffled
    figure = expert_figures("learned", both, [v for _, v in originals] + judged, spc=True)
    figure["measure"] = "original vs turn-shuffled"
    return figure, per_item_rows("learned", shuffled, judged)


async def _every_juror(
    pair: tuple[DialogueRecord, DialogueRecord], critics: CriticsConfig, context: JudgeContext, seed: int
) -> tuple[list[int] | None, int]:
    """Every juror's policy winners for one (better, worse) pair, as one list of votes."""
    compared = await asyncio.gather(
        *(compare((0, pair[0]), (1, pair[1]), critics.quality, seat, seed) for seat in context.seats("quality"))
    )
    votes = [winner for winners, _ in compared if winners is not None for winner in winners.values()]
    return votes or None, sum(tokens for _, tokens in compared)


def _quality(
    runner: JsonTaskRunner,
    context: JudgeContext,
    critics: CriticsConfig,
    pairs: list[tuple[DialogueRecord, DialogueRecord]],
    *,
    show_progress: bool,
    spc: bool,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Pairwise accuracy of the quality critic: the first of each pair should win most policy votes."""
    outcomes = runner.gather(
        (_every_juror(pair, critics, context, seed) for seed, pair in enumerate(pairs)),
        desc="quality",
        show_progress=show_progress,
    )
    answered = [votes for votes, _ in outcomes if votes is not None]
    right = sum(sum(vote == 0 for vote in votes) > len(votes) / 2 for votes in answered)
    figure = {
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
    rows = [
        {
            "expert": "quality",
            "id": f"{a.id} vs {b.id}",
            "votes": votes,  # each juror's policy winners: 0 for the first of the pair, 1 for the second
            "answered": votes is not None,
        }
        for (a, b), (votes, _) in zip(pairs, outcomes)
    ]
    return figure, rows


@dataclass
class EvalRequest:
    """What `critics eval` was asked: which critics, on which data, with which settings and model."""

    experts: list[str]
    data: str
    count: int
    seed: int
    recipe: Recipe | None = None
    llm: LLMConfig | None = None
    judge: JudgeLLMConfig | None = None  # --judge-base-url / --judge-model, over the recipe's critics.llm
    show_progress: bool = True


def critic_names_asked(text: str) -> list[str]:
    """The critics named in ``--experts`` (comma separated), checked against the registry."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    known = (*critic_specs(), "quality")
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise RecipeError(
            f"unknown expert(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(known)}",
            field="--experts",
        )
    return names


def held_out_of(config: LearnedCriticConfig, path: Path) -> Callable[[str], bool] | None:
    """When ``path`` is what the learned critic was trained on, the test of its held-out conversations:
    a critic is measured on conversations it did not learn from."""
    critic = loaded(config)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not any(source.get("sha256") == digest for source in critic.meta.get("training", {}).get("sources", [])):
        return None
    return lambda conversation: part_of(conversation) == "test"


def measure_critics(request: EvalRequest) -> tuple[dict[str, Any], Evaluation]:
    """The report `critics eval` prints and writes, and every item's verdict. Fails (one line)
    when an expert's judge left most items unanswered."""
    path = resolve_data_path(request.data, Path.cwd())
    first_line = path.read_text(encoding="utf-8").split("\n", 1)[0] if path.is_file() else ""
    rated = path.suffix == ".jsonl" and '"personas"' in first_line
    rng = random.Random(request.seed)
    critics = request.recipe.critics if request.recipe else CriticsConfig()
    only = None
    if rated:
        labelled = load_rated_jsonl(path)
        pairs = rated_pairs(labelled, request.count, rng) if "quality" in request.experts else []
    else:
        only = held_out_of(critics.learned, path) if "learned" in request.experts else None
        labelled, pairs = spc_eval_set(path, request.count, rng, only)
    for name in request.experts:
        measurable(name, labelled, pairs, request.data)
    if request.judge is not None:
        critics = critics.model_copy(update={"llm": request.judge.over(critics.llm)})
    llm = request.llm or (request.recipe.llm if request.recipe else LLMConfig())
    keys = ApiKeys()
    with ExitStack() as stack:
        spec = stack.enter_context(open_endpoint(llm)) if needs_generator(critics, request.experts) else None
        panels = judge_panels(critics, llm, spec, keys, names=request.experts)
        embedder = None
        if "grounding" in request.experts:
            embedder = open_embedder(
                critics.grounding.embeddings,
                spec.base_url if spec else next(iter(llm.base_urls), None),
                keys.get(critics.grounding.embeddings.key_env(llm.api_key_env)),
            )
            stack.callback(embedder.close)
        evaluation = evaluate(
            spec, keys, request.experts, labelled, pairs, critics=critics, panels=panels, embedder=embedder,
            show_progress=request.show_progress, spc=not rated,
        )  # fmt: skip
    report = {
        "data": request.data,
        "seed": request.seed,
        "dialogues": len(labelled),
        "pairs": len(pairs),
        **endpoint_provenance(spec),
        "judges": {name: [juror.spec.model for juror in panel.jurors] for name, panel in panels.items()},
        **({"embedder": embedder.name} if embedder else {}),
        **({"learned_held_out": only is not None} if not rated and "learned" in request.experts else {}),
        "experts": evaluation.figures,
    }
    return report, evaluation


def write_items(path: Path, evaluation: Evaluation) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in evaluation.items), encoding="utf-8")


def report_table(figures: list[dict[str, Any]]) -> list[str]:
    def show(value: object, digits: str = ".2f") -> str:
        return "n/a" if value is None else format(value, digits)

    lines = [
        f"{'expert':<14}{'examples':>9}{'answered':>9}{'accuracy':>10}{'AUROC':>8}{'spearman':>10}{'tokens':>9}  measured on"
    ]
    for f in figures:
        lines.append(
            f"{f['expert']:<14}{f['examples']:>9}{f['answered']:>9}{show(f['accuracy']):>10}{show(f['auroc']):>8}"
            f"{show(f['spearman']):>10}{f['tokens']:>9}  {f['measure']}"
        )
    return lines

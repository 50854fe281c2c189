"""What a recipe will ask of its endpoints, before it runs: calls, tokens and cost, per endpoint.

Nothing here calls a model. The casts are planned and the generation prompts built for real (as
the run will build them, on a seeded sample of the casts for a large run) and counted with the
model's tokenizer when it is here. What cannot be
known before the dialogues exist comes from the dataset folder's latest version when there is one
(the share of dialogues each critic judged, the tokens per call); without one the plan gives the
worst case: every dialogue reaches every critic and every reply is as long as ``max_tokens``.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import Counter
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from factory.critics.base import JudgeContext
from factory.critics.quality import select_best
from factory.critics.registry import critic_spec, verdict_of
from factory.dataset.folder import DatasetFolder
from factory.dataset.manifest import Manifest
from factory.engine.rounds import modes_of, plan_rows, planned_dialogues, round_shares
from factory.errors import LLMCallError
from factory.generation.role_play.prompts import standing_prompt_tokens
from factory.llm.port import ChatResult
from factory.llm.spec import EndpointSpec, json_response_format
from factory.llm.tokens import TokenCounter, counter_for, sampled_total
from factory.personas import plan
from factory.personas.casting import Cast, cells_of, quota_cells
from factory.plan.report import RunPlan, StepPlan
from factory.recipes import Recipe
from factory.recipes.critics import LLMCriticConfig, judges_of, needs_llm
from factory.recipes.llm import PricingConfig
from factory.records import DialogueRecord, Turn

ROLE_PLAY_ASK_TOKENS = 200  # a moderator's or stop rule's JSON answer (generation.role_play)
SCENARIO_TOKENS = 80
PROMPT_SAMPLE = 500  # the casts whose SPC prompts are built and counted; the rest are told from them


def plan_run(
    recipe: Recipe,
    previous: Manifest | None = None,
    previous_version: str | None = None,
    casts: list[Cast] | None = None,
) -> RunPlan:
    """The calls, tokens and cost of running ``recipe``; ``previous`` is the manifest of the
    version the expected figures are measured on (the folder's latest), if any; ``casts`` the
    run's, when it has planned them already."""
    casts = plan(recipe).casts if casts is None else casts
    counter = counter_for(_tokenizer(recipe))
    stats = previous.stats if previous and previous.stats else None
    generation = recipe.generation
    result = RunPlan(
        recipe=recipe.name,
        casts=len(casts),
        candidates=generation.candidates,
        dialogues=planned_dialogues(recipe, casts),
        rounds=len(round_shares(casts, generation.rounds)) if casts else 0,
        tokenizer=counter,
        measured_on=previous_version if stats else None,
        top_up_casts=top_up_bound(recipe, casts),
    )
    result.steps.append(_generation(recipe, casts, counter, stats))
    if not casts:
        return result
    dialogue_tokens = (result.steps[0].worst_completion_tokens or 0.0) / result.dialogues
    stand_in = _stand_in(recipe, casts[0], dialogue_tokens, counter)
    for name, config in recipe.critics.cascade():
        if needs_llm(name) and isinstance(config, LLMCriticConfig):
            asked = _asked(partial(verdict_of, name, stand_in, config), recipe)
            result.steps.append(_critic(recipe, name, config, casts, counter, stats, asked))
    if recipe.critics.quality.enabled and generation.candidates > 1:
        pair = [stand_in, stand_in.model_copy(deep=True, update={"id": stand_in.id + "-b"})]
        asked = _asked(partial(select_best, pair, recipe.critics.quality), recipe)
        result.steps.append(_quality(recipe, casts, stats, counter, asked))
    return result


def top_up_bound(recipe: Recipe, casts: list[Cast]) -> int:
    """The most casts accepted_per_cell's top-up rounds can add: each gives one short cell one
    more try, and a cell has at most ``attempts_per_cell`` in all."""
    if not recipe.casting.accepted_per_cell:
        return 0
    cells = quota_cells(recipe.casting.quota)
    initial = Counter(cell for cast in casts for cell in cells_of(cast.speakers, cells))
    return sum(max(0, recipe.casting.attempts_per_cell - initial[cell]) for cell in cells)


class _Recorder:
    """A chat port that keeps the prompts it is given and answers none: critics build their real
    prompts for it, and stop at the first unanswered call."""

    def __init__(self) -> None:
        self.prompts: list[list[dict[str, str]]] = []

    async def chat(self, messages: list[dict[str, str]], **_: Any) -> ChatResult:
        self.prompts.append(messages)
        raise LLMCallError("planning: no model is asked")

    def response_format(self, name: str, schema: dict[str, Any]) -> dict[str, Any]:
        return json_response_format("json_schema", name, schema)


def _asked(judging: Any, recipe: Recipe) -> list[dict[str, str]]:
    """The first prompt a critic's own code sends (its instructions, examples and the dialogue)."""
    recorder = _Recorder()
    asyncio.run(judging(JudgeContext(recorder, recipe.generation)))
    return recorder.prompts[0] if recorder.prompts else []


def _stand_in(recipe: Recipe, cast: Cast, tokens: float, counter: TokenCounter) -> DialogueRecord:
    """The first cast's dialogue as the critics will see it, its turns filled to ``tokens`` in all."""
    spec = EndpointSpec.of(recipe.llm, ("http://plan.invalid/v1",), _generator_model(recipe), "openai-compatible")
    record = plan_rows(recipe, [cast], spec)[0][0]
    turns = recipe.generation.max_turns
    per_word = max(counter.count("word " * 100) / 100, 0.01)
    words = max(1, round(tokens / turns / per_word))
    record.turns = [
        Turn(speaker=cast.speakers[index % len(cast.speakers)].id, text=" ".join(["word"] * words))
        for index in range(turns)
    ]
    return record


def latest_version(folder: DatasetFolder) -> tuple[Manifest | None, str | None]:
    """The manifest and name of the folder's latest version, which the expected case is measured on."""
    version = folder.current_version() if folder.is_repository() else None
    return (folder.read_manifest(version) if version else None), version


def _tokenizer(recipe: Recipe) -> str | Path | None:
    if recipe.llm.tokenizer:
        return recipe.resolve_path(recipe.llm.tokenizer)
    if recipe.llm.base_url is None:  # the embedded model: its GGUF holds its vocabulary
        from factory.errors import EmbeddedServerError
        from factory.llm.embedded import embedded_model_path

        try:
            return embedded_model_path()
        except EmbeddedServerError:
            return None
    return None


def _generator_model(recipe: Recipe) -> str:
    if recipe.llm.model:
        return recipe.llm.model
    if recipe.llm.base_url is None:
        from factory.llm.embedded import EMBEDDED_MODEL_ALIAS

        return EMBEDDED_MODEL_ALIAS
    return "(the endpoint's model)"


def _critic_share(stats: dict[str, Any] | None, critic: str) -> float | None:
    """The share of an earlier version's dialogues that reached ``critic``."""
    if not stats or not stats.get("generated"):
        return None
    judged = next((c["judged"] for c in stats.get("critics", []) if c["critic"] == critic), 0)
    return float(judged) / float(stats["generated"])


def _measured(stats: dict[str, Any] | None, critic: str) -> tuple[float, float] | None:
    """An earlier version's prompt and completion tokens per judgement of ``critic``."""
    found = next((c for c in (stats or {}).get("critics", []) if c["critic"] == critic), None)
    if not found or not found.get("judged"):
        return None
    prompt = found.get("prompt_tokens", 0)
    return prompt / found["judged"], (found["tokens"] - prompt) / found["judged"]


def _generation(recipe: Recipe, casts: list[Cast], counter: TokenCounter, stats: dict[str, Any] | None) -> StepPlan:
    generation = recipe.generation
    dialogues = planned_dialogues(recipe, casts)
    model = _generator_model(recipe)
    measured = None
    if stats and stats.get("generated") and "generation_prompt_tokens" in stats:
        prompt = stats["generation_prompt_tokens"]
        measured = (prompt / stats["generated"], (stats["generation_tokens"] - prompt) / stats["generated"])
    if generation.mode == "spc":
        spec = EndpointSpec.of(recipe.llm, ("http://plan.invalid/v1",), model, "openai-compatible")
        # every round's prompts as the first round's: later rounds show the best dialogues of the
        # round before instead of SPC's, which do not exist yet (a few-shot example is much the same
        # length); counted on a seeded sample of the casts, so a plan of any size takes seconds
        mode_of = modes_of(recipe, casts)

        def counted(chosen: list[int]) -> list[int]:
            rows = plan_rows(recipe, [casts[i] for i in chosen], spec, mode_of=mode_of)
            return [counter.messages(messages) for _, messages in rows[:: generation.candidates]]

        sampled = sampled_total(len(casts), PROMPT_SAMPLE, recipe.seed, counted)
        prompt = sampled.total * generation.candidates
        worst_completion = float(dialogues * generation.max_tokens)
        return StepPlan(
            step="generation", model=model, calls_worst=dialogues, calls_expected=dialogues,
            prompt_tokens=prompt, completion_tokens=measured[1] * dialogues if measured else worst_completion,
            worst_prompt_tokens=prompt, worst_completion_tokens=worst_completion, pricing=recipe.llm.pricing,
            prompt_sample=replace(sampled, total=prompt, half_width=sampled.half_width * generation.candidates),
        )  # fmt: skip
    # role play: prompts grow with the conversation; an earlier version tells their length, and
    # before one, a bound from above: every line of the history at the turn's token limit
    role_play = generation.role_play
    per_turn = 1 + (role_play.turn_order == "moderator") + (role_play.stop.rule != "none")
    scenario = role_play.generate_scenario and not role_play.scenarios
    calls = dialogues * (generation.max_turns * per_turn + scenario)
    completion = dialogues * (
        generation.max_turns * role_play.max_tokens_per_turn
        + generation.max_turns * (per_turn - 1) * ROLE_PLAY_ASK_TOKENS
        + scenario * SCENARIO_TOKENS
    )
    worst_prompt = role_play_prompt_bound(recipe, casts, counter, per_turn) * dialogues
    return StepPlan(
        step="generation", model=model, calls_worst=calls, calls_expected=calls,
        prompt_tokens=measured[0] * dialogues if measured else worst_prompt,
        completion_tokens=measured[1] * dialogues if measured else float(completion),
        worst_prompt_tokens=worst_prompt, worst_completion_tokens=float(completion), pricing=recipe.llm.pricing,
    )  # fmt: skip


SAMPLED_CASTS = 8  # the casts whose speakers' standing prompts are counted for the role-play bound
LINE_OVERHEAD_TOKENS = 8  # a chat message's role and separators, and a speaker's name


def role_play_prompt_bound(recipe: Recipe, casts: list[Cast], counter: TokenCounter, calls_per_turn: int) -> float:
    """Prompt tokens one role-play dialogue takes at most: each of its calls (a turn, and a
    moderator's or stop rule's question) sends the speaker's standing prompt, counted on a seeded
    sample of the run's casts, and the conversation so far, each line at the turn's token limit."""
    generation, role_play = recipe.generation, recipe.generation.role_play
    spec = EndpointSpec.of(recipe.llm, ("http://plan.invalid/v1",), _generator_model(recipe), "openai-compatible")
    sample = random.Random(recipe.seed).sample(casts, min(SAMPLED_CASTS, len(casts)))
    records = [record for record, _ in plan_rows(recipe, sample, spec)]
    standing = max((max(standing_prompt_tokens(record, counter.messages)) for record in records), default=0)
    turns, line = generation.max_turns, role_play.max_tokens_per_turn + LINE_OVERHEAD_TOKENS
    history = line * turns * (turns - 1) / 2  # the lines before each turn, summed over the turns
    return float(calls_per_turn * (turns * standing + history))


def _jurors(recipe: Recipe, name: str) -> tuple[int, str, PricingConfig | None]:
    """How many judges a critic has, the first one's model, and their price (the first's)."""
    judges, _ = judges_of(recipe.critics, name)
    first = judges[0]
    on_generator = not first.base_urls
    model = first.model or (_generator_model(recipe) if on_generator else "(the judge endpoint's model)")
    pricing = first.pricing or (recipe.llm.pricing if on_generator else None)
    return len(judges), model + (f" +{len(judges) - 1}" if len(judges) > 1 else ""), pricing


def _critic(
    recipe: Recipe,
    name: str,
    config: LLMCriticConfig,
    casts: list[Cast],
    counter: TokenCounter,
    stats: dict[str, Any] | None,
    asked: list[dict[str, str]],
) -> StepPlan:
    jurors, model, pricing = _jurors(recipe, name)
    per_cast = [critic_spec(name).calls(cast.speakers) * recipe.generation.candidates for cast in casts]
    worst = sum(per_cast) * jurors
    share = _critic_share(stats, name)
    expected = worst * share if share is not None else float(worst)
    measured = _measured(stats, name)
    # the worst case: every call of this critic as long as its prompt on a dialogue of max_tokens
    worst_prompt = float(worst * counter.messages(asked))
    worst_completion = float(worst * config.max_tokens)
    if measured and share is not None:
        judgements = planned_dialogues(recipe, casts) * share  # a judgement: every call of every juror on one dialogue
        prompt, completion = judgements * measured[0], judgements * measured[1]
    else:
        prompt, completion = worst_prompt, worst_completion
    return StepPlan(
        step=name, model=model, calls_worst=worst, calls_expected=expected, prompt_tokens=prompt,
        completion_tokens=completion, worst_prompt_tokens=worst_prompt, worst_completion_tokens=worst_completion,
        pricing=pricing,
    )  # fmt: skip


def _quality(
    recipe: Recipe, casts: list[Cast], stats: dict[str, Any] | None, counter: TokenCounter, asked: list[dict[str, str]]
) -> StepPlan:
    """Best-of-N: every pair of a cast's candidates that passed the cascade, by every juror."""
    jurors, model, pricing = _jurors(recipe, "quality")
    candidates = recipe.generation.candidates
    worst = len(casts) * math.comb(candidates, 2) * jurors
    share = _critic_share(stats, "quality")
    # the candidates left per cast, as if the earlier version's survivors were spread evenly
    left = candidates * share if share is not None else float(candidates)
    expected = len(casts) * left * (left - 1) / 2 * jurors if left > 1 else 0.0
    max_tokens = recipe.critics.quality.max_tokens
    measured = _measured(stats, "quality")
    worst_prompt = float(worst * counter.messages(asked))
    if measured and share:
        # a version's quality tokens are its comparisons', shared between the pair compared
        judged = len(casts) * candidates * share
        prompt, completion = measured[0] * judged, measured[1] * judged
    else:
        prompt, completion = expected * counter.messages(asked), expected * max_tokens
    return StepPlan(
        step="quality", model=model, calls_worst=worst, calls_expected=expected, prompt_tokens=prompt,
        completion_tokens=completion, worst_prompt_tokens=worst_prompt, worst_completion_tokens=float(worst * max_tokens),
        pricing=pricing,
    )  # fmt: skip

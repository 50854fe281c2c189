"""The critics by name: every per-dialogue critic's spec, built in or a plugin's.

A critic is declared once, as a :class:`factory.recipes.extensions.CriticSpec` in its own module
(its settings class is a field of :class:`factory.recipes.critics.CriticsConfig`, or, for a plugin,
a key beside them). The engine's cascade, ``plan``, ``critics eval``, the card and the distilabel
steps all read the specs through :func:`critic_spec`. Quality (best-of-N, a cast at a time) and
dedup (across the run) are decided in :mod:`factory.critics.quality` and
:mod:`factory.critics.acceptance`: they need more than one dialogue at a time.
"""

from __future__ import annotations

import asyncio
from functools import cache
from typing import Any

from factory.critics import apc, attribution, faithfulness, grounding, heuristic, portrayal, toxicity
from factory.critics.base import JudgeContext
from factory.critics.jury import aggregate_verdicts
from factory.critics.learned import critic as learned
from factory.errors import PluginError
from factory.recipes.critics import CriticsConfig, critic_names, needs_llm, plugin_critics
from factory.recipes.extensions import CriticSpec
from factory.recipes.llm import EmbeddingsConfig
from factory.records import DialogueRecord, Verdict

BUILT_IN: tuple[CriticSpec, ...] = tuple(
    module.SPEC for module in (heuristic, learned, grounding, faithfulness, apc, toxicity, portrayal, attribution)
)


@cache
def critic_specs() -> dict[str, CriticSpec]:
    """Every per-dialogue critic's spec by name, in the default cascade order (plugins last)."""
    specs = {spec.name: spec for spec in BUILT_IN}
    if len(specs) != len(BUILT_IN):  # pragma: no cover - a registration error
        raise PluginError("two built-in critics share a name")
    specs.update(plugin_critics())
    if list(specs) != list(critic_names("dialogue")):  # pragma: no cover - a registration error
        raise PluginError(f"critics declared without a judge, or judges without settings: {sorted(specs)}")
    return specs


def critic_spec(name: str) -> CriticSpec:
    """The spec of the per-dialogue critic called ``name``; an unknown name is one line listing them."""
    specs = critic_specs()
    if name not in specs:
        raise PluginError(f"unknown critic {name!r}; the per-dialogue critics are {', '.join(specs)}")
    return specs[name]


def embedding_settings(critics: CriticsConfig) -> EmbeddingsConfig | None:
    """The sentence embedder the cascade's embedding critics share: the first one's ``embeddings``."""
    for name, config in critics.cascade():
        embeddings = getattr(config, "embeddings", None)
        if critic_spec(name).embeds and isinstance(embeddings, EmbeddingsConfig):
            return embeddings
    return None


async def cascade_verdict(name: str, record: DialogueRecord, critics: CriticsConfig, context: JudgeContext) -> Verdict:
    """The verdict of ``name`` in the cascade: an LLM critic the learned critic was sure enough for
    is not asked (:func:`factory.critics.learned.critic.decided_for`); every other is judged."""
    if needs_llm(name):
        decided = learned.decided_for(record, name, critics.learned)
        if decided is not None:
            return decided
    return await verdict_of(name, record, critics.settings_of(name), context)


async def verdict_of(name: str, record: DialogueRecord, config: Any, context: JudgeContext) -> Verdict:
    """The critic's verdict on ``record``: its judge's, or its jury's aggregate (each juror's kept)."""
    judge = critic_spec(name).judge
    if not needs_llm(name):
        return await judge(record, config, context)
    seats = context.seats(name)
    verdicts = await asyncio.gather(*(judge(record, config, seat) for seat in seats))
    for verdict, seat in zip(verdicts, seats):
        verdict.judge = seat.judge_model
        verdict.prompt_tokens = seat.meter.prompt_tokens if seat.meter else 0
    if len(verdicts) == 1:
        return verdicts[0]
    return aggregate_verdicts(name, list(verdicts), context.aggregate(name), getattr(config, "threshold", 0.5))

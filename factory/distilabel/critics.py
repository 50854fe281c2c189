"""The factory's critics as distilabel steps: the same judge functions the engine runs, on rows
with ``personas`` and ``conversation`` columns, each appending its verdict to ``verdicts``.

    FaithfulnessCritic(llm=OpenAILLM(model=..., base_url=...), input_mappings={"conversation": "messages"})

An LLM critic asks the step's ``llm`` (any distilabel LLM); the heuristic needs none, grounding
embeds with the critic's ``embeddings`` settings.
"""

# No ``from __future__ import annotations``: distilabel reads ``process``'s annotations at run time to
# find its ``StepInput``, and a string is not one.
import asyncio
from typing import Any, ClassVar

from distilabel.steps import StepInput
from distilabel.typing import StepColumns, StepOutput
from pydantic import Field, PrivateAttr

from factory.critics.base import JudgeContext
from factory.critics.registry import verdict_of
from factory.distilabel.base import AsyncStep, LLMStep
from factory.distilabel.columns import record_of
from factory.distilabel.port import DistilabelChat
from factory.llm.embeddings import Embedder, open_embedder
from factory.llm.keys import DEFAULT_KEY_ENV, ApiKeys
from factory.recipes.critics import CriticsConfig
from factory.recipes.generation import GenerationConfig


class CriticStep(AsyncStep):
    """One factory critic; ``settings`` are its recipe settings (``critics.<name>`` in a recipe)."""

    critic: ClassVar[str] = ""
    settings: dict[str, Any] = Field(default_factory=dict, description="The critic's settings, as in a recipe.")
    min_turns: int = Field(default=2, description="The heuristic's fewest turns.")
    max_turns: int = Field(default=1000, description="The heuristic's most turns.")
    gates: list[str] = Field(
        default_factory=list,
        description="Hard gates: a row already failed by one of these critics is passed on unjudged (the cascade).",
    )

    _embedder: Embedder | None = PrivateAttr(default=None)

    @property
    def inputs(self) -> StepColumns:
        return {"personas": True, "conversation": True, "verdicts": False}

    @property
    def outputs(self) -> StepColumns:
        return ["verdicts"]

    def load(self) -> None:
        super().load()
        if self.critic == "grounding":
            embeddings = self._config().embeddings
            self._embedder = open_embedder(embeddings, None, ApiKeys().get(embeddings.key_env(DEFAULT_KEY_ENV)))

    def unload(self) -> None:
        if self._embedder is not None:
            self._embedder.close()
        super().unload()

    def _config(self) -> Any:
        return getattr(CriticsConfig.model_validate({self.critic: {"enabled": True, **self.settings}}), self.critic)

    def _chat(self) -> DistilabelChat | None:
        return None

    def process(self, inputs: StepInput) -> StepOutput:
        config = self._config()
        client = self._chat()
        context = JudgeContext(
            client, GenerationConfig(min_turns=self.min_turns, max_turns=self.max_turns),
            judge_model=client.model if client else None, embedder=self._embedder,
        )  # fmt: skip
        gates = set(self.gates)
        judged = [
            (row, record_of(row, number))
            for number, row in enumerate(inputs)
            if not any(v["critic"] in gates and not v["passed"] for v in row.get("verdicts") or [])
        ]

        async def judge_all() -> list[Any]:
            return list(await asyncio.gather(*(verdict_of(self.critic, r, config, context) for _, r in judged)))

        for (row, _), verdict in zip(judged, self.run_async(judge_all())):
            row["verdicts"] = [*(row.get("verdicts") or []), verdict.model_dump(mode="json")]
        for row in inputs:
            row.setdefault("verdicts", [])
        yield inputs


class LLMCriticStep(CriticStep, LLMStep):
    """A critic that asks a model: ``llm`` is any distilabel LLM."""

    def _chat(self) -> DistilabelChat | None:
        return DistilabelChat(self.llm)


class HeuristicCritic(CriticStep):
    """Turn bounds, alternation, repetition, a profile recited (no model)."""

    critic: ClassVar[str] = "heuristic"


class GroundingCritic(CriticStep):
    """Does each speaker draw on their own persona? (sentence embeddings, no LLM)"""

    critic: ClassVar[str] = "grounding"


class LearnedCritic(CriticStep):
    """The trained critic: does it read as a real persona conversation? (sentence embeddings, a small head)"""

    critic: ClassVar[str] = "learned"


class FaithfulnessCritic(LLMCriticStep):
    """Synthetic-Persona-Chat's expert: does anyone contradict their own profile?"""

    critic: ClassVar[str] = "faithfulness"


class APCCritic(LLMCriticStep):
    """The APC score: relevance and entailment of every persona statement against its speaker."""

    critic: ClassVar[str] = "apc"


class ToxicityCritic(LLMCriticStep):
    critic: ClassVar[str] = "toxicity"


class PortrayalCritic(LLMCriticStep):
    """PsyPlay's back-test: infer each speaker's MBTI type or Big Five levels from the dialogue."""

    critic: ClassVar[str] = "portrayal"


class AttributionCritic(LLMCriticStep):
    """PersonaEval: with speaker labels hidden, who said each turn?"""

    critic: ClassVar[str] = "attribution"


# each critic's step, by the critic's name (build_pipeline lays out a recipe's cascade from it)
CRITIC_STEPS: dict[str, type[CriticStep]] = {
    step.critic: step
    for step in (
        HeuristicCritic,
        GroundingCritic,
        LearnedCritic,
        FaithfulnessCritic,
        APCCritic,
        ToxicityCritic,
        PortrayalCritic,
        AttributionCritic,
    )
}

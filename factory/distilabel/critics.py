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

from distilabel.models.llms.base import LLM, AsyncLLM
from distilabel.steps import Step, StepInput
from distilabel.typing import StepColumns, StepOutput
from pydantic import Field, PrivateAttr

from factory.critics.base import JudgeContext
from factory.critics.registry import verdict_of
from factory.distilabel.columns import record_of
from factory.distilabel.port import DistilabelChat
from factory.llm.embeddings import Embedder, open_embedder
from factory.recipes.critics import CriticsConfig, needs_llm
from factory.recipes.generation import GenerationConfig


class CriticStep(Step):  # type: ignore[misc]  # distilabel's types are not followed (pyproject)
    """One factory critic; ``settings`` are its recipe settings (``critics.<name>`` in a recipe)."""

    critic: ClassVar[str] = ""
    llm: LLM | None = None
    settings: dict[str, Any] = Field(default_factory=dict, description="The critic's settings, as in a recipe.")
    min_turns: int = Field(default=2, description="The heuristic's fewest turns.")
    max_turns: int = Field(default=1000, description="The heuristic's most turns.")

    _embedder: Embedder | None = PrivateAttr(default=None)
    _loop: asyncio.AbstractEventLoop | None = PrivateAttr(default=None)

    @property
    def inputs(self) -> StepColumns:
        return {"personas": True, "conversation": True, "verdicts": False}

    @property
    def outputs(self) -> StepColumns:
        return ["verdicts"]

    def load(self) -> None:
        super().load()
        if needs_llm(self.critic):
            if self.llm is None:
                raise ValueError(f"the {self.critic} critic step needs an llm")
            self.llm.load()
        config = self._config()
        if self.critic == "grounding":
            self._embedder = open_embedder(config.embeddings, getattr(self.llm, "base_url", None), None)

    def unload(self) -> None:
        if self._embedder is not None:
            self._embedder.close()
        if self.llm is not None:
            close_async_client(self.llm)
            self.llm.unload()
        if self._loop is not None:
            self._loop.close()
            self._loop = None
        super().unload()

    def _config(self) -> Any:
        return getattr(CriticsConfig.model_validate({self.critic: {"enabled": True, **self.settings}}), self.critic)

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        # an async LLM's client belongs to its loop; otherwise the step keeps one of its own
        if isinstance(self.llm, AsyncLLM):
            loop: asyncio.AbstractEventLoop = self.llm.event_loop
            return loop
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop

    def process(self, inputs: StepInput) -> StepOutput:
        config = self._config()
        client = DistilabelChat(self.llm) if self.llm is not None and needs_llm(self.critic) else None
        context = JudgeContext(
            client, GenerationConfig(min_turns=self.min_turns, max_turns=self.max_turns),
            judge_model=client.model if client else None, embedder=self._embedder,
        )  # fmt: skip
        records = [record_of(row, number) for number, row in enumerate(inputs)]

        async def judge_all() -> list[Any]:
            return list(await asyncio.gather(*(verdict_of(self.critic, r, config, context) for r in records)))

        for row, verdict in zip(inputs, self._event_loop().run_until_complete(judge_all())):
            row["verdicts"] = [*(row.get("verdicts") or []), verdict.model_dump(mode="json")]
        yield inputs


def close_async_client(llm: LLM) -> None:
    """Close an async LLM's HTTP client on its own loop. distilabel's ``unload`` leaves it open, and
    its connections then outlive the loop they belong to."""
    client = getattr(llm, "_aclient", None)
    close = getattr(client, "close", None)
    if isinstance(llm, AsyncLLM) and close is not None and asyncio.iscoroutinefunction(close):
        llm.event_loop.run_until_complete(close())


class HeuristicCritic(CriticStep):
    """Turn bounds, alternation, repetition, a profile recited (no model)."""

    critic: ClassVar[str] = "heuristic"


class GroundingCritic(CriticStep):
    """Does each speaker draw on their own persona? (sentence embeddings, no LLM)"""

    critic: ClassVar[str] = "grounding"


class FaithfulnessCritic(CriticStep):
    """Synthetic-Persona-Chat's expert: does anyone contradict their own profile?"""

    critic: ClassVar[str] = "faithfulness"


class APCCritic(CriticStep):
    """The APC score: relevance and entailment of every persona statement against its speaker."""

    critic: ClassVar[str] = "apc"


class ToxicityCritic(CriticStep):
    critic: ClassVar[str] = "toxicity"


class PortrayalCritic(CriticStep):
    """PsyPlay's back-test: infer each speaker's MBTI type or Big Five levels from the dialogue."""

    critic: ClassVar[str] = "portrayal"


class AttributionCritic(CriticStep):
    """PersonaEval: with speaker labels hidden, who said each turn?"""

    critic: ClassVar[str] = "attribution"

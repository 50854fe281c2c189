"""The factory's critics as distilabel steps: the same judge functions the engine runs, on rows
with ``personas`` and ``conversation`` columns, each appending its verdict to ``verdicts``.

    FaithfulnessCritic(llm=OpenAILLM(model=..., base_url=...), input_mappings={"conversation": "messages"})

An LLM critic asks the step's ``llm`` (any distilabel LLM); the heuristic needs none, grounding
embeds with the critic's ``embeddings`` settings. Every critic's step is made from its spec (a
plugin's too), named after it: ``heuristic`` is ``HeuristicCritic``, ``my_check`` ``MyCheckCritic``.
"""

# No ``from __future__ import annotations``: distilabel reads ``process``'s annotations at run time to
# find its ``StepInput``, and a string is not one.
import asyncio
from typing import Any, ClassVar

from distilabel.steps import StepInput
from distilabel.typing import StepColumns, StepOutput
from pydantic import Field, PrivateAttr

from factory.critics.base import JudgeContext
from factory.critics.registry import critic_spec, critic_specs, verdict_of
from factory.distilabel.base import AsyncStep, LLMStep
from factory.distilabel.columns import record_of
from factory.distilabel.port import DistilabelChat
from factory.llm.embeddings import Embedder, open_embedder
from factory.llm.keys import DEFAULT_KEY_ENV, ApiKeys
from factory.recipes.critics import CriticsConfig, needs_llm
from factory.recipes.extensions import CriticSpec
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
        if critic_spec(self.critic).embeds:
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


def step_name(critic: str) -> str:
    """The step class's name: the critic's words capitalised (``apc`` stays an acronym)."""
    return "APCCritic" if critic == "apc" else "".join(word.title() for word in critic.split("_")) + "Critic"


def _step_class(spec: CriticSpec) -> type[CriticStep]:
    base = LLMCriticStep if needs_llm(spec.name) else CriticStep
    # made in this module, under its own name here, so a pipeline.yaml naming it loads it back
    return type(step_name(spec.name), (base,), {"__doc__": spec.summary, "__module__": __name__, "critic": spec.name})


# each critic's step, by the critic's name (build_pipeline lays out a recipe's cascade from it)
CRITIC_STEPS: dict[str, type[CriticStep]] = {name: _step_class(spec) for name, spec in critic_specs().items()}
globals().update({step.__name__: step for step in CRITIC_STEPS.values()})


def _llm_step(critic: str) -> type[LLMCriticStep]:
    step = CRITIC_STEPS[critic]
    assert issubclass(step, LLMCriticStep)
    return step


HeuristicCritic = CRITIC_STEPS["heuristic"]
GroundingCritic = CRITIC_STEPS["grounding"]
LearnedCritic = CRITIC_STEPS["learned"]
FaithfulnessCritic = _llm_step("faithfulness")
APCCritic = _llm_step("apc")
ToxicityCritic = _llm_step("toxicity")
PortrayalCritic = _llm_step("portrayal")
AttributionCritic = _llm_step("attribution")

"""What every expert critic shares: how it asks the LLM, and how the cascade decides who runs.

An expert is an async function ``judge(record, config, context) -> Verdict``. The same function
runs in the engine (on Ray workers or in process), and directly in ``critics eval``, so what is
measured is what filters the data.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from factory.errors import PipelineError
from factory.llm.ask import ask_json
from factory.llm.embeddings import Embedder
from factory.llm.port import ChatPort
from factory.llm.spec import EndpointSpec
from factory.recipes.critics import CriticsConfig, LLMCriticConfig
from factory.recipes.generation import GenerationConfig
from factory.recipes.judges import Aggregate
from factory.records import FORMAT, DialogueRecord, PersonaProfile, Turn, Verdict, speaker_label


@dataclass(frozen=True)
class Juror:
    """One judge of a critic: where it is (with its model) and at what temperature it judges."""

    spec: EndpointSpec
    temperature: float


@dataclass(frozen=True)
class JudgePanel:
    """A critic's judges: one, or a jury whose verdicts are aggregated."""

    jurors: tuple[Juror, ...]
    aggregate: Aggregate = "majority"


@dataclass
class PromptMeter:
    """The prompt tokens one judgement spent (verdicts carry their total; prices tell the two apart)."""

    prompt_tokens: int = 0


@dataclass
class JudgeContext:
    """What a judge is given besides the dialogue: a client of its model (``judge_model``), the
    generation settings, and, to find each critic's own judges, their panels and clients."""

    client: ChatPort | None
    generation: GenerationConfig
    judge_model: str | None = None
    temperature: float | None = None  # the juror's; unset, the critic's own
    panels: dict[str, JudgePanel] = field(default_factory=dict)
    clients: Mapping[EndpointSpec, ChatPort] = field(default_factory=dict)
    embedder: Embedder | None = None
    meter: PromptMeter | None = None

    def seats(self, critic: str) -> list[JudgeContext]:
        """A context per judge of ``critic`` (its jurors', or this one's when it has no panel),
        each with a meter of its own."""
        panel = self.panels.get(critic)
        if panel is None:
            return [replace(self, meter=PromptMeter())]
        return [
            replace(
                self,
                client=self.clients[juror.spec],
                judge_model=juror.spec.model,
                temperature=juror.temperature,
                meter=PromptMeter(),
            )
            for juror in panel.jurors
        ]

    def aggregate(self, critic: str) -> Aggregate:
        panel = self.panels.get(critic)
        return panel.aggregate if panel else "majority"

    async def ask(
        self,
        messages: list[dict[str, str]],
        name: str,
        schema: dict[str, Any],
        config: LLMCriticConfig,
        seed: int | None,
    ) -> tuple[dict[str, Any] | None, str | None, int]:
        """(answer, None, tokens), or (None, why not, tokens)."""
        if self.client is None:
            raise PipelineError("this critic needs an LLM endpoint, and none was given")
        temperature = config.temperature if self.temperature is None else self.temperature
        answer = await ask_json(
            self.client, messages, name=name, schema=schema, temperature=temperature,
            max_tokens=config.max_tokens, seed=seed,
        )  # fmt: skip
        if answer.call_error is not None:
            return None, f"judge call failed: {answer.call_error}", 0
        if self.meter is not None:
            self.meter.prompt_tokens += answer.usage.prompt_tokens
        tokens = answer.usage.total_tokens
        if answer.data is None:
            preview = answer.text.strip().replace("\n", " ")[:120]
            return None, f"unparsable judge reply ({answer.error}): {preview!r}", tokens
        return answer.data, None, tokens


Judge = Callable[[DialogueRecord, Any, JudgeContext], Coroutine[Any, Any, Verdict]]


def passed_so_far(record: DialogueRecord) -> bool:
    """Judged, and passed by every verdict it has."""
    return bool(record.verdicts) and all(verdict.passed for verdict in record.verdicts)


def hard_gates(critics: CriticsConfig) -> set[str]:
    return {FORMAT} | {name for name, config in critics.cascade() if config.hard}


def blocked_by(record: DialogueRecord, gates: set[str]) -> str | None:
    """The hard gate the record failed, if any: later experts do not see it."""
    return next((v.critic for v in record.verdicts if not v.passed and v.critic in gates), None)


def labelled_transcript(speakers: list[PersonaProfile], turns: list[Turn]) -> list[str]:
    label = {persona.id: speaker_label(index) for index, persona in enumerate(speakers, start=1)}
    return [f"{label.get(turn.speaker, turn.speaker)}: {turn.text}" for turn in turns]


def profile_lines(profiles: list[list[str]]) -> list[str]:
    """``User N Profile:`` blocks, one per speaker's statements."""
    lines = []
    for index, statements in enumerate(profiles, start=1):
        lines.append(f"{speaker_label(index)} Profile:")
        lines.extend(f"- {statement}" for statement in statements)
    return lines


def no_turns(name: str) -> Verdict:
    return Verdict(critic=name, passed=False, score=None, reason="not judged: the dialogue has no turns")


def answer_error(name: str, error: str, tokens: int) -> Verdict:
    return Verdict(critic=name, passed=False, score=None, reason=error, tokens=tokens, answered=False)

"""How dialogues are written: one call per conversation (SPC), or turn by turn (role-play)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from factory.recipes.base import MAY_CHANGE_ON_RESUME, _Config
from factory.recipes.llm import AgentLLMConfig
from factory.settings import BUILTIN_PREFIX


class PersonaMemoryConfig(_Config):
    """CharacterChat's persona memory: before each turn, the profile aspect that fits the last
    utterance is put in front of the agent."""

    enabled: bool = True
    recent: int = Field(
        default=2, ge=0, le=20, description="An aspect the agent recalled in its last N turns is left out."
    )
    min_overlap: float = Field(
        default=0.15, gt=0, le=1, description="Share of an aspect's content words the utterance must contain."
    )
    talking_points: bool = Field(
        default=False,
        description="When no aspect fits the last utterance, give the agent a talking point instead: the next "
        "statement of its own persona it has neither been given nor said yet (persona planners' pattern for "
        "small generators, which otherwise drift to their partner's topic).",
    )


class StopConfig(_Config):
    """When a role-play ends before ``max_turns`` (then ``closing_turns`` follow)."""

    rule: Literal["none", "sentiment", "goal"] = Field(
        default="none",
        description="sentiment: the seeker's (the user's, or speaker 1's) sentiment stays at `threshold` or above "
        "for `patience` of their turns (CharacterChat); goal: a judge finds `goal` met.",
    )
    threshold: int = Field(default=4, ge=1, le=5, description="Sentiment on 1-5 that counts as high.")
    patience: int = Field(default=2, ge=1, le=20)
    goal: str = Field(
        default="", description="What the chat is for, e.g. 'the user gets a recipe they can cook tonight'."
    )

    @model_validator(mode="after")
    def _goal_named(self) -> StopConfig:
        if self.rule == "goal" and not self.goal.strip():
            raise ValueError("stop.rule goal needs stop.goal: what the chat is for")
        return self


class RolePlayConfig(_Config):
    """Turn-by-turn generation: one agent per speaker, one call per turn."""

    turn_order: Literal["alternate", "round_robin", "moderator"] = Field(
        default="round_robin",
        description="alternate: two speakers take turns; round_robin: each in cast order; moderator: an LLM call "
        "picks who speaks next.",
    )
    scenarios: list[str] = Field(default_factory=list, description="Openings: one is drawn per cast.")
    generate_scenario: bool = Field(default=False, description="Without scenarios: the LLM writes one per cast.")
    memory: PersonaMemoryConfig = Field(default_factory=PersonaMemoryConfig)
    stop: StopConfig = Field(default_factory=StopConfig)
    closing_turns: int = Field(default=2, ge=0, le=4, description="Turns that close a dialogue a stop rule ended.")
    max_tokens_per_turn: int = Field(default=120, ge=8, le=4096)
    line_candidates: int = Field(
        default=1,
        ge=1,
        le=8,
        description="Lines sampled per turn (at once, with different seeds), of which the critics' choice is kept: "
        "of those with the fewest heuristic problems, the best ranked by the learned and grounding critics where they "
        "are on. A "
        "small model writes a clean line far more often in four tries than in one; 1 asks once.",
    )
    user_simulator: bool = Field(
        default=False,
        description="Speakers cast as `user` follow USP's simulator prompt (their profile, then free talk).",
    )
    assistant_persona: bool = Field(
        default=True, description="false: speakers cast as `assistant` are a plain assistant, without their persona."
    )
    agents: dict[str, AgentLLMConfig] = Field(
        default_factory=dict,
        description="Per speaker, by role (user, assistant) or position (speaker1, speaker2, ...): its own model "
        "or endpoint, e.g. a strong assistant and a cheap user simulator.",
    )

    @field_validator("agents")
    @classmethod
    def _agent_keys(cls, value: dict[str, AgentLLMConfig]) -> dict[str, AgentLLMConfig]:
        for key in value:
            if key not in ("user", "assistant") and not re.fullmatch(r"speaker[1-8]", key):
                raise ValueError(
                    f"agents are keyed by role (user, assistant) or position (speaker1..speaker8), not {key!r}"
                )
        return value


class GenerationConfig(_Config):
    mode: Literal["spc", "role_play", "both"] = Field(
        default="spc",
        description="spc: one call writes the whole conversation (Synthetic-Persona-Chat); role_play: one agent per "
        "speaker, one call per turn; both: the casts alternate between the two.",
    )
    role_play: RolePlayConfig = Field(default_factory=RolePlayConfig)
    min_turns: int = Field(default=6, ge=2)
    max_turns: int = Field(default=12, ge=2)
    few_shot: int = Field(default=1, ge=0, le=8, description="SPC conversations shown as examples.")
    few_shot_path: str = f"{BUILTIN_PREFIX}synthetic_persona_chat"
    temperature: float = Field(default=0.8, ge=0, le=2)
    max_tokens: int = Field(default=700, ge=16)
    chunk_size: int = Field(
        json_schema_extra=MAY_CHANGE_ON_RESUME,
        default=8,
        ge=1,
        le=4096,
        description="Dialogues per unit of work: what a worker takes at a time and the journal records at once.",
    )
    candidates: int = Field(default=1, ge=1, le=16, description="Dialogues written per cast; quality keeps the best.")
    rounds: int = Field(
        default=1,
        ge=1,
        le=100,
        description="Generator-Critic rounds; the casts are shared out among them, and each round's best "
        "accepted dialogues become the next round's few-shot examples.",
    )

    @model_validator(mode="after")
    def _bounds(self) -> GenerationConfig:
        if self.min_turns > self.max_turns:
            raise ValueError(f"min_turns ({self.min_turns}) is above max_turns ({self.max_turns})")
        return self

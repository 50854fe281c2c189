"""Recipes and settings.

A recipe is a YAML file validated by :class:`Recipe`; every model forbids unknown keys, so a typo
is an error that names the file and the field, never a silently ignored setting. Environment
variables are read here and nowhere else (:func:`environment_overrides`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from factory.errors import RecipeError
from factory.records import BIG_FIVE_TRAITS, PersonaKind

BUILTIN_PREFIX = "builtin:"

BUILTIN_DATA = {
    "synthetic_persona_chat": "synthetic_persona_chat/Synthetic-Persona-Chat_valid.csv",
    "ipip_neo_120": "big_five/ipip_neo_120.csv",
    "usp": "usp",
}
PACKAGE_DATA_DIR = Path(__file__).parent / "data"


def resolve_data_path(value: str, base_dir: Path | None) -> Path:
    """``builtin:NAME`` is data shipped with the package; other relative paths start at ``base_dir``."""
    if value.startswith(BUILTIN_PREFIX):
        key = value[len(BUILTIN_PREFIX) :]
        if key not in BUILTIN_DATA:
            raise RecipeError(
                f"unknown built-in data '{value}'; choose one of "
                + ", ".join(BUILTIN_PREFIX + name for name in BUILTIN_DATA)
            )
        return PACKAGE_DATA_DIR / BUILTIN_DATA[key]
    path = Path(value).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LLMConfig(_Config):
    """Where the LLM is and how hard to push it. No secrets here: the key comes from
    ``OPENAI_API_KEY`` (see :func:`environment_overrides`)."""

    base_url: str | list[str] | None = Field(
        default=None,
        description="OpenAI-compatible base URL, or several serving the same model (requests are spread "
        "across them; one that fails is taken out for a while); none starts the embedded model.",
    )
    model: str | None = Field(default=None, description="Model name sent with every request.")
    max_concurrency: int = Field(default=16, ge=1, le=4096, description="Most requests in flight per base URL.")
    min_concurrency: int = Field(default=1, ge=1, le=4096, description="Fewest requests in flight per base URL.")
    initial_concurrency: int = Field(default=8, ge=1, le=4096, description="Where the adaptive limit starts.")
    adaptive_concurrency: bool = Field(
        default=True,
        description="Grow the limit while latency holds, cut it on 429/5xx/timeouts and rising latency "
        "(additive increase, multiplicative decrease); false keeps it at max_concurrency.",
    )
    latency_tolerance: float = Field(
        default=2.0, gt=1, description="Latency above this multiple of the best seen counts as queueing."
    )
    eject_after: int = Field(default=3, ge=1, description="Failures in a row that take a base URL out for a while.")
    eject_seconds: float = Field(default=2.0, gt=0, description="First pause of a failing base URL; doubles each time.")
    outage_seconds: float = Field(
        default=600.0, gt=0, description="Seconds with every base URL out before the run stops (resumable)."
    )
    max_retries: int = Field(default=5, ge=0, le=50)
    timeout: float = Field(default=300.0, gt=0, description="Seconds before one request times out.")
    backoff_base: float = Field(default=0.5, gt=0)
    backoff_max: float = Field(default=30.0, gt=0)
    structured_output: Literal["json_schema", "json_object"] | None = Field(
        default=None,
        description="How critics ask for JSON: OpenAI's json_schema, or json_object with a schema "
        "(llama-cpp-python's server). Unset: json_object for the embedded model, json_schema otherwise.",
    )

    @field_validator("base_url")
    @classmethod
    def _some_urls(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and (not value or len(set(value)) != len(value)):
            raise ValueError("list one or more distinct base URLs")
        return value

    @property
    def base_urls(self) -> list[str]:
        return url_list(self.base_url)


def url_list(value: str | list[str] | None) -> list[str]:
    """A base URL setting (one, several or none) as a list."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


class MBTISource(_Config):
    source: Literal["mbti"]
    count: int = Field(ge=1, le=100_000)
    types: list[str] | None = Field(default=None, description="Restrict to these types (e.g. [INTJ, ENFP]).")


BigFiveBand = Literal["low", "mid", "high"]


class BigFiveSource(_Config):
    """Big Five profiles (after PsyPlay and TinyTroupe): a level per trait on 1-7."""

    source: Literal["big_five"]
    count: int = Field(ge=1, le=100_000)
    statements_per_trait: int = Field(default=1, ge=1, le=4)
    sampling: Literal["uniform", "quota", "distribution"] = Field(
        default="uniform",
        description="uniform: every level equally likely; quota: the bands named in `quota` share the "
        "personas equally; distribution: levels drawn with the weights in `distribution`.",
    )
    quota: dict[str, list[BigFiveBand]] = Field(
        default_factory=dict,
        description="Per trait, the bands (low 1-2, mid 3-5, high 6-7) that must share the personas equally.",
    )
    distribution: dict[str, list[float]] = Field(
        default_factory=dict, description="Per trait, seven weights for levels 1..7 (other traits: uniform)."
    )
    demographics: bool = Field(default=True, description="Give each persona a sampled name, age, job and place.")

    @model_validator(mode="after")
    def _sampling_settings(self) -> BigFiveSource:
        for key in [*self.quota, *self.distribution]:
            if key not in BIG_FIVE_TRAITS:
                raise ValueError(f"unknown trait {key!r}; traits are {', '.join(BIG_FIVE_TRAITS)}")
        for trait, weights in self.distribution.items():
            if len(weights) != 7 or any(w < 0 for w in weights) or sum(weights) <= 0:
                raise ValueError(f"distribution.{trait} needs seven non-negative weights (levels 1..7), not all zero")
        for trait, bands in self.quota.items():
            if not bands:
                raise ValueError(f"quota.{trait} names no band")
        if self.sampling == "quota" and not self.quota:
            raise ValueError("sampling 'quota' needs `quota` (e.g. {extraversion: [low, high]})")
        if self.sampling == "distribution" and not self.distribution:
            raise ValueError("sampling 'distribution' needs `distribution` (seven weights per trait)")
        return self


class StatementsSource(_Config):
    source: Literal["statements"]
    path: str = Field(
        default=f"{BUILTIN_PREFIX}synthetic_persona_chat",
        description="CSV or JSONL in the Synthetic-Persona-Chat format, relative to the recipe.",
    )
    count: int | None = Field(default=None, ge=1, description="Sample this many; all when unset.")


class BankSource(_Config):
    """Personas from a persona bank built by `persona-factory personas build`."""

    source: Literal["bank"]
    path: str | None = Field(
        default=None,
        description="A bank folder. Like --out, a relative path is taken from the working directory: "
        "banks are what earlier commands wrote, not files that travel with the recipe.",
    )
    repo: str | None = Field(default=None, description="A bank on the Hub (dataset repo id).")
    revision: str | None = Field(default=None, description="Version tag or commit; the latest when unset.")
    kinds: list[PersonaKind] | None = Field(default=None, description="Only personas of these kinds.")
    count: int | None = Field(default=None, ge=1, description="Sample this many; all when unset.")

    @model_validator(mode="after")
    def _one_location(self) -> BankSource:
        if (self.path is None) == (self.repo is None):
            raise ValueError("give exactly one of `path` (a bank folder) or `repo` (a Hub dataset)")
        return self


PersonaSource = Annotated[MBTISource | BigFiveSource | StatementsSource | BankSource, Field(discriminator="source")]


class QuotaCell(_Config):
    """A dimension of persona cells that casting must cover, and which of its values."""

    by: str = Field(description="mbti, kind, source, or big_five.<trait> (bands low/mid/high).")
    values: list[str] | None = Field(default=None, description="The cells to cover; all 16 types / 3 bands when unset.")

    @model_validator(mode="after")
    def _known_dimension(self) -> QuotaCell:
        allowed = {"mbti", "kind", "source"} | {f"big_five.{trait}" for trait in BIG_FIVE_TRAITS}
        if self.by not in allowed:
            raise ValueError(f"unknown cell dimension {self.by!r}; use one of {', '.join(sorted(allowed))}")
        if self.by in ("kind", "source") and not self.values:
            raise ValueError(f"quota by {self.by} needs `values`")
        return self


MAX_DIALOGUES_PER_RUN = 1_000_000
PLAN_BYTES_PER_CAST = 330


class CastingConfig(_Config):
    strategy: Literal["random", "compatible", "contrasting", "quota", "user_assistant"] = Field(
        default="random",
        description="random; compatible (share topics, after Synthetic-Persona-Chat); contrasting "
        "(opposite MBTI axes or Big Five bands); quota (every named cell represented); user_assistant "
        "(an implicit user profile talks to an assistant persona).",
    )
    group_size: int = Field(default=2, ge=2, le=8, description="Speakers per dialogue.")
    dialogues: int = Field(ge=1, description=f"Dialogues to cast; at most {1_000_000:,} a run.")
    min_shared_topics: int = Field(
        default=3, ge=1, description="compatible: topics two speakers must share (the paper pairs above 2)."
    )
    min_contrast: int = Field(
        default=2, ge=1, le=5, description="contrasting: opposite MBTI axes (or Big Five traits in opposite bands)."
    )
    quota: list[QuotaCell] = Field(default_factory=list, description="quota: the cells every run must cover.")

    @field_validator("dialogues")
    @classmethod
    def _plan_fits_in_memory(cls, value: int) -> int:
        # The plan (every cast with its speakers) is held for the whole run, about 330 bytes a cast.
        if value > MAX_DIALOGUES_PER_RUN:
            raise ValueError(
                f"{value:,} dialogues would hold about {value * PLAN_BYTES_PER_CAST / 1e9:.1f} GB in memory for the plan; "
                f"a run makes at most {MAX_DIALOGUES_PER_RUN:,}: split the work into several runs (each adds a version)"
            )
        return value

    @model_validator(mode="after")
    def _strategy_settings(self) -> CastingConfig:
        if self.strategy == "quota" and not self.quota:
            raise ValueError("strategy 'quota' needs `quota` (e.g. [{by: mbti}])")
        if self.strategy == "user_assistant" and self.group_size != 2:
            raise ValueError("strategy 'user_assistant' casts one user and one assistant (group_size 2)")
        return self


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


class AgentLLMConfig(_Config):
    """The model one speaker talks through; unset fields are the recipe's."""

    base_url: str | list[str] | None = Field(default=None, description="Another endpoint for this speaker.")
    model: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)

    @property
    def base_urls(self) -> list[str]:
        return url_list(self.base_url)


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


class ExpertConfig(_Config):
    enabled: bool = True
    hard: bool = Field(
        default=True,
        description="A hard gate: a dialogue it fails is not sent to the experts after it in `order`.",
    )


class LLMExpertConfig(ExpertConfig):
    temperature: float = Field(default=0.0, ge=0, le=2)
    max_tokens: int = Field(default=200, ge=16)


class HeuristicCriticConfig(ExpertConfig):
    max_duplicate_turn_ratio: float = Field(
        default=0.2, ge=0, le=1, description="Share of turns that may echo an earlier turn before the dialogue fails."
    )
    echo_similarity: float = Field(
        default=0.8, gt=0, le=1, description="Word-sequence similarity (0-1) at which a turn echoes an earlier one."
    )
    max_ngram_repeats: int = Field(default=4, ge=2, description="Times one 4-gram may recur in a turn.")
    copy_min_words: int = Field(default=6, ge=2, description="Shortest persona statement counted as pasted.")
    copy_max_per_turn: int = Field(
        default=3, ge=1, description="Persona statements pasted verbatim into one turn that fail it."
    )
    copy_max_share: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Share of one persona's statements that may be said verbatim in the dialogue.",
    )


class FaithfulnessCriticConfig(LLMExpertConfig):
    few_shot: bool = Field(default=True, description="Show the judge a faithful and an unfaithful example first.")


class APCCriticConfig(LLMExpertConfig):
    """APC-style faithfulness score: relevance and NLI of every persona statement against its
    speaker's turns, judged by the LLM with constrained answers."""

    enabled: bool = False
    hard: bool = False
    threshold: float = Field(default=0.6, ge=0, le=1, description="Pass when the normalised score reaches this.")
    max_tokens: int = Field(default=400, ge=16)


class ToxicityCriticConfig(LLMExpertConfig):
    enabled: bool = False


class PortrayalCriticConfig(LLMExpertConfig):
    """PsyPlay's back-test: infer each speaker's MBTI type or Big Five levels from the dialogue."""

    enabled: bool = False
    hard: bool = False
    mbti_tolerance: int = Field(default=1, ge=0, le=4, description="MBTI axes that may be inferred wrong.")
    big_five_tolerance: int = Field(default=2, ge=0, le=6, description="Levels a Big Five estimate may be off by.")


class AttributionCriticConfig(LLMExpertConfig):
    """PersonaEval: with speaker labels hidden, can the judge tell who said each turn?"""

    enabled: bool = False
    hard: bool = False
    threshold: float = Field(default=0.6, ge=0, le=1, description="Pass when this share of turns is attributed right.")
    max_tokens: int = Field(default=300, ge=16)


class QualityCriticConfig(LLMExpertConfig):
    """The SPC paper's FED policies (depth, coherency, consistency, diversity, likeability), each a
    pairwise comparison; a majority vote keeps the best of a cast's candidates."""

    enabled: bool = False
    max_tokens: int = Field(default=300, ge=16)


class DedupCriticConfig(ExpertConfig):
    enabled: bool = False
    threshold: float = Field(
        default=0.7,
        gt=0,
        le=1,
        description="Jaccard similarity of word 3-grams above which a dialogue is a near-duplicate.",
    )


EXPERT_NAMES = ("heuristic", "faithfulness", "apc", "toxicity", "portrayal", "attribution")


class CriticsConfig(_Config):
    order: list[Literal["heuristic", "faithfulness", "apc", "toxicity", "portrayal", "attribution"]] = Field(
        default_factory=lambda: list(EXPERT_NAMES),
        description="The cascade: per-dialogue experts in the order they run (cheap ones first). Best-of-N "
        "quality and run-wide deduplication always come after them.",
    )
    heuristic: HeuristicCriticConfig = Field(default_factory=HeuristicCriticConfig)
    faithfulness: FaithfulnessCriticConfig = Field(default_factory=FaithfulnessCriticConfig)
    apc: APCCriticConfig = Field(default_factory=APCCriticConfig)
    toxicity: ToxicityCriticConfig = Field(default_factory=ToxicityCriticConfig)
    portrayal: PortrayalCriticConfig = Field(default_factory=PortrayalCriticConfig)
    attribution: AttributionCriticConfig = Field(default_factory=AttributionCriticConfig)
    quality: QualityCriticConfig = Field(default_factory=QualityCriticConfig)
    dedup: DedupCriticConfig = Field(default_factory=DedupCriticConfig)
    report: str | None = Field(
        default=None, description="A `critics eval` report (JSON) to show in the card: how far to trust these critics."
    )

    @model_validator(mode="after")
    def _order_once(self) -> CriticsConfig:
        repeated = {name for name in self.order if self.order.count(name) > 1}
        if repeated:
            raise ValueError(f"order names {', '.join(sorted(repeated))} more than once")
        return self

    def cascade(self) -> list[tuple[str, ExpertConfig]]:
        """The enabled per-dialogue experts, in order."""
        return [(name, getattr(self, name)) for name in self.order if getattr(self, name).enabled]


class RayConfig(_Config):
    enabled: bool = Field(
        default=True, description="Run the dialogues on Ray workers; false runs them in this process (no Ray at all)."
    )
    address: str | None = Field(default=None, description="Existing cluster; none starts local Ray.")
    workers: int = Field(
        default=1,
        ge=1,
        le=1024,
        description="Engine workers (async Ray actors), spread over the nodes; they share the endpoint's concurrency.",
    )
    cpus_per_worker: float | None = Field(default=None, gt=0, description="CPUs reserved per worker.")


class OutputConfig(_Config):
    license: str = "cc-by-4.0"
    pretty_name: str | None = None
    samples_in_card: int = Field(default=3, ge=0, le=50)
    review_samples: int = Field(
        default=5, ge=0, le=200, description="Accepted dialogues a reviewer must read (and half as many rejected)."
    )


class Recipe(_Config):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    description: str = ""
    seed: int = 0
    personas: list[PersonaSource] = Field(min_length=1)
    casting: CastingConfig
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    critics: CriticsConfig = Field(default_factory=CriticsConfig)
    llm: LLMConfig = Field(default_factory=LLMConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)

    # Where the recipe was read from, so relative data paths resolve against it.
    base_dir: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _turn_order_fits_the_cast(self) -> Recipe:
        role_play = self.generation.role_play
        if self.generation.mode != "spc" and role_play.turn_order == "alternate" and self.casting.group_size != 2:
            raise ValueError(
                f"generation.role_play.turn_order 'alternate' needs exactly two speakers, and casting.group_size is "
                f"{self.casting.group_size}; use round_robin or moderator"
            )
        positions = [key for key in role_play.agents if key.startswith("speaker")]
        beyond = [key for key in positions if int(key[len("speaker") :]) > self.casting.group_size]
        if beyond:
            raise ValueError(
                f"generation.role_play.agents names {', '.join(beyond)}, but dialogues have "
                f"{self.casting.group_size} speakers"
            )
        return self

    def resolve_path(self, value: str) -> Path:
        return resolve_data_path(value, self.base_dir)

    def content_hash(self) -> str:
        """Hash of everything that shapes the data (not where the endpoint lives)."""
        payload = self.model_dump(mode="json", exclude={"llm": {"base_url"}, "ray": {"address"}})
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


class EmbeddingsConfig(_Config):
    """One interface for every embedding: the endpoint's ``/v1/embeddings``, or the packaged
    all-MiniLM-L6-v2 through sentence-transformers on the CPU."""

    backend: Literal["minilm", "endpoint"] = "minilm"
    model: str | None = Field(default=None, description="endpoint: the embedding model's name.")
    base_url: str | None = Field(default=None, description="endpoint: where it is; the LLM endpoint when unset.")
    batch_size: int = Field(default=64, ge=1, le=4096)


class MBTIBankSource(_Config):
    """CharacterChat's MBTI bank: an LLM writes characters for each type."""

    source: Literal["mbti_bank"]
    per_type: int = Field(default=1, ge=1, le=1000, description="Characters written for each type.")
    types: list[str] | None = Field(default=None, description="Only these types; all 16 when unset.")
    behaviour_examples: int = Field(default=3, ge=1, le=8, description="'When the other party ..., you say ...' lines.")
    max_attempts: int = Field(default=2, ge=1, le=10, description="Tries per character before it is dropped.")
    temperature: float = Field(default=0.9, ge=0, le=2)
    max_tokens: int = Field(default=900, ge=64)


class ImplicitSource(_Config):
    """USP's implicit user profiles: an LLM reads a real chat and writes who the user is."""

    source: Literal["implicit"]
    path: str | None = Field(
        default=None,
        description="JSONL of conversations (a list of {role, content} per line, or an object with "
        "`messages`), or a folder of such files, relative to the recipe; builtin:usp ships USP's chats.",
    )
    repo: str | None = Field(default=None, description="A Hub dataset of conversations instead of a file.")
    revision: str | None = None
    split: str = "train"
    messages_field: str = Field(default="messages", description="The column holding the conversation.")
    count: int | None = Field(default=None, ge=1, description="Read only the first this many conversations.")
    max_chars: int = Field(default=5000, ge=500, description="Characters of the conversation the extractor sees.")
    temperature: float = Field(default=0.0, ge=0, le=2)
    max_tokens: int = Field(default=500, ge=64)

    @model_validator(mode="after")
    def _one_location(self) -> ImplicitSource:
        if (self.path is None) == (self.repo is None):
            raise ValueError("give exactly one of `path` (a JSONL file or folder) or `repo` (a Hub dataset)")
        return self


class SPCExpansionSource(_Config):
    """Synthetic-Persona-Chat's persona expansion: cluster seed statements, induce the query each
    cluster answers, bootstrap new queries and statements, compose profiles without redundant or
    contradicting statements."""

    source: Literal["spc_expansion"]
    path: str = Field(default=f"{BUILTIN_PREFIX}synthetic_persona_chat", description="Seed statements (SPC CSV/JSONL).")
    seed_statements: int = Field(default=200, ge=4, description="Distinct seed statements sampled from the file.")
    clusters: int = Field(default=12, ge=2, description="Clusters (and so induced queries) of the seed statements.")
    new_queries: int = Field(default=6, ge=0, description="Queries bootstrapped beyond the induced ones.")
    statements_per_query: int = Field(default=6, ge=1, le=50, description="New statements asked for per query.")
    profiles: int = Field(default=20, ge=1, description="User profiles composed.")
    statements_per_profile: int = Field(default=5, ge=2, le=12)
    duplicate_threshold: float = Field(
        default=0.9, gt=0, le=1, description="Cosine similarity above which a new statement is a near-duplicate."
    )
    redundancy_threshold: float = Field(
        default=0.8, gt=0, le=1, description="Similarity above which a statement repeats one already in the profile."
    )
    check_contradictions: bool = Field(
        default=True, description="Ask the LLM whether a statement contradicts the profile."
    )
    temperature: float = Field(default=0.9, ge=0, le=2)
    max_tokens: int = Field(default=300, ge=32)


BankBuildSource = Annotated[
    MBTIBankSource | ImplicitSource | SPCExpansionSource | MBTISource | BigFiveSource | StatementsSource,
    Field(discriminator="source"),
]


class BankOutputConfig(_Config):
    license: str | None = Field(default=None, description="The bank's licence; derived from its sources when unset.")
    pretty_name: str | None = None


class PersonaBankRecipe(_Config):
    """What `persona-factory personas build` reads: where personas come from, and the LLM and
    embeddings the generative sources use."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    description: str = ""
    seed: int = 0
    sources: list[BankBuildSource] = Field(min_length=1)
    llm: LLMConfig = Field(default_factory=LLMConfig)
    embeddings: EmbeddingsConfig = Field(default_factory=EmbeddingsConfig)
    output: BankOutputConfig = Field(default_factory=BankOutputConfig)

    base_dir: Path | None = Field(default=None, exclude=True)

    resolve_path = Recipe.resolve_path
    content_hash = Recipe.content_hash

    @property
    def needs_llm(self) -> bool:
        return any(isinstance(source, (MBTIBankSource, ImplicitSource, SPCExpansionSource)) for source in self.sources)


def _format_location(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


RecipeModel = TypeVar("RecipeModel", "Recipe", "PersonaBankRecipe")
SOURCE_TAGS = ("mbti", "big_five", "statements", "bank", "mbti_bank", "implicit", "spc_expansion")


def load_recipe(path: str | Path, model: type[RecipeModel] = Recipe) -> RecipeModel:  # type: ignore[assignment]
    path = Path(path)
    if not path.is_file():
        raise RecipeError("recipe file not found", path=path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise RecipeError(f"not valid YAML{where}: {getattr(exc, 'problem', exc)}", path=path) from exc
    if not isinstance(raw, dict):
        raise RecipeError("a recipe is a YAML mapping (name, personas, casting, ...)", path=path)
    return parse_recipe(raw, path=path, model=model)


def parse_recipe(
    raw: dict[str, Any],
    *,
    path: str | Path | None = None,
    model: type[RecipeModel] = Recipe,  # type: ignore[assignment]
) -> RecipeModel:
    try:
        recipe = model.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        # Discriminated unions put the tag in the location; drop it so the field reads as written.
        loc = tuple(part for part in error["loc"] if part not in SOURCE_TAGS)
        if error["type"] == "extra_forbidden":
            message = "unknown key (check its spelling; unknown keys are errors)"
        else:
            message = error["msg"]
            if "input" in error and error["type"] not in ("missing",):
                message += f" (got {error['input']!r})"
        more = len(exc.errors()) - 1
        if more:
            message += f"; and {more} more problem{'s' if more > 1 else ''}"
        raise RecipeError(message, path=path, field=_format_location(loc) or None) from exc
    if path is not None:
        recipe.base_dir = Path(path).resolve().parent
    return recipe


def environment_overrides() -> dict[str, str | None]:
    """The environment variables the factory honours, read in one place."""
    return {
        "base_url": os.environ.get("PERSONA_FACTORY_BASE_URL") or os.environ.get("OPENAI_BASE_URL"),
        "model": os.environ.get("PERSONA_FACTORY_MODEL"),
        "api_key": os.environ.get("OPENAI_API_KEY"),
        "ray_address": os.environ.get("RAY_ADDRESS"),
        "hf_endpoint": os.environ.get("HF_ENDPOINT") or None,
        "hf_token": os.environ.get("HF_TOKEN") or None,
    }


def apply_overrides(
    recipe: RecipeModel,
    *,
    base_url: str | None = None,
    model: str | None = None,
    ray_address: str | None = None,
) -> RecipeModel:
    """Flags beat the environment, which beats the recipe file."""
    env = environment_overrides()
    llm = recipe.llm.model_copy(
        update={
            "base_url": base_url or env["base_url"] or recipe.llm.base_url,
            "model": model or env["model"] or recipe.llm.model,
        }
    )
    update: dict[str, Any] = {"llm": llm}
    if isinstance(recipe, Recipe):
        update["ray"] = recipe.ray.model_copy(
            update={"address": ray_address or env["ray_address"] or recipe.ray.address}
        )
    updated = recipe.model_copy(update=update)
    updated.base_dir = recipe.base_dir
    return updated

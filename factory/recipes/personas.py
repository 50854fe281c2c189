"""Where a run's (or a bank's) personas come from, and how they are cast into dialogues."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import Field, field_validator, model_validator

from factory.recipes.base import _Config
from factory.records import PersonaKind
from factory.settings import BUILTIN_PREFIX
from factory.traits import BANDS_TEXT, BIG_FIVE_TRAITS, BigFiveBand


class MBTISource(_Config):
    source: Literal["mbti"]
    count: int = Field(ge=1, le=100_000)
    types: list[str] | None = Field(default=None, description="Restrict to these types (e.g. [INTJ, ENFP]).")


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
        description=f"Per trait, the bands ({BANDS_TEXT}) that must share the personas equally.",
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


class PersonaColumns(_Config):
    """Which column of a persona pool holds what; a column left unset is not read."""

    persona: str | None = Field(default=None, description="Free text describing the persona.")
    statements: str | None = Field(default=None, description="First-person statements (a list, or one per line).")
    more_text: list[str] = Field(default_factory=list, description="Further free-text columns, a statement each.")
    name: str | None = None
    age: str | None = None
    gender: str | None = None
    occupation: str | None = None
    education: str | None = None
    location: list[str] = Field(default_factory=list, description="Columns joined into the location (city, state).")
    topics: str | None = Field(default=None, description="Labels or topics (a list, or a JSON list in a string).")
    mbti: str | None = Field(
        default=None, description="The persona's MBTI type (e.g. INTJ); such a persona is of kind mbti."
    )

    @model_validator(mode="after")
    def _some_text(self) -> PersonaColumns:
        if not (self.persona or self.statements):
            raise ValueError("map `persona` (free text) or `statements` to a column")
        return self


class PoolSample(_Config):
    """How many personas to draw from a pool, spread over its clusters or a column's values."""

    count: int = Field(ge=1, le=100_000)
    stratify_by: str | None = Field(
        default=None,
        description="cluster (k-means on the personas' embeddings) or a column name; unset: a plain random draw.",
    )
    clusters: int = Field(default=16, ge=2, le=1000, description="stratify_by cluster: how many clusters.")


class HubPersonasSource(_Config):
    """Personas from a public persona pool (PersonaHub, FinePersonas, Nemotron-Personas, or any
    dataset with a persona column): a Hub dataset at a revision, or a local parquet/JSONL/CSV file."""

    source: Literal["hub_personas"]
    path: str | None = Field(default=None, description="A local parquet, JSONL or CSV file, relative to the recipe.")
    repo: str | None = Field(default=None, description="A Hub dataset id (honours HF_ENDPOINT and HF_TOKEN).")
    revision: str | None = Field(default=None, description="The Hub revision (a tag or commit) to read.")
    subset: str | None = Field(default=None, description="The dataset's config name (PersonaHub: persona).")
    split: str = "train"
    layout: Literal["personahub", "finepersonas", "nemotron"] | None = Field(
        default=None, description="A built-in column mapping for that pool's layout."
    )
    columns: PersonaColumns | None = Field(default=None, description="The column mapping (over the layout's).")
    scan: int = Field(
        default=20_000,
        ge=1,
        le=10_000_000,
        description="Rows read from the pool, from its start (a Hub pool is streamed: only these are fetched).",
    )
    sample: PoolSample | None = Field(default=None, description="Draw this many; all rows read when unset.")
    dedup_threshold: float | None = Field(
        default=0.7,
        gt=0,
        le=1,
        description="MinHash Jaccard of word 3-grams above which a persona repeats an earlier one and is dropped; "
        "null keeps every row.",
    )
    statements_by: Literal["sentences", "llm"] = Field(
        default="sentences",
        description="How free text becomes first-person statements: a sentence each, by rule; or llm, the LLM "
        "rewrites each drawn persona as statements, each checked (first person, drawn from the text, distinct) and "
        "asked for again when one fails (a bank build only: `personas build`, then `source: bank` in the run).",
    )
    max_attempts: int = Field(default=2, ge=1, le=10, description="statements_by llm: asks per persona.")
    temperature: float = Field(default=0.3, ge=0, le=2, description="statements_by llm: the LLM's temperature.")

    @model_validator(mode="after")
    def _one_location_and_a_mapping(self) -> HubPersonasSource:
        if (self.path is None) == (self.repo is None):
            raise ValueError("give exactly one of `path` (a local file) or `repo` (a Hub dataset)")
        if self.layout is None and self.columns is None:
            raise ValueError("give a `layout` (personahub, finepersonas, nemotron) or `columns` (the mapping)")
        return self


PersonaSource = Annotated[
    MBTISource | BigFiveSource | StatementsSource | BankSource | HubPersonasSource, Field(discriminator="source")
]


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
    accepted_per_cell: int | None = Field(
        default=None,
        ge=1,
        description="quota: after the rounds, cells with fewer accepted dialogues than this get new casts, round "
        "after round, until each holds this many or has had `cell_attempts` casts.",
    )
    cell_attempts: int | None = Field(
        default=None,
        ge=1,
        description="accepted_per_cell: casts a cell may have in all (the first rounds' included) before it is "
        "named as unfilled; 4 x accepted_per_cell when unset.",
    )

    @property
    def attempts_per_cell(self) -> int:
        return self.cell_attempts or 4 * (self.accepted_per_cell or 0)

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
        if self.accepted_per_cell and self.strategy != "quota":
            raise ValueError("accepted_per_cell tops up the cells of `quota`: it needs strategy 'quota'")
        if self.strategy == "user_assistant" and self.group_size != 2:
            raise ValueError("strategy 'user_assistant' casts one user and one assistant (group_size 2)")
        return self


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


def source_kinds(union: Any) -> tuple[str, ...]:
    """The ``source:`` values a discriminated union of sources takes, in declared order."""
    members = get_args(get_args(union)[0])
    return tuple(get_args(member.model_fields["source"].annotation)[0] for member in members)


BankBuildSource = Annotated[
    MBTIBankSource
    | ImplicitSource
    | SPCExpansionSource
    | MBTISource
    | BigFiveSource
    | StatementsSource
    | HubPersonasSource,
    Field(discriminator="source"),
]


class BankOutputConfig(_Config):
    license: str | None = Field(default=None, description="The bank's licence; derived from its sources when unset.")
    pretty_name: str | None = None

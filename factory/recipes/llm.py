"""Where the LLM is and how hard to push it; where embeddings come from."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from factory.recipes.base import MAY_CHANGE_ON_RESUME, _Config
from factory.recipes.serve import ServeConfig

# An endpoint's API key is read from the environment variable it names (see factory.llm.keys).
DEFAULT_KEY_ENV = "OPENAI_API_KEY"
KEY_ENV_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"


class PricingConfig(_Config):
    """What an endpoint charges, in USD per million tokens: prompts and completions are priced apart."""

    model_config = ConfigDict(extra="forbid", frozen=True)  # part of an endpoint's (hashable) spec

    input_per_mtok: float = Field(ge=0, description="USD per million prompt tokens.")
    output_per_mtok: float = Field(ge=0, description="USD per million completion tokens.")

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok) / 1_000_000


class EndpointLimits(_Config):
    """How hard to push an endpoint, and how to treat its failures: the recipe's settings, and
    what every client of that endpoint is made with (:class:`factory.llm.client.EndpointSpec`)."""

    max_concurrency: int = Field(
        json_schema_extra=MAY_CHANGE_ON_RESUME,
        default=16,
        ge=1,
        le=4096,
        description="Most requests in flight per base URL.",
    )
    min_concurrency: int = Field(
        json_schema_extra=MAY_CHANGE_ON_RESUME,
        default=1,
        ge=1,
        le=4096,
        description="Fewest requests in flight per base URL.",
    )
    initial_concurrency: int = Field(
        json_schema_extra=MAY_CHANGE_ON_RESUME, default=8, ge=1, le=4096, description="Where the adaptive limit starts."
    )
    adaptive_concurrency: bool = Field(
        json_schema_extra=MAY_CHANGE_ON_RESUME,
        default=True,
        description="Grow the limit while latency holds, cut it on 429/5xx/timeouts and rising latency "
        "(additive increase, multiplicative decrease); false keeps it at max_concurrency.",
    )
    latency_tolerance: float = Field(
        json_schema_extra=MAY_CHANGE_ON_RESUME,
        default=2.0,
        gt=1,
        description="Latency above this multiple of the best seen counts as queueing.",
    )
    eject_after: int = Field(
        json_schema_extra=MAY_CHANGE_ON_RESUME,
        default=3,
        ge=1,
        description="Failures in a row that take a base URL out for a while.",
    )
    eject_seconds: float = Field(
        json_schema_extra=MAY_CHANGE_ON_RESUME,
        default=2.0,
        gt=0,
        description="First pause of a failing base URL; doubles each time.",
    )
    outage_seconds: float = Field(
        json_schema_extra=MAY_CHANGE_ON_RESUME,
        default=600.0,
        gt=0,
        description="Seconds with every base URL out before the run stops (resumable).",
    )
    max_retries: int = Field(json_schema_extra=MAY_CHANGE_ON_RESUME, default=5, ge=0, le=50)
    timeout: float = Field(
        json_schema_extra=MAY_CHANGE_ON_RESUME,
        default=120.0,
        gt=0,
        description="Seconds one request may wait for its answer; an endpoint that answers nothing for that long "
        "stops the run (resumable). Raise it for answers that take longer.",
    )
    backoff_base: float = Field(json_schema_extra=MAY_CHANGE_ON_RESUME, default=0.5, gt=0)
    backoff_max: float = Field(json_schema_extra=MAY_CHANGE_ON_RESUME, default=30.0, gt=0)
    api_key_env: str = Field(
        json_schema_extra=MAY_CHANGE_ON_RESUME,
        default=DEFAULT_KEY_ENV,
        pattern=KEY_ENV_PATTERN,
        description="The environment variable this endpoint's API key is read from; the key is sent to it alone.",
    )
    pricing: PricingConfig | None = Field(
        json_schema_extra=MAY_CHANGE_ON_RESUME,
        default=None,
        description="What this endpoint charges; set, plans, budgets, manifests and cards speak in USD too. A judge "
        "on the generator's server is priced as it is unless it sets its own; one on another server is not.",
    )


class ReplyCacheConfig(_Config):
    """Chat replies kept on disk by what determines them: a rerun of the same plan pays nothing."""

    enabled: bool = Field(
        json_schema_extra=MAY_CHANGE_ON_RESUME, default=True, description="Answer a question asked before from disk."
    )
    path: str | None = Field(
        json_schema_extra=MAY_CHANGE_ON_RESUME,
        default=None,
        description="The cache's folder; unset, PERSONA_FACTORY_CACHE or ~/.cache/persona-factory/replies.",
    )


class LLMConfig(EndpointLimits):
    """Where the LLM is and how hard to push it. No secrets here: the key comes from the
    environment variable ``api_key_env`` names (see :mod:`factory.llm.keys`)."""

    base_url: str | list[str] | None = Field(
        json_schema_extra=MAY_CHANGE_ON_RESUME,
        default=None,
        description="OpenAI-compatible base URL, or several serving the same model (requests are spread "
        "across them; one that fails is taken out for a while); none starts the embedded model.",
    )
    model: str | None = Field(default=None, description="Model name sent with every request.")
    serve: ServeConfig | None = Field(
        default=None,
        description="Deploy the model on the Ray cluster with Ray Serve for the run (instead of base_url).",
    )
    structured_output: Literal["json_schema", "json_object"] | None = Field(
        default=None,
        description="How critics ask for JSON: OpenAI's json_schema, or json_object with a schema "
        "(llama.cpp's servers). Unset: json_object for the embedded model, json_schema otherwise.",
    )

    cache: ReplyCacheConfig = Field(default_factory=ReplyCacheConfig)
    batch: bool = Field(
        json_schema_extra=MAY_CHANGE_ON_RESUME,
        default=False,
        description="Send the calls through the endpoint's Batch API (Files + Batches), a wave of calls per batch; "
        "runs on the driver, not on Ray workers.",
    )
    batch_poll_seconds: float = Field(
        json_schema_extra=MAY_CHANGE_ON_RESUME, default=30.0, gt=0, description="Seconds between polls of a batch."
    )
    tokenizer: str | None = Field(
        json_schema_extra=MAY_CHANGE_ON_RESUME,
        default=None,
        description="The model's tokenizer, for `plan` to count prompts with: a GGUF file or a tokenizer.json "
        "(relative to the recipe). Unset: the embedded model's own, or about 4 characters per token.",
    )

    @field_validator("base_url")
    @classmethod
    def _some_urls(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and (not value or len(set(value)) != len(value)):
            raise ValueError("list one or more distinct base URLs")
        return value

    @model_validator(mode="after")
    def _served_or_given(self) -> LLMConfig:
        if self.serve is not None and self.base_url is not None:
            raise ValueError("llm.serve deploys the model itself: leave llm.base_url unset, or drop llm.serve")
        return self

    @property
    def base_urls(self) -> list[str]:
        return url_list(self.base_url)


def url_list(value: str | list[str] | None) -> list[str]:
    """A base URL setting (one, several or none) as a list."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


class AgentLLMConfig(_Config):
    """The model one speaker talks through; unset fields are the recipe's."""

    base_url: str | list[str] | None = Field(default=None, description="Another endpoint for this speaker.")
    model: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    api_key_env: str | None = Field(
        default=None,
        pattern=KEY_ENV_PATTERN,
        description="With a base_url of its own: the variable its API key is read from (unset: OPENAI_API_KEY).",
    )

    @property
    def base_urls(self) -> list[str]:
        return url_list(self.base_url)


class EmbeddingsConfig(_Config):
    """One interface for every embedding: the endpoint's ``/v1/embeddings``, or the packaged
    all-MiniLM-L6-v2 through sentence-transformers on the CPU."""

    backend: Literal["minilm", "endpoint"] = "minilm"
    model: str | None = Field(default=None, description="endpoint: the embedding model's name.")
    base_url: str | None = Field(default=None, description="endpoint: where it is; the LLM endpoint when unset.")
    batch_size: int = Field(default=64, ge=1, le=4096)
    api_key_env: str | None = Field(
        default=None,
        pattern=KEY_ENV_PATTERN,
        description="endpoint: the variable its API key is read from; unset, the LLM endpoint's own (on its "
        "server) or OPENAI_API_KEY (with a base_url of its own).",
    )

    def key_env(self, llm_key_env: str) -> str:
        """Where the embedding endpoint's key is: its own variable, else the LLM's on the LLM's server."""
        return self.api_key_env or (DEFAULT_KEY_ENV if self.base_url else llm_key_env)

"""Where a critic's judges are: one endpoint and model (layered over ``critics.llm`` and the
recipe's ``llm``), or a jury of several and how their verdicts are aggregated."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from factory.recipes.base import MAY_CHANGE_ON_RESUME, _Config
from factory.recipes.llm import EndpointLimits, url_list
from factory.recipes.serve import ServeConfig

Aggregate = Literal["majority", "mean"]


class JudgeLLMConfig(EndpointLimits):
    """Where a judge is: its endpoint, model and limits. A field left unset is taken from the level
    above (a critic's own, then ``critics.llm``, then the recipe's ``llm``); a judge given its own
    ``base_url`` is another server, so its model is not the generator's unless named."""

    base_url: str | list[str] | None = Field(
        json_schema_extra=MAY_CHANGE_ON_RESUME, default=None, description="The judge's OpenAI-compatible base URL(s)."
    )
    model: str | None = Field(default=None, description="The judge's model name.")
    temperature: float | None = Field(default=None, ge=0, le=2, description="The judge's sampling temperature.")
    structured_output: Literal["json_schema", "json_object"] | None = None
    serve: ServeConfig | None = Field(
        default=None,
        description="critics.llm only: deploy the judge model on the Ray cluster with Ray Serve for the run.",
    )

    @property
    def base_urls(self) -> list[str]:
        return url_list(self.base_url)

    def over(self, below: JudgeLLMConfig) -> JudgeLLMConfig:
        """These settings over ``below``'s: what is set here wins; a new base URL drops the model
        and JSON form set below (they were another server's)."""
        mine = self.model_dump(exclude_unset=True)
        merged = below.model_dump(exclude_unset=True)
        if mine.get("base_url") is not None:
            merged.pop("model", None)
            merged.pop("structured_output", None)
        merged.update(mine)
        return JudgeLLMConfig.model_validate(merged)


class JuryConfig(_Config):
    """Several judges for a critic: every juror judges, each verdict is kept, the aggregate decides."""

    judges: list[JudgeLLMConfig] = Field(min_length=2, description="The jurors, each over `critics.llm`.")
    aggregate: Aggregate = Field(
        default="majority",
        description="majority: passed when more than half of the jurors who answered pass it; mean: the jurors' "
        "mean score against the critic's threshold (0.5 for a pass/fail critic).",
    )

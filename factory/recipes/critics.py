"""The critics' settings."""

from __future__ import annotations

from functools import cache
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from factory.errors import PluginError
from factory.recipes.base import _Config
from factory.recipes.extensions import CRITICS_GROUP, CriticSpec, plugin_objects
from factory.recipes.judges import Aggregate, JudgeLLMConfig, JuryConfig
from factory.recipes.llm import EmbeddingsConfig

Scope = Literal["dialogue", "cast", "run"]


class CriticConfig(_Config):
    # What the critic judges at once: one dialogue (the cascade), a cast's candidates (best-of-N),
    # or the whole run. A critic's name is its field in CriticsConfig.
    scope: ClassVar[Scope] = "dialogue"

    enabled: bool = True
    hard: bool = Field(
        default=True,
        description="A hard gate: a dialogue it fails is not sent to the experts after it in `order`.",
    )


class LLMCriticConfig(CriticConfig):
    temperature: float = Field(default=0.0, ge=0, le=2)
    max_tokens: int = Field(default=200, ge=16)
    llm: JudgeLLMConfig = Field(default_factory=JudgeLLMConfig, description="This critic's judge, over `critics.llm`.")
    jury: JuryConfig | None = Field(default=None, description="This critic's jury, instead of one judge.")


class HeuristicCriticConfig(CriticConfig):
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


class GroundingCriticConfig(CriticConfig):
    """Does each speaker draw on their own persona? Each turn's best cosine similarity to its
    speaker's statements, against its best to the other speakers' (sentence embeddings, no LLM)."""

    enabled: bool = False
    threshold: float = Field(
        default=0.05,
        ge=-1,
        le=1,
        description="Pass when every speaker's grounding (own-persona minus other-persona similarity of their two "
        "best-grounded turns) reaches this; 0.05 passes 86% of Synthetic-Persona-Chat's own conversations.",
    )
    embeddings: EmbeddingsConfig = Field(default_factory=EmbeddingsConfig)


class LearnedCriticConfig(CriticConfig):
    """A small critic trained on real persona conversations and corruptions of them (`persona-factory
    critics train`): sentence embeddings of the turns and personas, a few features and a small head,
    on the CPU. Its score is a calibrated probability that the dialogue is a real conversation."""

    enabled: bool = False
    model: str = Field(
        default="shipped",
        description="The trained critic's folder (`critics train --out`); shipped: the one trained on the packaged "
        "Synthetic-Persona-Chat conversations.",
    )
    threshold: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Pass at this probability; unset, the threshold the critic chose on its held-out conversations.",
    )
    uncertain_band: tuple[float, float] | None = Field(
        default=None,
        description="[low, high]: ask the LLM critics after it only about dialogues whose probability is in the band. "
        "Below it the learned critic rejects; above it the LLM critics are not asked and pass on its word (their "
        "verdicts say so), but for an audited share.",
    )
    audit_share: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Of the dialogues above the band, the share still sent to the LLM critics, so the card can say "
        "how often they agree with the learned critic.",
    )

    def deciding_band(self) -> tuple[float, float] | None:
        """The band, when the critic is on and so decides for the LLM critics outside it."""
        return self.uncertain_band if self.enabled else None

    @field_validator("uncertain_band")
    @classmethod
    def _band_in_order(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not 0 <= value[0] <= value[1] <= 1:
            raise ValueError(f"the band is [low, high] with 0 <= low <= high <= 1, not {list(value)}")
        return value


class FaithfulnessCriticConfig(LLMCriticConfig):
    few_shot: bool = Field(default=True, description="Show the judge a faithful and an unfaithful example first.")


class APCCriticConfig(LLMCriticConfig):
    """APC-style faithfulness score: relevance and NLI of every persona statement against its
    speaker's turns, judged by the LLM with constrained answers."""

    enabled: bool = False
    hard: bool = False
    threshold: float = Field(default=0.6, ge=0, le=1, description="Pass when the normalised score reaches this.")
    max_tokens: int = Field(default=400, ge=16)


class ToxicityCriticConfig(LLMCriticConfig):
    enabled: bool = False


class PortrayalCriticConfig(LLMCriticConfig):
    """PsyPlay's back-test: infer each speaker's MBTI type or Big Five levels from the dialogue."""

    enabled: bool = False
    hard: bool = False
    mbti_tolerance: int = Field(default=1, ge=0, le=4, description="MBTI axes that may be inferred wrong.")
    big_five_tolerance: int = Field(default=2, ge=0, le=6, description="Levels a Big Five estimate may be off by.")


class AttributionCriticConfig(LLMCriticConfig):
    """PersonaEval: with speaker labels hidden, can the judge tell who said each turn?"""

    enabled: bool = False
    hard: bool = False
    threshold: float = Field(default=0.6, ge=0, le=1, description="Pass when this share of turns is attributed right.")
    max_tokens: int = Field(default=300, ge=16)


class QualityCriticConfig(LLMCriticConfig):
    """The SPC paper's FED policies (depth, coherency, consistency, diversity, likeability), each a
    pairwise comparison; a majority vote keeps the best of a cast's candidates."""

    scope: ClassVar[Scope] = "cast"

    enabled: bool = False
    max_tokens: int = Field(default=300, ge=16)


class DedupCriticConfig(CriticConfig):
    scope: ClassVar[Scope] = "run"
    enabled: bool = False
    threshold: float = Field(
        default=0.7,
        gt=0,
        le=1,
        description="Jaccard similarity of word 3-grams above which a dialogue is a near-duplicate.",
    )


class CriticsConfig(_Config):
    """Every built-in critic is a field here, named as recipes, cards and `critics eval` name it;
    the per-dialogue ones in their default cascade order. A plugin's critic (:func:`plugin_critics`)
    is a key beside them, validated by its own settings class, and comes after them in ``order``."""

    model_config = ConfigDict(extra="allow")

    order: list[str] = Field(
        default_factory=lambda: list(_built_in("dialogue")),
        description="The cascade: per-dialogue critics in the order they run (cheap ones first). Best-of-N "
        "quality and run-wide deduplication always come after them.",
    )
    llm: JudgeLLMConfig = Field(
        default_factory=JudgeLLMConfig, description="The judge of every LLM critic; unset, the generator's endpoint."
    )
    jury: JuryConfig | None = Field(default=None, description="A jury for every LLM critic without its own judge.")
    heuristic: HeuristicCriticConfig = Field(default_factory=HeuristicCriticConfig)
    learned: LearnedCriticConfig = Field(default_factory=LearnedCriticConfig)
    grounding: GroundingCriticConfig = Field(default_factory=GroundingCriticConfig)
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

    @model_validator(mode="before")
    @classmethod
    def _plugin_settings(cls, data: Any) -> Any:
        """Each plugin critic's settings through its own class (errors located under its name); any
        other key that is not a field is refused, as everywhere in a recipe. A plugin the recipe
        does not name adds nothing (not even to ``order``), so installing one changes no recipe's
        hash; one it names goes after the built-in critics in the default order."""
        if not isinstance(data, dict):
            return data
        plugins = plugin_critics()
        data = dict(data)
        errors: list[InitErrorDetails] = []
        for key, value in data.items():
            if key in cls.model_fields:
                continue
            if key not in plugins:
                errors.append(InitErrorDetails(type="extra_forbidden", loc=(key,), input=value))
                continue
            try:
                data[key] = plugins[key].settings.model_validate(value)
            except ValidationError as error:
                errors.extend(
                    InitErrorDetails(
                        type=PydanticCustomError(str(e["type"]), str(e["msg"])), loc=(key, *e["loc"]), input=e["input"]
                    )
                    for e in error.errors()
                )
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        if "order" not in data:
            data["order"] = [*_built_in("dialogue"), *(name for name in plugins if name in data)]
        return data

    @field_validator("order")
    @classmethod
    def _known_critics(cls, value: list[str]) -> list[str]:
        allowed = critic_names("dialogue")
        unknown = [name for name in value if name not in allowed]
        if unknown:
            raise ValueError(
                f"unknown critic {unknown[0]!r} in order; the per-dialogue critics are {', '.join(allowed)}"
            )
        return value

    @model_validator(mode="after")
    def _order_once(self) -> CriticsConfig:
        repeated = {name for name in self.order if self.order.count(name) > 1}
        if repeated:
            raise ValueError(f"order names {', '.join(sorted(repeated))} more than once")
        return self

    @model_validator(mode="after")
    def _served_once(self) -> CriticsConfig:
        """One judge model is served per run, from critics.llm; a critic or juror points elsewhere by base_url."""
        if self.llm.serve is not None and self.llm.base_url is not None:
            raise ValueError("critics.llm.serve deploys the judge itself: leave critics.llm.base_url unset")
        judges = {"jury": list(self.jury.judges) if self.jury else []}
        for name in all_critic_names():
            config = self.settings_of(name)
            if isinstance(config, LLMCriticConfig):
                judges[name] = [config.llm, *(config.jury.judges if config.jury else [])]
        served = [name for name, settings in judges.items() if any(judge.serve for judge in settings)]
        if served:
            raise ValueError(f"{served[0]}: serve is set on critics.llm only (one judge model is served per run)")
        return self

    def cascade(self) -> list[tuple[str, CriticConfig]]:
        """The enabled per-dialogue experts, in order."""
        return [(name, self.settings_of(name)) for name in self.order if self.settings_of(name).enabled]

    def settings_of(self, name: str) -> CriticConfig:
        """A critic's settings: its field, a plugin's as the recipe gives them, or a plugin's defaults."""
        given = getattr(self, name, None)
        if given is None and name in plugin_critics():
            return settings_class(name)()
        if not isinstance(given, CriticConfig):
            raise KeyError(name)
        return given

    def enabled(self) -> list[str]:
        """Every critic turned on, in the order they judge, after the generator's own ``format``."""
        later = [name for name in critic_names("cast") + critic_names("run") if getattr(self, name).enabled]
        return ["format", *(name for name, _ in self.cascade()), *later]


def judges_of(critics: CriticsConfig, name: str) -> tuple[list[JudgeLLMConfig], Aggregate]:
    """The judge settings of an LLM critic (one, or a jury's), each layered over ``critics.llm``,
    and how their verdicts are aggregated. A critic's own judge or jury beats the run-wide ones."""
    config = critics.settings_of(name)
    if not isinstance(config, LLMCriticConfig):
        return [], "majority"
    own_judge = bool(config.llm.model_fields_set)
    jury = config.jury or (None if own_judge else critics.jury)
    layers = [config.llm] if jury is None else list(jury.judges)
    # the temperature nearest the judge wins: its own, the critic's, critics.llm's, the critic's default
    own_temperature = config.temperature if "temperature" in config.model_fields_set else None
    judges = []
    for layer in layers:
        temperature = next(
            t
            for t in (layer.temperature, own_temperature, critics.llm.temperature, config.temperature)
            if t is not None
        )
        judges.append(layer.over(critics.llm).model_copy(update={"temperature": temperature}))
    return judges, jury.aggregate if jury else "majority"


def _built_in(scope: Scope) -> tuple[str, ...]:
    fields = CriticsConfig.model_fields
    return tuple(
        name
        for name, info in fields.items()
        if isinstance(info.annotation, type)
        and issubclass(info.annotation, CriticConfig)
        and info.annotation.scope == scope
    )


@cache
def plugin_critics() -> dict[str, CriticSpec]:
    """The critics installed packages declare (entry points in ``persona_factory.critics``), by
    name. A plugin critic judges one dialogue at a time and is off until a recipe turns it on, so
    installing a package changes no run that does not name it."""
    found: dict[str, CriticSpec] = {}
    for where, spec in plugin_objects(CRITICS_GROUP):
        if not isinstance(spec, CriticSpec):
            raise PluginError(f"plugin {where} names a {type(spec).__name__}, not a CriticSpec")
        if not issubclass(spec.settings, CriticConfig) or spec.settings.scope != "dialogue":
            raise PluginError(f"plugin {where}: its settings are a CriticConfig judging one dialogue")
        if spec.name in CriticsConfig.model_fields or spec.name in found:
            raise PluginError(f"plugin {where}: the critic name {spec.name!r} is taken")
        if spec.settings().enabled:
            raise PluginError(f"plugin {where}: critic {spec.name} is on by default; a plugin's is off until named")
        found[spec.name] = spec
    return found


def critic_names(scope: Scope) -> tuple[str, ...]:
    """The critics that judge at this scope: the built-in ones in the order CriticsConfig declares
    them, then the plugins'."""
    return _built_in(scope) + (tuple(plugin_critics()) if scope == "dialogue" else ())


def all_critic_names() -> tuple[str, ...]:
    return critic_names("dialogue") + critic_names("cast") + critic_names("run")


def settings_class(name: str) -> type[CriticConfig]:
    """The settings class of the critic called ``name`` (KeyError when there is none)."""
    if name in plugin_critics():
        settings = plugin_critics()[name].settings
        assert issubclass(settings, CriticConfig)  # checked when the plugin was loaded
        return settings
    field = CriticsConfig.model_fields.get(name)
    annotation = field.annotation if field else None
    if not (isinstance(annotation, type) and issubclass(annotation, CriticConfig)):
        raise KeyError(name)
    return annotation


def needs_llm(name: str) -> bool:
    """Whether the critic asks a model (its settings are an LLM critic's), or judges by rules alone."""
    return issubclass(settings_class(name), LLMCriticConfig)

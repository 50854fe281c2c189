"""The factory's public Python API: what scripts, notebooks and ``bench/`` use.

Everything named in ``__all__`` keeps its name and meaning between minor releases; every other
module is the factory's inside and may change. The command line is a thin layer over these calls.

    from factory.api import load_recipe, apply_overrides, plan_run, run_recipe

    recipe = apply_overrides(load_recipe("pipelines/quickstart.yaml"), base_url="http://localhost:8000/v1")
    print(plan_run(recipe).render())
    result = run_recipe(recipe, "out/quickstart")

The distilabel steps are ``factory.distilabel``'s (importing it imports distilabel); the recipe as
a distilabel pipeline is :func:`distilabel_pipeline`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from factory.bank import BankResult, build_bank
from factory.calibrate import Calibration, calibrate_version
from factory.critics.base import JudgeContext
from factory.critics.evaluate import EvalRequest, auroc, measure_critics
from factory.critics.heuristic import heuristic_verdict
from factory.critics.learned.critic import embedder_for_critics, verdict
from factory.critics.learned.features import features
from factory.critics.learned.model import SHIPPED, LearnedCritic, load_critic, part_of
from factory.critics.learned.train import TrainingData, spc_training_data, train_critic
from factory.critics.registry import critic_spec, critic_specs, verdict_of
from factory.dataset.pipeline_file import GENERATOR_NAME
from factory.engine.distributed import ray_session
from factory.engine.journal import RunJournal
from factory.engine.processor import judge
from factory.engine.rounds import execute, plan_rows
from factory.errors import (
    BudgetReached,
    EmbeddedServerError,
    EndpointError,
    FactoryError,
    HubError,
    InputError,
    LLMCallError,
    OutputError,
    PersonaFileError,
    PipelineError,
    PluginError,
    RecipeError,
    ReviewError,
)
from factory.hub import PushResult, push_version
from factory.llm.embedded import EMBEDDED_MODEL_ALIAS, EMBEDDED_PARALLEL, EmbeddedServer, embedded_model_path
from factory.llm.keys import ApiKeys
from factory.llm.spec import EndpointSpec
from factory.llm.tasks import JsonTaskRunner
from factory.model_eval import EvalModelRequest, EvalModelResult, evaluate_models
from factory.personas import CastPlan
from factory.personas import plan as plan_casts
from factory.personas.statements import load_spc_rows
from factory.plan import plan_run
from factory.plan.report import RunPlan
from factory.recipes import PersonaBankRecipe, Recipe, apply_overrides, load_recipe, parse_recipe
from factory.recipes.critics import CriticConfig, CriticsConfig, HeuristicCriticConfig, LLMCriticConfig
from factory.recipes.extensions import CriticSpec
from factory.recipes.generation import GenerationConfig
from factory.recipes.llm import LLMConfig
from factory.recipes.paths import resolve_recipe_path
from factory.records import DialogueRecord, GenerationMeta, PersonaProfile, Turn, Verdict
from factory.rejudge import ChatMapping, JudgeResult, JudgeSettings, judge_source, load_source
from factory.review import approve_version, label_version, open_target, reject_version, sample_dialogues, sign_version
from factory.run import RunResult, run_recipe
from factory.settings import resolve_data_path

if TYPE_CHECKING:
    from distilabel.models.llms.base import LLM
    from distilabel.pipeline import Pipeline

__all__ = [  # noqa: RUF022 - grouped by use, not sorted
    # recipes: load, override, plan, run
    "Recipe", "PersonaBankRecipe", "load_recipe", "parse_recipe", "apply_overrides", "resolve_recipe_path",
    "RunPlan", "plan_run", "CastPlan", "plan_casts", "RunResult", "run_recipe", "BankResult", "build_bank",
    "GenerationConfig", "LLMConfig",
    # the engine's parts, for measuring it: the prompts of planned casts, executing them into a journal
    "EndpointSpec", "ApiKeys", "RunJournal", "plan_rows", "execute", "ray_session", "JsonTaskRunner",
    "EmbeddedServer", "EMBEDDED_MODEL_ALIAS", "EMBEDDED_PARALLEL", "embedded_model_path",
    # critics: the registry, judging, measuring
    "CriticSpec", "critic_spec", "critic_specs", "CriticConfig", "LLMCriticConfig", "CriticsConfig",
    "HeuristicCriticConfig", "JudgeContext", "judge", "verdict_of", "heuristic_verdict",
    "EvalRequest", "measure_critics", "auroc", "Calibration", "calibrate_version",
    # the learned critic: the shipped one, training, its parts (embedding, features, verdict)
    "SHIPPED", "LearnedCritic", "load_critic", "part_of", "TrainingData", "spc_training_data", "train_critic",
    "embedder_for_critics", "features", "verdict",
    # judging what exists again, evaluating chat models
    "ChatMapping", "JudgeSettings", "JudgeResult", "judge_source", "load_source",
    "EvalModelRequest", "EvalModelResult", "evaluate_models",
    # publishing and review
    "PushResult", "push_version", "open_target", "sample_dialogues", "label_version", "sign_version",
    "approve_version", "reject_version",
    # records and data
    "DialogueRecord", "GenerationMeta", "PersonaProfile", "Turn", "Verdict", "load_spc_rows", "resolve_data_path",
    # errors
    "FactoryError", "InputError", "RecipeError", "PersonaFileError", "PluginError", "EndpointError",
    "LLMCallError", "BudgetReached", "EmbeddedServerError", "OutputError", "PipelineError", "HubError",
    "ReviewError",
    # distilabel: a recipe as a pipeline, and the name of its one engine step
    "distilabel_pipeline", "GENERATOR_NAME",
]  # fmt: skip


def distilabel_pipeline(
    recipe_text: str, name: str, mode: Literal["engine", "steps"] = "engine", llm: LLM | None = None
) -> Pipeline:
    """The recipe as a distilabel pipeline: one step on the factory's engine, or its parts as steps
    (imports distilabel, which nothing else here does)."""
    from factory.distilabel.engine import build_pipeline

    return build_pipeline(recipe_text, name, mode, llm)

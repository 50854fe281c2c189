"""`persona-factory eval-model`: a chat model on a version's held-out personas."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from factory.recipes.llm import LLMConfig

BaseURL = Annotated[
    str | None, typer.Option(help="The model under test's OpenAI-compatible endpoint; none: the embedded model.")
]
CompareBaseURL = Annotated[
    str | None, typer.Option(help="A second model's endpoint, evaluated on the same personas and compared.")
]
JudgeBaseURL = Annotated[
    str | None,
    typer.Option(help="The critics' judge (or PERSONA_FACTORY_JUDGE_BASE_URL); none: the embedded model."),
]
Questions = Annotated[
    str | None,
    typer.Option(help="Instead of the simulator: builtin (PersonaGym-style), or a file with a question per line."),
]
Experts = Annotated[str, typer.Option(help="Critics to judge with, comma separated.")]


def eval_model(
    dataset: str = typer.Argument(..., help="A dataset folder, or hf://org/name, with a messages test split."),
    out: Path = typer.Option(..., "--out", "-o", help="The evaluation folder to write (new, or empty)."),
    base_url: BaseURL = None,
    model: str | None = typer.Option(None, help="The model under test's name at that endpoint."),
    compare_base_url: CompareBaseURL = None,
    compare_model: str | None = typer.Option(None, help="The second model's name at its endpoint."),
    judge_base_url: JudgeBaseURL = None,
    judge_model: str | None = typer.Option(None, help="The judge's model (or PERSONA_FACTORY_JUDGE_MODEL)."),
    simulator_base_url: str | None = typer.Option(None, help="The user simulator's endpoint; none: the judge's."),
    simulator_model: str | None = typer.Option(None, help="The user simulator's model."),
    revision: str | None = typer.Option(None, help="The version (a folder's tag, or a Hub revision); default latest."),
    split: str = typer.Option("test", help="Whose personas: the messages config's test split, or train."),
    personas: int | None = typer.Option(None, min=1, help="At most this many personas (a seeded draw); default all."),
    turns: int = typer.Option(4, min=1, max=50, help="Exchanges per conversation: the simulator's line, the model's."),
    questions: Questions = None,
    experts: Experts = "apc,portrayal,attribution,faithfulness",
    recipe: Path | None = typer.Option(None, help="Take the critics' settings from this recipe's `critics`."),
    temperature: float = typer.Option(0.7, min=0.0, max=2.0, help="The models' sampling temperature."),
    seed: int = typer.Option(0, help="Which personas, which partners, and the calls' seeds."),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Evaluate a chat model on a dataset version's held-out personas: it plays each against the
    factory's user simulator, the critics judge the transcripts, and the figures (per persona cell
    and overall, with 95% intervals) go to --out as report.json and a dataset card. With
    --compare-base-url, two models on the same personas, and whether they differ beyond the intervals."""
    from factory.model_eval import EvalModelRequest, evaluate_models, load_questions
    from factory.recipes import judge_override, load_recipe
    from factory.recipes.critics import CriticsConfig
    from factory.recipes.llm import LLMConfig

    models = _models_under_test(base_url, model, compare_base_url, compare_model)
    request = EvalModelRequest(
        source=dataset,
        out=out,
        models=models,
        revision=revision,
        judge=judge_override(judge_base_url, judge_model),
        simulator=LLMConfig(base_url=simulator_base_url, model=simulator_model) if simulator_base_url else None,
        critics=load_recipe(recipe).critics if recipe else CriticsConfig(),
        experts=[name.strip() for name in experts.split(",") if name.strip()],
        split=split,
        personas=personas,
        turns=turns,
        questions=load_questions(questions) if questions else (),
        seed=seed,
        temperature=temperature,
        show_progress=progress,
    )
    result = evaluate_models(request)
    typer.echo(result.summary())
    result.check_answered()  # exit 1 after the figures when a critic measured nothing


def _models_under_test(
    base_url: str | None, model: str | None, compare_base_url: str | None, compare_model: str | None
) -> list[LLMConfig]:
    """The model under test (the environment's endpoint, or the embedded model), and the one it is compared with."""
    from factory.recipes.llm import LLMConfig
    from factory.settings import environment

    if compare_model and not compare_base_url:
        raise typer.BadParameter("--compare-model needs --compare-base-url", param_hint="--compare-model")
    env = environment()
    models = [LLMConfig(base_url=base_url or env.base_url, model=model or env.model)]
    if compare_base_url:
        models.append(LLMConfig(base_url=compare_base_url, model=compare_model))
    return models

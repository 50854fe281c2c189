"""``persona-factory critics train``: fit the learned critic and write it as a folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from factory.cli.options import JudgeBaseURL, JudgeModel
from factory.cli.review import TARGET_HELP, VERSION_HELP

if TYPE_CHECKING:
    from factory.recipes.critics import CriticsConfig
    from factory.recipes.llm import LLMConfig


def critics_train(
    out: Path = typer.Option(
        ..., help="The folder to write the trained critic into (a recipe's critics.learned.model)."
    ),
    data: str = typer.Option(
        "builtin:synthetic_persona_chat", help="Real persona conversations (SPC CSV or JSONL): the positives."
    ),
    corruptions: str = typer.Option("all", help="Comma-separated corruptions to make the negatives with, or all."),
    reviewed: str | None = typer.Option(None, help="Add the reviewers' labels of this version. " + TARGET_HELP),
    version: str | None = typer.Option(None, help=VERSION_HELP),
    from_judge: int = typer.Option(
        0, "--from-judge", min=0, help="Label this many dialogues of --dialogues with the faithfulness judge, once."
    ),
    dialogues: str | None = typer.Option(None, help="The version --from-judge labels. " + TARGET_HELP),
    recipe: Path | None = typer.Option(None, help="Take the judge's settings (critics, llm) from this recipe."),
    base_url: str | None = typer.Option(None, help="OpenAI-compatible endpoint; none starts the embedded model."),
    model: str | None = typer.Option(None, help="Model name at that endpoint."),
    judge_base_url: JudgeBaseURL = None,
    judge_model: JudgeModel = None,
    seed: int = typer.Option(0, help="Which windows and corruptions are drawn, and the fits' seeds."),
) -> None:
    """Train a small critic on real conversations (positives) and corruptions of them (negatives):
    persona swapped, turns shuffled or truncated, own lines repeated, boilerplate inserted, speakers
    exchanged; with --reviewed, a version's labelled dialogues too, and with --from-judge, a judge's
    verdicts on a sample of a version. Prints its held-out figures."""
    from factory.critics.learned.corruptions import CORRUPTIONS
    from factory.critics.learned.critic import embedder_for_critics
    from factory.critics.learned.train import combined, judged_data, reviewed_data, spc_training_data, train_critic
    from factory.errors import InputError
    from factory.settings import resolve_data_path

    names = list(CORRUPTIONS) if corruptions == "all" else [n.strip() for n in corruptions.split(",") if n.strip()]
    unknown = [name for name in names if name not in CORRUPTIONS]
    if unknown or not names:
        raise InputError(
            f"unknown corruption(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(CORRUPTIONS)}",
            field="--corruptions",
        )
    training = spc_training_data(resolve_data_path(data, Path.cwd()))
    if reviewed is not None:
        training = combined(training, reviewed_data(reviewed, version))
    if from_judge:
        if dialogues is None:
            raise InputError(
                "--from-judge labels the dialogues of a version: name it with --dialogues", field="--dialogues"
            )
        critics, llm = _judge_settings(recipe, base_url, model, judge_base_url, judge_model)
        training = combined(training, judged_data(dialogues, None, from_judge, critics, llm, seed))
    critic = train_critic(training, embedder_for_critics(), corruptions=names, seed=seed, say=typer.echo)
    critic.save(out)
    typer.echo("\n".join([*_held_out_lines(critic.meta["held_out"], critic.threshold), str(out)]))


def _held_out_lines(held_out: dict[str, Any], threshold: float) -> list[str]:
    return [
        f"held out: {held_out['dialogues']} dialogues, AUROC {held_out['auroc']:.3f}, originals passed "
        f"{held_out['originals_passed']:.2f} at threshold {threshold:.3f}",
        *(
            f"  {kind:<22} AUROC {figures['auroc']:.3f}  rejected {figures['rejected']:.2f}"
            for kind, figures in held_out["corruptions"].items()
        ),
    ]


def _judge_settings(
    recipe: Path | None, base_url: str | None, model: str | None, judge_base_url: str | None, judge_model: str | None
) -> tuple[CriticsConfig, LLMConfig]:
    """The critics and endpoint --from-judge asks: the recipe's, with the flags over them."""
    from factory.recipes import apply_overrides, judge_override, load_recipe
    from factory.recipes.critics import CriticsConfig
    from factory.recipes.llm import LLMConfig

    loaded = apply_overrides(load_recipe(recipe), base_url=base_url, model=model) if recipe else None
    critics = loaded.critics if loaded else CriticsConfig()
    judge = judge_override(judge_base_url, judge_model)
    if judge is not None:
        critics = critics.model_copy(update={"llm": judge.over(critics.llm)})
    return critics, loaded.llm if loaded else LLMConfig(base_url=base_url, model=model)

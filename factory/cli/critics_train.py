"""``persona-factory critics train``: fit the learned critic and write it as a folder."""

from __future__ import annotations

from pathlib import Path

import typer

from factory.cli.review import TARGET_HELP, VERSION_HELP


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
    seed: int = typer.Option(0, help="Which windows and corruptions are drawn, and the fits' seeds."),
) -> None:
    """Train a small critic on real conversations (positives) and corruptions of them (negatives):
    persona swapped, turns shuffled or truncated, own lines repeated, boilerplate inserted, speakers
    exchanged; with --reviewed, a version's labelled dialogues too. Prints its held-out figures."""
    from factory.critics.learned.corruptions import CORRUPTIONS
    from factory.critics.learned.critic import embedder_for_critics
    from factory.critics.learned.train import combined, reviewed_data, spc_training_data, train_critic
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
    critic = train_critic(training, embedder_for_critics(), corruptions=names, seed=seed, say=typer.echo)
    critic.save(out)
    held_out = critic.meta["held_out"]
    lines = [
        f"held out: {held_out['dialogues']} dialogues, AUROC {held_out['auroc']:.3f}, originals passed "
        f"{held_out['originals_passed']:.2f} at threshold {critic.threshold:.3f}",
        *(
            f"  {kind:<22} AUROC {figures['auroc']:.3f}  rejected {figures['rejected']:.2f}"
            for kind, figures in held_out["corruptions"].items()
        ),
        str(out),
    ]
    typer.echo("\n".join(lines))

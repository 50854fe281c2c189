"""``persona-factory critics calibrate``: the critics of a version against its reviewers' labels."""

from __future__ import annotations

from pathlib import Path

import typer

from factory.cli.review import TARGET_HELP, VERSION_HELP


def critics_calibrate(
    target: str = typer.Argument(..., help=TARGET_HELP),
    version: str | None = typer.Option(None, help=VERSION_HELP),
    target_precision: float = typer.Option(
        0.9, help="Propose, for each score-based critic, the threshold whose passes reach this precision."
    ),
    write_recipe: Path | None = typer.Option(
        None,
        help="Write the proposed thresholds into this recipe (created from the version's recipe if missing; "
        "YAML comments are not kept).",
    ),
) -> None:
    """Per critic: precision, recall and AUROC against the in-character labels, with Wilson 95%
    intervals, and the accepted split's audited in-character rate; written into the card."""
    from factory.calibrate import calibrate_version, render_table, write_thresholds

    calibration = calibrate_version(target, version, target_precision)
    lines = [
        f"{calibration.version}: {calibration.labels} labelled dialogues; accepted split in character: "
        f"{calibration.accepted_in_character.show()}",
        "",
        render_table(calibration),
    ]
    if write_recipe is not None:
        from factory.review import open_target

        recipe_text = open_target(target).file(calibration.version, "recipe.yaml").decode("utf-8")
        changed = write_thresholds(write_recipe, calibration, recipe_text)
        lines += ["", f"{write_recipe}: {'; '.join(changed) or 'no threshold proposed, nothing changed'}"]
    typer.echo("\n".join(lines))

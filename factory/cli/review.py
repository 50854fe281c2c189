"""``persona-factory review``: a version's review, from its card, to a release or a rejection."""

from __future__ import annotations

import typer

from factory.errors import InputError

review_app = typer.Typer(
    no_args_is_help=True, help="Review a version from its dataset card, then release or reject it."
)

TARGET_HELP = "A dataset or bank folder, or a Hub repository written hf://org/name."
VERSION_HELP = "The version; the latest in review when unset."


@review_app.command("show")
def review_show(
    target: str = typer.Argument(..., help=TARGET_HELP), version: str | None = typer.Option(None, help=VERSION_HELP)
) -> None:
    """The review state: status, checklist, samples to read, sign-offs."""
    from factory.dataset.review_section import read_state
    from factory.review import card_of, opened

    place, version = opened(target, version)
    state = read_state(card_of(place, version))
    lines = [f"{place.name} {version}: {state.status}"]
    lines += [f"  [{'x' if state.checklist[key] else ' '}] {key}: {text}" for key, text in state.items.items()]
    lines += [f"  read ({split}): {', '.join(ids)}" for split, ids in state.samples.items()]
    lines += [
        f"  signed: {s['reviewer']} {s['decision']} ({s['date']}) {s.get('notes', '')}".rstrip() for s in state.signoffs
    ]
    typer.echo("\n".join(lines))


@review_app.command("sample")
def review_sample(
    target: str = typer.Argument(..., help=TARGET_HELP), version: str | None = typer.Option(None, help=VERSION_HELP)
) -> None:
    """Print the dialogues the card asks the reviewer to read."""
    from factory.review import format_dialogue, opened, sample_dialogues

    place, version = opened(target, version)
    typer.echo("\n".join(format_dialogue(row) for row in sample_dialogues(place, version)))


@review_app.command("sign")
def review_sign(
    target: str = typer.Argument(..., help=TARGET_HELP),
    reviewer: str = typer.Option(..., help="Who signs."),
    decision: str = typer.Option(..., help="approve or reject."),
    notes: str = typer.Option("", help="What the reviewer found."),
    check: list[str] = typer.Option(
        [],
        help="Checklist items confirmed: coverage, samples_read, no_harm, and critics (dialogues) or dropped (persona banks).",
    ),
    version: str | None = typer.Option(None, help=VERSION_HELP),
) -> None:
    """Record a reviewer's decision, notes and ticked checklist items in the card."""
    from factory.review import DECISIONS, opened, sign_version

    if decision not in DECISIONS:  # before the target is opened: a typo costs no request
        raise InputError(f"decision must be approve or reject, not {decision!r}", field="--decision")
    place, version = opened(target, version)
    state = sign_version(place, version, reviewer, decision, notes, check)
    missing = ", ".join(state.missing) or "none"
    typer.echo(f"{version}: {reviewer} signed ({decision}); checklist items left: {missing}")


@review_app.command("approve")
def review_approve(
    target: str = typer.Argument(..., help=TARGET_HELP), version: str | None = typer.Option(None, help=VERSION_HELP)
) -> None:
    """Release a reviewed version: refused while the checklist is incomplete."""
    from factory.review import approve_version, opened

    place, version = opened(target, version)
    approve_version(place, version)
    typer.echo(f"{version} is approved and released as the tag {version} on main of {place.name}")


@review_app.command("reject")
def review_reject(
    target: str = typer.Argument(..., help=TARGET_HELP),
    reason: str = typer.Option(..., help="Why the version is rejected (written into the card)."),
    version: str | None = typer.Option(None, help=VERSION_HELP),
) -> None:
    """Close a review without releasing the version; the reasons go into the card."""
    from factory.review import opened, reject_version

    place, version = opened(target, version)
    reject_version(place, version, reason)
    typer.echo(f"{version} is rejected: {reason}")

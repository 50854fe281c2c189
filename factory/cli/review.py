"""``persona-factory review``: a version's review, from its card, to a release or a rejection."""

from __future__ import annotations

from pathlib import Path

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
        f"  labelled: {label['id']} by {label['reviewer']}: in character {'yes' if label['in_character'] else 'no'}, "
        f"quality {label['quality']}" + (f", flags {', '.join(label['flags'])}" if label["flags"] else "")
        for label in state.labels
    ]
    if state.labels_required and state.unlabelled:
        lines.append(f"  to label: {', '.join(state.unlabelled)}")
    lines += [
        f"  signed: {s['reviewer']} {s['decision']} ({s['date']}) {s.get('notes', '')}".rstrip() for s in state.signoffs
    ]
    typer.echo("\n".join(lines))


@review_app.command("label")
def review_label(
    target: str = typer.Argument(..., help=TARGET_HELP),
    dialogue_id: str = typer.Option(..., "--id", help="A sampled dialogue's id (`review show` lists them)."),
    reviewer: str = typer.Option(..., help="Who labels."),
    in_character: str = typer.Option(..., help="yes or no: does every speaker stay in character?"),
    quality: int = typer.Option(..., help="1 (unusable) to 5 (worth training on)."),
    flag: list[str] = typer.Option([], help="toxic, identifying, off_persona or repetitive; repeatable."),
    note: str = typer.Option("", help="What the reviewer saw."),
    version: str | None = typer.Option(None, help=VERSION_HELP),
) -> None:
    """Label one sampled dialogue in the card: in character, quality, flags."""
    from factory.review import label_version, opened

    if in_character not in ("yes", "no"):
        raise InputError(f"in-character must be yes or no, not {in_character!r}", field="--in-character")
    place, version = opened(target, version)
    label = {"id": dialogue_id, "in_character": in_character == "yes", "quality": quality, "flags": flag, "note": note}
    state = label_version(place, version, reviewer, label)
    left = ", ".join(state.unlabelled) or "none"
    typer.echo(f"{version}: {dialogue_id} labelled by {reviewer}; sampled dialogues left to label: {left}")


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


@review_app.command("app")
def review_app_command(
    target: str = typer.Argument(..., help=TARGET_HELP),
    version: str | None = typer.Option(None, help=VERSION_HELP),
    host: str = typer.Option("127.0.0.1", help="Address to serve on (0.0.0.0 for every interface)."),
    port: int = typer.Option(7860, help="Port to serve on."),
    space: Path | None = typer.Option(
        None, help="Instead of serving: write app.py, requirements.txt and README.md of a Hugging Face Space here."
    ),
) -> None:
    """The review in a web page: summary and charts, each sampled dialogue with its verdicts, a label
    form, the checklist, sign, approve and reject; the same card state as the other review commands."""
    from factory.hub import HUB_PREFIX

    if space is not None:
        from factory.review.app import write_space

        if not target.startswith(HUB_PREFIX):
            raise InputError(f"a Space reviews a Hub dataset: write the target as {HUB_PREFIX}org/name", field="TARGET")
        written = write_space(target[len(HUB_PREFIX) :], space)
        typer.echo(f"wrote {', '.join(str(path) for path in written)}; push the folder as a Gradio Space")
        return
    try:
        import gradio  # noqa: F401
    except ImportError as missing:
        raise InputError("the review app needs Gradio: pip install 'persona-factory[review]'") from missing
    from factory.listening import check_port
    from factory.review.app import launch

    check_port(host, port)
    launch(target, version, host, port)

"""The ``persona-factory`` command. Thin: parse flags, call the library, print results.

Errors the factory raises on purpose become one line on stderr (exit 2 for bad input, 1 for
everything else); set ``PERSONA_FACTORY_TRACEBACK=1`` to see the full traceback instead.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from factory.errors import FactoryError, InputError
from factory.settings import PACKAGED_RECIPES

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    help="Synthetic persona dialogue dataset factory.",
)
schemas_app = typer.Typer(no_args_is_help=True, help="JSON Schemas of the published records.")
app.add_typer(schemas_app, name="schemas")
personas_app = typer.Typer(no_args_is_help=True, help="Persona banks: build them, then seed dialogue runs from them.")
app.add_typer(personas_app, name="personas")
critics_app = typer.Typer(no_args_is_help=True, help="The expert critics: measure them against labelled data.")
app.add_typer(critics_app, name="critics")
review_app = typer.Typer(
    no_args_is_help=True, help="Review a version from its dataset card, then release or reject it."
)
app.add_typer(review_app, name="review")

TARGET_HELP = "A dataset or bank folder, or a Hub repository written hf://org/name."
JudgeBaseURL = Annotated[
    str | None,
    typer.Option(help="Endpoint of the critics' judge (or PERSONA_FACTORY_JUDGE_BASE_URL); none: the generator's."),
]
JudgeModel = Annotated[str | None, typer.Option(help="The judge's model (or PERSONA_FACTORY_JUDGE_MODEL).")]
VERSION_HELP = "The version; the latest in review when unset."


def resolve_recipe_path(recipe: str) -> Path:
    """A path, or the name of a recipe shipped with the package (``quickstart``)."""
    path = Path(recipe)
    if path.exists() or path.suffix in (".yaml", ".yml"):
        return path
    packaged = PACKAGED_RECIPES / f"{recipe}.yaml"
    return packaged if packaged.is_file() else path


@app.command()
def run(
    recipe: str = typer.Argument(..., help="Recipe YAML (or the name of a packaged recipe, e.g. quickstart)."),
    out: Path = typer.Option(..., "--out", "-o", help="Dataset folder; each run adds the next version."),
    base_url: str | None = typer.Option(None, help="OpenAI-compatible endpoint; none starts the embedded model."),
    model: str | None = typer.Option(None, help="Model name at that endpoint."),
    judge_base_url: JudgeBaseURL = None,
    judge_model: JudgeModel = None,
    ray_address: str | None = typer.Option(None, help="Ray cluster to join (or RAY_ADDRESS); none starts local Ray."),
    ray: bool | None = typer.Option(
        None, "--ray/--no-ray", help="Run on Ray workers, or in this process (default: the recipe's ray.enabled)."
    ),
    cache: bool = typer.Option(True, "--cache/--no-cache", help="Answer questions asked before from the reply cache."),
    resume: bool = typer.Option(False, "--resume", help="Continue the interrupted run in --out (same recipe)."),
    restart: bool = typer.Option(False, "--restart", help="Discard the interrupted run in --out and start over."),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Run a recipe end to end and publish the result as a new version of the dataset folder.

    Finished dialogues are journaled as they finish; a run that is killed leaves no version and can
    be continued with --resume, which generates and judges only what is not finished.
    """
    from factory.recipes import apply_overrides, load_recipe
    from factory.run import run_recipe

    if resume and restart:
        raise typer.BadParameter("choose one of --resume and --restart")
    path = resolve_recipe_path(recipe)
    loaded = apply_overrides(
        load_recipe(path), base_url=base_url, model=model, ray_address=ray_address,
        judge_base_url=judge_base_url, judge_model=judge_model,
    )  # fmt: skip
    if ray is not None:
        loaded = loaded.model_copy(update={"ray": loaded.ray.model_copy(update={"enabled": ray})})
    if not cache:
        llm = loaded.llm.model_copy(update={"cache": loaded.llm.cache.model_copy(update={"enabled": False})})
        loaded = loaded.model_copy(update={"llm": llm})
    try:
        result = run_recipe(
            loaded,
            out,
            recipe_text=path.read_text(encoding="utf-8"),
            show_progress=progress,
            resume=resume,
            restart=restart,
        )
    except (KeyboardInterrupt, Interrupted) as exc:
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        raise Interrupted(signum, f"; the finished dialogues are kept: continue with --resume --out {out}") from None
    typer.echo(result.summary())


@personas_app.command("build")
def personas_build(
    recipe: str = typer.Argument(..., help="Bank recipe YAML (or a packaged one, e.g. mbti_bank)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Bank folder; default out/<recipe name>."),
    base_url: str | None = typer.Option(None, help="OpenAI-compatible endpoint; none starts the embedded model."),
    model: str | None = typer.Option(None, help="Model name at that endpoint."),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Build a persona bank and publish it as the next version of the bank folder."""
    from factory.bank import build_bank
    from factory.recipes import PersonaBankRecipe, apply_overrides, load_recipe

    path = resolve_recipe_path(recipe)
    loaded = apply_overrides(load_recipe(path, PersonaBankRecipe), base_url=base_url, model=model)
    result = build_bank(
        loaded, out or Path("out") / loaded.name, recipe_text=path.read_text(encoding="utf-8"), show_progress=progress
    )
    coverage = result.coverage
    kinds = ", ".join(f"{kind} {n}" for kind, n in coverage.by_kind.items())
    lines = [
        f"version     {result.version}" + (f" (after {result.previous_version})" if result.previous_version else ""),
        f"personas    {coverage.personas} ({kinds}); {len(result.dropped)} dropped",
    ]
    if coverage.by_mbti:
        covered = sum(1 for n in coverage.by_mbti.values() if n)
        lines.append(f"mbti        {covered} of 16 types")
    agreement = result.manifest["reports"].get("implicit_agreement")
    if agreement:
        lines.append(
            f"agreement   objective top-1 {agreement['objective_top1']:.2f}, subjective top-1 "
            f"{agreement['subjective_top1']:.2f} (chance {agreement['chance_top1']:.2f}; see the card)"
        )
    lines += [f"time        {result.seconds:.1f}s", str(result.path)]
    typer.echo("\n".join(lines))


@critics_app.command("eval")
def critics_eval(
    data: str = typer.Argument(
        "builtin:synthetic_persona_chat",
        help="SPC conversations (CSV/JSONL: originals vs persona-swapped) or JSONL of rated dialogues.",
    ),
    experts: str = typer.Option(
        ",".join(("grounding", "faithfulness", "apc", "quality")), help="Comma-separated experts to measure."
    ),
    count: int = typer.Option(20, min=1, help="SPC conversations to use (each also swapped and shuffled)."),
    seed: int = typer.Option(0, help="Which conversations, and which personas are swapped in."),
    out: Path | None = typer.Option(
        None, help="Write the report as JSON (a recipe's critics.report can show it in the card)."
    ),
    recipe: Path | None = typer.Option(None, help="Take the experts' settings from this recipe's `critics`."),
    base_url: str | None = typer.Option(None, help="OpenAI-compatible endpoint; none starts the embedded model."),
    model: str | None = typer.Option(None, help="Model name at that endpoint."),
    judge_base_url: JudgeBaseURL = None,
    judge_model: JudgeModel = None,
    per_item: Path | None = typer.Option(
        None, "--per-item", help="Write each item's verdict as JSONL, to read the disagreements."
    ),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Measure the critics, each against the label of what it judges: accuracy and AUROC on faithful
    vs persona-swapped dialogues, pairwise accuracy of the quality expert, agreement with human
    labels and ratings where the data has them. Unanswered judge calls are counted apart."""
    import json

    from factory.critics.evaluate import (
        EvalRequest,
        check_answered,
        critic_names_asked,
        measure_critics,
        report_table,
        write_items,
    )
    from factory.recipes import apply_overrides, judge_override, load_recipe
    from factory.recipes.llm import LLMConfig
    from factory.settings import environment

    loaded = load_recipe(recipe) if recipe else None
    env = environment()
    llm = (
        apply_overrides(loaded, base_url=base_url, model=model).llm
        if loaded
        else LLMConfig(base_url=base_url or env.base_url, model=model or env.model)
    )
    judge = judge_override(judge_base_url, judge_model)
    request = EvalRequest(critic_names_asked(experts), data, count, seed, loaded, llm, judge, show_progress=progress)
    report, evaluation = measure_critics(request)
    if per_item:
        write_items(per_item, evaluation)
    check_answered(evaluation.figures)
    lines = report_table(evaluation.figures)
    if out:
        out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        lines.append(str(out))
    if per_item:
        lines.append(str(per_item))
    typer.echo("\n".join(lines))


@app.command()
def push(
    folder: Path = typer.Argument(..., help="A dataset or persona bank folder."),
    repo: str = typer.Option(..., "--repo", help="Hub dataset repository, org/name."),
    version: str | None = typer.Option(None, help="The version to push; the latest when unset."),
    private: bool = typer.Option(False, help="Create the repository as private."),
) -> None:
    """Push a version to the Hub as a pull request for review (HF_ENDPOINT and HF_TOKEN are honoured)."""
    from factory.hub import push_version

    result = push_version(folder, repo, version=version, private=private)
    messages = {
        "opened": f"{result.version} is up for review as pull request #{result.pr_num} of {repo}",
        "in_review": f"{result.version} is already in review as pull request #{result.pr_num} of {repo}; nothing pushed",
        "released": f"{result.version} is already released in {repo}; nothing pushed",
    }
    typer.echo(messages[result.state])


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


@app.command()
def serve(
    port: int | None = typer.Option(None, help="Port on 127.0.0.1 (default: a free one)."),
    n_ctx: int = typer.Option(4096, help="Context window."),
    log: Path | None = typer.Option(None, help="Keep the server's log in this file (default: none is kept)."),
) -> None:
    """Start the embedded llama.cpp server (SmolLM2-135M-Instruct) for other tools; Ctrl-C stops it."""
    import time

    from factory.llm.embedded import EmbeddedServer

    with EmbeddedServer(port=port, n_ctx=n_ctx, log_path=log) as server:
        where = f" (log: {log})" if log else ""
        typer.echo(f"serving {server.model} at {server.base_url}{where}; Ctrl-C to stop")
        while True:
            time.sleep(1)


@schemas_app.command("export")
def schemas_export(
    directory: Path = typer.Argument(Path("schemas"), help="Where to write the *.schema.json files."),
) -> None:
    """Write the JSON Schema of every published record, generated from the pydantic models."""
    from factory.records import export_json_schemas

    for path in export_json_schemas(directory):
        typer.echo(str(path))


@schemas_app.command("check")
def schemas_check(directory: Path = typer.Argument(Path("schemas"))) -> None:
    """Fail when the schema files differ from the models (run `schemas export` to update them)."""
    from factory.records import json_schemas, render_schema

    stale = [
        stem
        for stem, schema in json_schemas().items()
        if not (directory / f"{stem}.schema.json").is_file()
        or (directory / f"{stem}.schema.json").read_text(encoding="utf-8") != render_schema(schema)
    ]
    if stale:
        raise InputError(
            f"out of date: {', '.join(stale)}; run `persona-factory schemas export {directory}`", path=directory
        )
    typer.echo("schemas are up to date")


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM: not an error of the work, so no ``except Exception`` swallows it."""

    def __init__(self, signum: int, hint: str = "") -> None:
        super().__init__(signum)
        self.signum, self.hint = signum, hint


def _terminated(signum: int, frame: object) -> None:
    raise Interrupted(signum)


def main() -> None:
    """Exit codes: 0 done, 1 failed, 2 bad input, 130 Ctrl-C, 143 SIGTERM (128 + the signal, as a
    shell reports it), so ``run && push`` never carries on after a run that did not finish."""
    import click

    # Python's default SIGTERM ends the process on the spot, skipping every cleanup (the embedded
    # server, Ray, the journal's last flush); raised as an exception, the run unwinds.
    signal.signal(signal.SIGTERM, _terminated)
    try:
        try:
            app(standalone_mode=False)
        except (KeyboardInterrupt, click.exceptions.Abort) as exc:  # click turns Ctrl-C into Abort
            raise Interrupted(signal.SIGINT) from exc
    except FactoryError as exc:
        if os.environ.get("PERSONA_FACTORY_TRACEBACK"):
            raise
        typer.secho(f"error: {exc}", err=True, fg="red")
        sys.exit(2 if isinstance(exc, InputError) else 1)
    except Interrupted as exc:
        name = "SIGTERM" if exc.signum == signal.SIGTERM else "Ctrl-C"
        typer.secho(f"interrupted ({name}){exc.hint}", err=True)
        sys.exit(128 + exc.signum)
    except click.exceptions.ClickException as exc:  # click's own usage errors and the like
        exc.show()
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()

"""The ``persona-factory`` command. Thin: parse flags, call the library, print results.

Errors the factory raises on purpose become one line on stderr (exit 2 for bad input, 1 for
everything else); set ``PERSONA_FACTORY_TRACEBACK=1`` to see the full traceback instead.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import typer

from factory.cli.calibrate import critics_calibrate
from factory.cli.critics_train import critics_train
from factory.cli.eval_model import eval_model
from factory.cli.options import JudgeBaseURL, JudgeModel
from factory.cli.review import review_app
from factory.cli.serve import serve
from factory.cli.usage import abort_classes, usage_error_classes, usage_line
from factory.errors import FactoryError, InputError
from factory.recipes.paths import resolve_recipe_path

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
critics_app.command("calibrate")(critics_calibrate)
critics_app.command("train")(critics_train)
app.add_typer(review_app, name="review")
app.command()(serve)
app.command("eval-model")(eval_model)


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
    max_tokens: int | None = typer.Option(None, "--max-tokens", help="Stop before the run spends more tokens."),
    max_cost: float | None = typer.Option(None, "--max-cost", help="Stop before it spends more USD (llm.pricing)."),
    progress: bool = typer.Option(True, help="Show progress bars."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Progress as a line a minute, even on a terminal."),
) -> None:
    """Run a recipe end to end and publish the result as a new version of the dataset folder.

    Finished dialogues are journaled as they finish; a run that is killed leaves no version and can
    be continued with --resume, which generates and judges only what is not finished.
    """
    from factory.engine.budget import Budget
    from factory.recipes import apply_overrides, load_recipe
    from factory.run import run_recipe

    budget = Budget(max_tokens, max_cost)  # a bad budget fails before anything starts
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
            quiet=quiet,
            resume=resume,
            restart=restart,
            budget=budget,
        )
    except (KeyboardInterrupt, Interrupted) as exc:
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        raise Interrupted(signum, f"; the finished dialogues are kept: continue with --resume --out {out}") from None
    typer.echo(result.summary())


@app.command("plan")
def plan_command(
    recipe: str = typer.Argument(..., help="Recipe YAML (or the name of a packaged recipe)."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="The dataset folder the run will add to: its latest version gives the expected case."
    ),
    base_url: str | None = typer.Option(None, help="OpenAI-compatible endpoint the run will use (none: embedded)."),
    model: str | None = typer.Option(None, help="Model name at that endpoint."),
    judge_base_url: JudgeBaseURL = None,
    judge_model: JudgeModel = None,
) -> None:
    """Print the calls, tokens and cost a run of the recipe would take, without calling any model."""
    from factory.dataset.folder import DatasetFolder
    from factory.plan import latest_version, plan_run
    from factory.recipes import apply_overrides, load_recipe

    loaded = apply_overrides(
        load_recipe(resolve_recipe_path(recipe)), base_url=base_url, model=model,
        judge_base_url=judge_base_url, judge_model=judge_model,
    )  # fmt: skip
    previous, version = latest_version(DatasetFolder(out)) if out is not None and out.is_dir() else (None, None)
    typer.echo(plan_run(loaded, previous, version).render())


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
        ",".join(("learned", "grounding", "faithfulness", "apc", "quality")), help="Comma-separated experts to measure."
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


@critics_app.command("judge")
def critics_judge(
    source: str = typer.Argument(
        ...,
        help="A dataset folder (its latest version), a chat dataset (.parquet/.jsonl, or a folder), or hf://org/name.",
    ),
    experts: str = typer.Option(..., help="Comma-separated critics to judge with, e.g. heuristic,faithfulness,apc."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Dataset folder the judged dialogues go to, as its next version."
    ),
    revision: str | None = typer.Option(None, help="The source's version, or the Hub revision (default: the latest)."),
    column_map: str | None = typer.Option(
        None,
        "--map",
        help="A chat dataset's columns: messages=COL,personas=COL[,id=COL] (default: messages, personas).",
    ),
    recipe: Path | None = typer.Option(None, help="Take the critics' settings (and endpoints) from this recipe."),
    base_url: str | None = typer.Option(None, help="OpenAI-compatible endpoint; none starts the embedded model."),
    model: str | None = typer.Option(None, help="Model name at that endpoint."),
    judge_base_url: JudgeBaseURL = None,
    judge_model: JudgeModel = None,
    cache: bool = typer.Option(True, "--cache/--no-cache", help="Answer questions asked before from the reply cache."),
    progress: bool = typer.Option(True, help="Show progress."),
) -> None:
    """Judge dialogues that exist with the critics, and write them as the next version of --out:
    a version the factory made (nothing is generated again), or any chat dataset with personas."""
    from factory.recipes import apply_overrides, judge_override, load_recipe
    from factory.recipes.llm import LLMConfig
    from factory.rejudge import ChatMapping, JudgeSettings, judge_source, load_source
    from factory.settings import environment

    mapping = ChatMapping.parse(column_map)
    names = [name.strip() for name in experts.split(",") if name.strip()]
    if recipe is not None:
        loaded = apply_overrides(
            load_recipe(recipe), base_url=base_url, model=model, judge_base_url=judge_base_url, judge_model=judge_model
        )
        settings = JudgeSettings.of(loaded)
    else:
        env = environment()
        settings = JudgeSettings(llm=LLMConfig(base_url=base_url or env.base_url, model=model or env.model))
        judge = judge_override(judge_base_url, judge_model)
        if judge is not None:
            settings.critics = settings.critics.model_copy(update={"llm": judge})
    if not cache:
        settings.llm = settings.llm.model_copy(
            update={"cache": settings.llm.cache.model_copy(update={"enabled": False})}
        )
    result = judge_source(load_source(source, revision, mapping), settings, names, out, show_progress=progress)
    typer.echo(result.summary())


@app.command()
def push(
    folder: Path = typer.Argument(..., help="A dataset or persona bank folder."),
    repo: str = typer.Option(..., "--repo", help="Hub dataset repository, org/name."),
    version: str | None = typer.Option(None, help="The version to push; the latest when unset."),
    private: bool = typer.Option(False, help="Create the repository as private."),
    files_per_commit: int = typer.Option(
        50, min=1, help="Files per commit: a large version goes up in parts, and a push cut off resumes."
    ),
) -> None:
    """Push a version to the Hub as a pull request for review (HF_ENDPOINT and HF_TOKEN are honoured).
    Pushed again after a failure, it uploads only the files that did not arrive."""
    from factory.hub import push_version

    result = push_version(folder, repo, version=version, private=private, files_per_commit=files_per_commit)
    messages = {
        "opened": f"{result.version} is up for review as pull request #{result.pr_num} of {repo}",
        "resumed": f"{result.version} is up for review as pull request #{result.pr_num} of {repo} "
        "(the files that had not arrived were pushed)",
        "in_review": f"{result.version} is already in review as pull request #{result.pr_num} of {repo}; nothing pushed",
        "released": f"{result.version} is already released in {repo}; nothing pushed",
    }
    typer.echo(messages[result.state])


@schemas_app.command("export")
def schemas_export(
    directory: Path = typer.Argument(Path("schemas"), help="Where to write the *.schema.json files."),
) -> None:
    """Write the JSON Schema of every published record, generated from the pydantic models."""
    from factory.dataset.manifest import published_schemas
    from factory.records import export_json_schemas

    for path in export_json_schemas(directory, published_schemas()):
        typer.echo(str(path))


@schemas_app.command("check")
def schemas_check(directory: Path = typer.Argument(Path("schemas"))) -> None:
    """Fail when the schema files differ from the models (run `schemas export` to update them)."""
    from factory.dataset.manifest import published_schemas
    from factory.records import render_schema

    stale = [
        stem
        for stem, schema in published_schemas().items()
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
    # Python's default SIGTERM ends the process on the spot, skipping every cleanup (the embedded
    # server, Ray, the journal's last flush); raised as an exception, the run unwinds.
    signal.signal(signal.SIGTERM, _terminated)
    usage_errors = usage_error_classes()
    try:
        try:
            code = app(standalone_mode=False, prog_name="persona-factory")
        except abort_classes() as exc:  # Typer turns Ctrl-C into Abort
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
    except usage_errors as exc:
        line = usage_line(exc)
        if line:
            typer.secho(line, err=True, fg="red")
        else:
            exc.show()  # type: ignore[attr-defined]
        sys.exit(getattr(exc, "exit_code", 2))
    # Typer returns the code of an Exit a command raised, instead of exiting with it
    sys.exit(code if isinstance(code, int) else 0)

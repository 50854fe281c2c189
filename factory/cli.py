"""The ``persona-factory`` command. Thin: parse flags, call the library, print results.

Errors the factory raises on purpose become one line on stderr (exit 2 for bad input, 1 for
everything else); set ``PERSONA_FACTORY_TRACEBACK=1`` to see the full traceback instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from factory.errors import FactoryError, InputError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False, help="Synthetic persona dialogue dataset factory.")
schemas_app = typer.Typer(no_args_is_help=True, help="JSON Schemas of the published records.")
app.add_typer(schemas_app, name="schemas")
personas_app = typer.Typer(no_args_is_help=True, help="Persona banks: build them, then seed dialogue runs from them.")
app.add_typer(personas_app, name="personas")

PACKAGED_RECIPES = Path(__file__).parent / "recipes"


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
    base_url: Optional[str] = typer.Option(None, help="OpenAI-compatible endpoint; none starts the embedded model."),
    model: Optional[str] = typer.Option(None, help="Model name at that endpoint."),
    ray_address: Optional[str] = typer.Option(None, help="Ray cluster to join (or RAY_ADDRESS); none starts local Ray."),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Run a recipe end to end and publish the result as a new version of the dataset folder."""
    from factory.config import apply_overrides, load_recipe
    from factory.run import run_recipe

    path = resolve_recipe_path(recipe)
    loaded = apply_overrides(load_recipe(path), base_url=base_url, model=model, ray_address=ray_address)
    result = run_recipe(loaded, out, recipe_text=path.read_text(encoding="utf-8"), show_progress=progress)
    stats = result.stats
    rejected = ", ".join(f"{critic} {n}" for critic, n in stats.rejected_by.items()) or "none"
    per_accepted = f"{stats.tokens_per_accepted:,.0f}" if stats.tokens_per_accepted is not None else "n/a"
    typer.echo(
        "\n".join(
            [
                f"version     {result.version}" + (f" (after {result.previous_version})" if result.previous_version else ""),
                f"dialogues   {stats.generated} generated, {stats.accepted} accepted, {stats.rejected} rejected",
                f"rejected by {rejected}",
                f"tokens      {stats.total_tokens:,} ({stats.generation_tokens:,} generation, "
                f"{stats.critic_tokens:,} critics; {per_accepted} per accepted dialogue)",
                f"time        {result.seconds:.1f}s",
                str(result.path),
            ]
        )
    )


@personas_app.command("build")
def personas_build(
    recipe: str = typer.Argument(..., help="Bank recipe YAML (or a packaged one, e.g. mbti_bank)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Bank folder; default out/<recipe name>."),
    base_url: Optional[str] = typer.Option(None, help="OpenAI-compatible endpoint; none starts the embedded model."),
    model: Optional[str] = typer.Option(None, help="Model name at that endpoint."),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Build a persona bank and publish it as the next version of the bank folder."""
    from factory.config import PersonaBankRecipe, apply_overrides, load_recipe
    from factory.personas.build import build_bank

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


@app.command()
def serve(
    port: Optional[int] = typer.Option(None, help="Port on 127.0.0.1 (default: a free one)."),
    n_ctx: int = typer.Option(4096, help="Context window."),
) -> None:
    """Start the embedded llama.cpp server (SmolLM2-135M-Instruct) for other tools; Ctrl-C stops it."""
    import time

    from factory.llm.embedded import EmbeddedServer

    with EmbeddedServer(port=port, n_ctx=n_ctx) as server:
        typer.echo(f"serving {server.model} at {server.base_url} (log: {server.log_path}); Ctrl-C to stop")
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            typer.echo("stopping")


@schemas_app.command("export")
def schemas_export(directory: Path = typer.Argument(Path("schemas"), help="Where to write the *.schema.json files.")) -> None:
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
        raise InputError(f"out of date: {', '.join(stale)}; run `persona-factory schemas export {directory}`", path=directory)
    typer.echo("schemas are up to date")


# distilabel 1.5.3 declares fields that pydantic >= 2.12 warns about on every import, in every
# process; they say nothing to a user of the factory.
# The child processes' filter names the warning by message and a built-in category: -W options are
# read before any import, so a pydantic category would itself be reported as invalid.
DISTILABEL_NOISE = "ignore:The 'default' attribute with value None was provided to the `Field()` function:UserWarning"


def main() -> None:
    import warnings

    from pydantic.warnings import UnsupportedFieldAttributeWarning

    warnings.filterwarnings("ignore", category=UnsupportedFieldAttributeWarning)
    os.environ.setdefault("PYTHONWARNINGS", DISTILABEL_NOISE)  # for the Ray workers this run starts
    try:
        app(standalone_mode=False)
    except FactoryError as exc:
        if os.environ.get("PERSONA_FACTORY_TRACEBACK"):
            raise
        typer.secho(f"error: {exc}", err=True, fg="red")
        sys.exit(2 if isinstance(exc, InputError) else 1)
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # click's own usage errors and the like
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(1)
        raise


if __name__ == "__main__":
    main()

"""``persona-factory serve``: the embedded model on this machine, or a recipe's models on a Ray cluster."""

from __future__ import annotations

import time
from pathlib import Path

import typer


def serve(
    recipe: str | None = typer.Option(
        None, help="Deploy this recipe's llm.serve (and critics.llm.serve) on the Ray cluster and print the base URLs."
    ),
    ray_address: str | None = typer.Option(
        None, help="The cluster (or RAY_ADDRESS, or the recipe's ray.address); none: a local Ray until Ctrl-C."
    ),
    down: bool = typer.Option(False, "--down", help="Remove the recipe's deployments instead."),
    port: int | None = typer.Option(None, help="Embedded: port on 127.0.0.1 (default: a free one)."),
    n_ctx: int = typer.Option(4096, help="Embedded: context window per sequence."),
    log: Path | None = typer.Option(None, help="Embedded: keep the server's log in this file (default: none)."),
) -> None:
    """Serve a model for other tools: the embedded llama.cpp server here until Ctrl-C, or with
    --recipe the recipe's served models on a Ray cluster, left running there (remove with --down)."""
    if recipe is None:
        _serve_embedded(port, n_ctx, log)
        return
    from factory.engine.distributed import ray_session
    from factory.errors import RecipeError
    from factory.llm.serve import deploy_to_keep, models_to_serve, remove_kept
    from factory.recipes import apply_overrides, load_recipe
    from factory.recipes.paths import resolve_recipe_path

    loaded = apply_overrides(load_recipe(resolve_recipe_path(recipe)), ray_address=ray_address)
    if not models_to_serve(loaded):
        raise RecipeError(f"{recipe}: the recipe serves no model (set llm.serve or critics.llm.serve)")
    address = loaded.ray.address
    with ray_session(address):
        if down:
            removed = remove_kept(loaded)
            typer.echo(f"removed {', '.join(removed)}" if removed else "nothing of this recipe is deployed")
            return
        for model in deploy_to_keep(loaded):
            typer.echo(f"{model.role}: {model.model} at {model.base_url}")
        if address is None:
            typer.echo("on a local Ray that ends with this command; Ctrl-C to stop")
            _wait_forever()


def _serve_embedded(port: int | None, n_ctx: int, log: Path | None) -> None:
    from factory.listening import check_port
    from factory.llm.embedded import EmbeddedServer

    if port is not None:
        check_port("127.0.0.1", port)

    with EmbeddedServer(port=port, n_ctx=n_ctx, log_path=log) as server:
        where = f" (log: {log})" if log else ""
        typer.echo(f"serving {server.model} at {server.base_url}{where}; Ctrl-C to stop")
        _wait_forever()


def _wait_forever() -> None:
    while True:
        time.sleep(1)

"""A whole run: validate, find or start the endpoint, run on Ray, write and publish a version.

Everything that can be checked before work starts is checked first (recipe, persona files,
casting, the endpoint), so bad input writes nothing at all.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from factory.config import Recipe, environment_overrides
from factory.errors import RecipeError
from factory.changelog import changelog
from factory.dataset.arrow import records_to_table
from factory.dataset.card import CardContext, dataset_info, render_card
from factory.dataset.folder import DatasetFolder
from factory.dataset.stats import RunStats, compute_stats
from factory.distributed import ray_session
from factory.llm.endpoint import endpoint_provenance, open_endpoint, package_versions
from factory.personas import plan
from factory.pipeline import execute, plan_rows
from factory.records import SCHEMA_VERSION, DialogueRecord
from factory.review import ReviewState, pick_samples, write_state

ROWS_PER_SHARD = 50_000


@dataclass
class RunResult:
    path: Path
    version: str
    previous_version: str | None
    stats: RunStats
    manifest: dict
    seconds: float




def write_version(
    staging: Path,
    records: list[DialogueRecord],
    *,
    recipe_text: str,
    context: CardContext,
    manifest: dict,
    released: tuple[str, dict, str] | None = None,
    review_seed: int = 0,
    review_samples: int = 0,
) -> RunStats:
    """Data shards, card (with the changelog against ``released`` = (version, manifest, recipe
    text) and a review section), recipe and manifest of one version, into ``staging``."""
    data_dir = staging / "data"
    data_dir.mkdir()
    splits = {"accepted": [r for r in records if r.accepted], "rejected": [r for r in records if not r.accepted]}
    files: dict[str, list[str]] = {}
    for split, rows in splits.items():
        # An empty parquet file breaks `datasets` (zero-sized batches), so an empty split has no
        # file and is left out of the card's configs.
        shards = -(-len(rows) // ROWS_PER_SHARD)
        files[split] = []
        for shard in range(shards):
            name = f"{split}-{shard:05d}-of-{shards:05d}.parquet"
            chunk = rows[shard * ROWS_PER_SHARD : (shard + 1) * ROWS_PER_SHARD]
            pq.write_table(records_to_table(DialogueRecord, chunk), data_dir / name)
            files[split].append(f"data/{name}")
    stats = compute_stats(records)
    manifest["splits"] = {split: {"rows": len(rows), "files": files[split]} for split, rows in splits.items()}
    manifest["stats"] = stats.as_dict()
    if released is not None:
        context.changelog = manifest["changelog"] = changelog(*released, manifest["stats"], recipe_text)
    (staging / "recipe.yaml").write_text(recipe_text, encoding="utf-8")
    info = dataset_info(staging, files, {split: len(rows) for split, rows in splits.items()})
    card = str(render_card(context, stats, records, splits=[split for split in splits if files[split]], info=info))
    samples = pick_samples(
        {split: [r.id for r in rows] for split, rows in splits.items()},
        review_seed,
        {"accepted": review_samples, "rejected": -(-review_samples // 2)},
    )
    (staging / "README.md").write_text(write_state(card, ReviewState(samples=samples, seed=review_seed)), encoding="utf-8")
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return stats


def load_critic_report(recipe: Recipe) -> dict | None:
    """The `critics eval` report the recipe points at, to show in the card."""
    if recipe.critics.report is None:
        return None
    path = recipe.resolve_path(recipe.critics.report)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RecipeError(f"cannot read the critics report {path}: {exc}", field="critics.report") from exc


def placements_by_step(records: list[DialogueRecord]) -> dict[str, list[str]]:
    nodes: dict[str, set[str]] = {}
    for record in records:
        for placement in record.generation.placements:
            nodes.setdefault(placement.step, set()).add(placement.node_id)
    return {step: sorted(ids) for step, ids in sorted(nodes.items())}


def run_recipe(recipe: Recipe, out: str | Path, *, recipe_text: str | None = None, show_progress: bool = True) -> RunResult:
    started = time.monotonic()
    started_at = datetime.now(timezone.utc)
    cast_plan = plan(recipe)  # persona files, banks and casting fail here, before anything is written
    casts = cast_plan.casts
    critic_report = load_critic_report(recipe)
    recipe_text = recipe_text or yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)
    folder = DatasetFolder(out)
    api_key = environment_overrides()["api_key"]

    with open_endpoint(recipe.llm) as spec:
        # few-shot examples and prompts are checked before the folder is touched, too
        plan_rows(recipe, casts[:1], spec)
        folder.prepare()
        with folder.locked():
            previous = folder.current_version()
            version = folder.next_version()
            staging = folder.new_staging()
            with ray_session(recipe.ray.address, api_key) as ray_where:
                execution = execute(recipe, casts, spec, staging / "work", show_progress=show_progress)
            records = execution.records
            shutil.rmtree(staging / "work", ignore_errors=True)
            manifest = {
                "version": version,
                "previous_version": previous,
                "recipe": recipe.name,
                "recipe_hash": recipe.content_hash(),
                "schema_version": SCHEMA_VERSION,
                **endpoint_provenance(spec),
                "seed": recipe.seed,
                "persona_banks": cast_plan.banks,
                "started_at": started_at.isoformat(),
                "finished_at": datetime.now(timezone.utc).isoformat(),
                "seconds": round(time.monotonic() - started, 2),
                "ray": {"address": ray_where, "nodes_by_step": placements_by_step(records)},
                "rounds": execution.rounds,
                "packages": package_versions(),
            }
            context = CardContext(
                recipe_name=recipe.name,
                description=recipe.description,
                version=version,
                previous_version=previous,
                recipe_hash=recipe.content_hash(),
                model=spec.model,
                endpoint_kind=spec.kind,
                license=recipe.output.license,
                pretty_name=recipe.output.pretty_name,
                samples=recipe.output.samples_in_card,
                rounds=execution.rounds,
                critic_report=critic_report,
                persona_banks=cast_plan.banks,
            )
            # the changelog compares with the last released version, or the previous one before any release
            release = folder.current_release() or previous
            released = None
            if release is not None:
                old_manifest = folder.read_manifest(release) or {}
                old_recipe = folder.read_bytes(folder.resolve(release), "recipe.yaml").decode("utf-8")
                released = (release, old_manifest, old_recipe)
            stats = write_version(
                staging, records, recipe_text=recipe_text, context=context, manifest=manifest, released=released,
                review_seed=recipe.seed, review_samples=recipe.output.review_samples,
            )
            folder.publish(staging, version, f"{version}: {recipe.name}, {stats.accepted} accepted of {stats.generated}")
    return RunResult(
        path=folder.path, version=version, previous_version=previous, stats=stats, manifest=manifest,
        seconds=time.monotonic() - started,
    )

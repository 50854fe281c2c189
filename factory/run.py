"""A whole run: validate, find or start the endpoint, run on Ray, write and publish a version.

Everything that can be checked before work starts is checked first (recipe, persona files,
casting, the endpoint), so bad input writes nothing at all.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import yaml
from pydantic import BaseModel

from factory.critics.base import passed_so_far
from factory.critics.dedup import dedup_verdict, near_duplicates
from factory.dataset.arrow import arrow_schema, records_to_table
from factory.dataset.card import CardContext, dataset_info, published_folder_name, render_card
from factory.dataset.changelog import changelog
from factory.dataset.folder import DatasetFolder
from factory.dataset.review_section import ReviewState, pick_samples, write_state
from factory.dataset.stats import RunStats, StatsAccumulator
from factory.engine.distributed import ray_session
from factory.engine.journal import RunJournal
from factory.engine.rounds import execute, planned_dialogues, prompt_preview
from factory.errors import OutputError, PipelineError, RecipeError
from factory.failpoints import failpoint
from factory.generation.role_play import chat_example
from factory.llm.client import EndpointSpec
from factory.llm.embedded import check_running_servers
from factory.llm.endpoint import agent_endpoints, endpoint_provenance, open_endpoint, package_versions
from factory.personas import plan
from factory.recipes import Recipe
from factory.records import SCHEMA_VERSION, ChatExample, DialogueRecord
from factory.settings import environment

ROWS_PER_SHARD = 20_000


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
    batches: Callable[[], Iterable[list[DialogueRecord]]],
    *,
    recipe_text: str,
    context: CardContext,
    manifest: dict,
    released: tuple[str, dict, str] | None = None,
    review_seed: int = 0,
    review_samples: int = 0,
    finish: Callable[[DialogueRecord], None] = lambda record: None,
    chat_example: Callable[[DialogueRecord], ChatExample] | None = None,
) -> RunStats:
    """Data shards, card (with the changelog against ``released`` = (version, manifest, recipe
    text) and a review section), recipe and manifest of one version, into ``staging``.

    ``batches()`` yields the run's records a batch at a time (it is read twice: once to count the
    splits, once to write them), and ``finish`` settles each record (the last verdicts,
    ``accepted``) as it passes; nothing holds the whole run. Accepted role-play dialogues are also
    written as ``chat_example`` rows, the ``messages`` config.
    """
    data_dir = staging / "data"
    data_dir.mkdir()
    counts = {"accepted": 0, "rejected": 0}
    chat_rows = 0
    for batch in batches():
        for record in batch:
            finish(record)
            counts["accepted" if record.accepted else "rejected"] += 1
            chat_rows += bool(chat_example and record.accepted and record.generation.mode == "role_play")
    # An empty parquet file breaks `datasets` (zero-sized batches), so an empty split has no file
    # and is left out of the card's configs.
    shards = {split: -(-rows // ROWS_PER_SHARD) for split, rows in counts.items()}
    files: dict[str, list[str]] = {split: [] for split in counts}
    writers: dict[str, ShardWriter] = {
        split: ShardWriter(data_dir, split, shards[split], files[split]) for split in counts
    }
    chat_files: list[str] = []
    chat_writer = ShardWriter(data_dir, "messages", -(-chat_rows // ROWS_PER_SHARD), chat_files, ChatExample)
    accumulator = StatsAccumulator()
    samples: dict[str, list[DialogueRecord]] = {"accepted": [], "rejected": []}
    ids: dict[str, list[str]] = {"accepted": [], "rejected": []}
    shown = {"accepted": context.samples, "rejected": max(1, context.samples // 2) if context.samples else 0}
    for batch in batches():
        for record in batch:
            finish(record)
        accumulator.add(batch)
        for record in batch:
            split = "accepted" if record.accepted else "rejected"
            writers[split].add(record)
            if chat_example and record.accepted and record.generation.mode == "role_play":
                chat_writer.add(chat_example(record))
            ids[split].append(record.id)
            samples[split] = sorted([*samples[split], record], key=lambda r: r.id)[: shown[split]]
    for writer in (*writers.values(), chat_writer):
        writer.close()
    failpoint("writing")
    stats = accumulator.result()
    manifest["splits"] = {split: {"rows": counts[split], "files": files[split]} for split in counts}
    if chat_rows:
        manifest["configs"] = {"messages": {"rows": chat_rows, "files": chat_files}}
    manifest["stats"] = stats.as_dict()
    if released is not None:
        context.changelog = manifest["changelog"] = changelog(*released, manifest["stats"], recipe_text)
    (staging / "recipe.yaml").write_text(recipe_text, encoding="utf-8")
    info: dict | list[dict] = dataset_info(staging, files, counts)
    if chat_rows:
        context.chat_config = True
        info = [info, dataset_info(staging, {"train": chat_files}, {"train": chat_rows}, config_name="messages")]
    card = str(
        render_card(
            context,
            stats,
            [*samples["accepted"], *samples["rejected"]],
            splits=[s for s in counts if files[s]],
            info=info,
        )
    )
    picked = pick_samples(ids, review_seed, {"accepted": review_samples, "rejected": -(-review_samples // 2)})
    (staging / "README.md").write_text(
        write_state(card, ReviewState(samples=picked, seed=review_seed)), encoding="utf-8"
    )
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return stats


class ShardWriter:
    """One split's parquet shards, ``ROWS_PER_SHARD`` rows each, written row group by row group."""

    def __init__(
        self, data_dir: Path, split: str, shards: int, names: list[str], model: type[BaseModel] = DialogueRecord
    ) -> None:
        self.data_dir, self.split, self.shards, self.names, self.model = data_dir, split, shards, names, model
        self._buffer: list[BaseModel] = []
        self._writer: pq.ParquetWriter | None = None
        self._in_shard = 0

    def add(self, record: BaseModel) -> None:
        self._buffer.append(record)
        if len(self._buffer) >= 1000 or self._in_shard + len(self._buffer) >= ROWS_PER_SHARD:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        if self._writer is None:
            name = f"{self.split}-{len(self.names):05d}-of-{self.shards:05d}.parquet"
            self.names.append(f"data/{name}")
            self._writer = pq.ParquetWriter(self.data_dir / name, arrow_schema(self.model))
        self._writer.write_table(records_to_table(self.model, self._buffer))
        self._in_shard += len(self._buffer)
        self._buffer = []
        if self._in_shard >= ROWS_PER_SHARD:
            self._writer.close()
            self._writer, self._in_shard = None, 0

    def close(self) -> None:
        self._flush()
        if self._writer is not None:
            self._writer.close()


def enabled_critics(recipe: Recipe) -> list[str]:
    """Every critic the recipe turned on, in the order they judge: the card lists each, reached or not."""
    critics = recipe.critics
    return [
        "format",
        *(name for name, _ in critics.cascade()),
        *(n for n in ("quality", "dedup") if getattr(critics, n).enabled),
    ]


def load_critic_report(recipe: Recipe) -> dict | None:
    """The `critics eval` report the recipe points at, to show in the card; checked, so that a
    file that is not such a report is an error here and not a broken table in the card."""
    if recipe.critics.report is None:
        return None
    path = recipe.resolve_path(recipe.critics.report)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecipeError(f"cannot read the critics report {path}: {exc}", field="critics.report") from exc
    experts = report.get("experts") if isinstance(report, dict) else None
    needed = ("expert", "examples", "accuracy", "measure")
    if (
        not isinstance(experts, list)
        or not experts
        or not all(isinstance(e, dict) and all(k in e for k in needed) for e in experts)
    ):
        raise RecipeError(
            f"{path} is not a `persona-factory critics eval` report (it needs experts with {', '.join(needed)}); "
            "write one with `critics eval --out`",
            field="critics.report",
        )
    return report


def run_recipe(
    recipe: Recipe,
    out: str | Path,
    *,
    recipe_text: str | None = None,
    show_progress: bool = True,
    resume: bool = False,
    restart: bool = False,
) -> RunResult:
    """Run a recipe into the dataset folder ``out`` as its next version.

    Finished dialogues go to the folder's run journal as they finish. A run that dies leaves the
    journal and no version; ``resume`` continues it (the same recipe), ``restart`` discards it.
    """
    started = time.monotonic()
    started_at = datetime.now(timezone.utc)
    cast_plan = plan(recipe)  # persona files, banks and casting fail here, before anything is written
    casts = cast_plan.casts
    critic_report = load_critic_report(recipe)
    recipe_text = recipe_text or yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)
    folder = DatasetFolder(out)
    folder.check_usable()
    interrupted = InterruptedRun(folder.state / "run")
    interrupted.check(folder, resume=resume, restart=restart)  # before an endpoint is started for nothing
    api_key = environment().api_key
    planned = planned_dialogues(recipe, casts)

    with ExitStack() as stack:
        spec = stack.enter_context(open_endpoint(recipe.llm))
        prompt_preview(recipe, casts, spec)  # few-shot examples and prompts are checked before the folder is touched
        agents = agent_endpoints(recipe, spec, api_key)
        # Ray is reached before the folder is touched: a cluster that cannot be joined leaves no run behind
        ray_where = stack.enter_context(ray_session(recipe.ray.address)) if recipe.ray.enabled else None
        # From here to the published version the folder is this run's alone: a second run cannot
        # clean up (or publish over) what this one is writing.
        stack.enter_context(folder.locked())
        folder.prepare()
        carried = interrupted.begin(
            recipe, spec.model, planned, cast_plan.inputs, started_at, folder, resume=resume, restart=restart
        )
        journal = RunJournal(interrupted.path / "journal")
        bar = _progress(planned, journal.rows, show_progress)
        try:
            execution = execute(
                recipe,
                casts,
                spec,
                journal,
                on_ray=recipe.ray.enabled,
                api_key=api_key,
                progress=bar.update if bar else None,
                agents=agents,
            )
        finally:
            if bar is not None:
                bar.close()
            journal.close()
        check_running_servers()
        if journal.rows != planned:
            raise PipelineError(
                f"planned {planned} dialogues but the journal holds {journal.rows}; resume with --resume"
            )
        duplicates = (
            near_duplicates(journal.batches(), recipe.critics.dedup.threshold) if recipe.critics.dedup.enabled else None
        )

        def finish(record: DialogueRecord) -> None:
            if duplicates is not None and passed_so_far(record):
                record.verdicts.append(dedup_verdict(duplicates, record.id))
            record.accepted = passed_so_far(record)

        previous = folder.current_version()
        version = folder.next_version()
        staging = folder.new_staging()
        banks = [published_bank(bank, folder.path) for bank in cast_plan.banks]
        manifest = {
            "version": version,
            "previous_version": previous,
            "recipe": recipe.name,
            "recipe_hash": recipe.content_hash(),
            "schema_version": SCHEMA_VERSION,
            **endpoint_provenance(spec),
            "agents": {key: endpoint_provenance(agent) for key, agent in agents.items()},
            "seed": recipe.seed,
            "persona_banks": banks,
            "inputs": cast_plan.inputs,
            "started_at": (interrupted.started_at or started_at).isoformat(),
            "finished_at": datetime.now(timezone.utc).isoformat(),
            "seconds": round(time.monotonic() - started, 2),
            "resumed_with": carried,
            "ray": {"address": ray_where, "nodes_by_step": execution.nodes_by_step},
            "execution": execution.report,
            "structured_output": structured_output_used(spec, execution.report),
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
            persona_banks=banks,
            critics=enabled_critics(recipe),
            load_as=published_folder_name(out),
        )
        # the changelog compares with the last released version, or the previous one before any release
        release = folder.current_release() or previous
        released = None
        if release is not None:
            old_manifest = folder.read_manifest(release) or {}
            old_recipe = folder.read_bytes(folder.resolve(release), "recipe.yaml").decode("utf-8")
            released = (release, old_manifest, old_recipe)
        stats = write_version(
            staging,
            journal.batches,
            recipe_text=recipe_text,
            context=context,
            manifest=manifest,
            released=released,
            review_seed=recipe.seed,
            review_samples=recipe.output.review_samples,
            finish=finish,
            chat_example=lambda record: chat_example(record, recipe.generation.role_play),
        )
        interrupted.publishing(version)
        folder.publish(staging, version, f"{version}: {recipe.name}, {stats.accepted} accepted of {stats.generated}")
        interrupted.discard()
    return RunResult(
        path=folder.path,
        version=version,
        previous_version=previous,
        stats=stats,
        manifest=manifest,
        seconds=time.monotonic() - started,
    )


def structured_output_used(spec: EndpointSpec, report: dict[str, Any]) -> dict[str, str]:
    """How the critics' JSON was asked for: as configured, or json_object where the endpoint refused json_schema."""
    refused = [url for url, numbers in (report.get("endpoints") or {}).items() if numbers.get("json_schema_refused")]
    used = "json_object" if refused else spec.structured_output
    return {
        "configured": spec.structured_output,
        "used": used,
        **({"refused_by": ", ".join(refused)} if refused else {}),
    }


def published_bank(provenance: dict[str, Any], out: Path) -> dict[str, Any]:
    """A bank's provenance as it may be published: a local bank's path relative to the run
    folder, never the absolute path that names this machine's layout."""
    if "path" not in provenance:
        return provenance
    return {**provenance, "path": os.path.relpath(provenance["path"], out)}


class LogProgress:
    """Progress where nobody watches a terminal (a log file, CI, a job runner): a plain line every
    ``interval`` seconds and one at the end, not a bar redrawn into the log at every dialogue."""

    def __init__(self, total: int, done: int, interval: float = 10.0) -> None:
        self.total, self.n, self.interval = total, done, interval
        self.started = self.last = time.monotonic()
        self._say()

    def update(self, count: int) -> None:
        self.n += count
        if time.monotonic() - self.last >= self.interval:
            self._say()

    def _say(self) -> None:
        self.last = time.monotonic()
        share = self.n / self.total if self.total else 1.0
        print(
            f"dialogues: {self.n}/{self.total} ({share:.0%}) after {self.last - self.started:.0f} s",
            file=sys.stderr,
            flush=True,
        )

    def close(self) -> None:
        self._say()


def _progress(total: int, done: int, show: bool) -> Any:
    """A bar on a terminal, log lines elsewhere; either advances per finished dialogue."""
    if not show:
        return None
    if not sys.stderr.isatty():
        return LogProgress(total, done)
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc="dialogues", unit="dlg")


# What may change between a run and its resumption: where the work runs and how hard the endpoint
# is pushed, never what shapes a dialogue.
RESUMABLE_CHANGES = {
    "llm": {
        "base_url",
        "max_concurrency",
        "min_concurrency",
        "initial_concurrency",
        "adaptive_concurrency",
        "latency_tolerance",
        "eject_after",
        "eject_seconds",
        "outage_seconds",
        "timeout",
        "max_retries",
        "backoff_base",
        "backoff_max",
    },
    "ray": True,
    "generation": {"chunk_size"},
    "output": True,
}


def shaping_fields(recipe: Recipe) -> dict[str, Any]:
    """The recipe as a flat {dotted key: value}, less what may change between attempts."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else key, inner)
        else:
            flat[prefix] = value

    walk("", recipe.model_dump(mode="json"))
    kept = {}
    for key, value in flat.items():
        section, _, rest = key.partition(".")
        allowed = RESUMABLE_CHANGES.get(section)
        if allowed is True or (allowed and rest.split(".")[0] in allowed):
            continue
        kept[key] = value
    return kept


class InterruptedRun:
    """The folder's run in progress: ``run.json`` (what it is making) and its journal.

    It outlives a killed process; the next ``run`` either resumes it (same recipe and model),
    discards it (``restart``), or refuses to start and says how to choose.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.state_file = path / "run.json"
        self.started_at: datetime | None = None

    def _state(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.state_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None

    def check(self, folder: DatasetFolder, *, resume: bool, restart: bool) -> dict[str, Any] | None:
        """Whether this run may start, decided from the folder alone (it writes nothing): the
        interrupted run's state when there is one to take up or discard."""
        state = self._state()
        published = self.published_as(folder) if folder.is_repository() else None
        if published is not None:  # killed after publishing, before cleaning up: it is finished
            state = None
        if resume and (state is None or restart):
            finished = f"; the last run was published as {published}" if published else ""
            raise OutputError(f"{folder.path} has no interrupted run to resume{finished}; run without --resume")
        if state is not None and not resume and not restart:
            raise OutputError(
                f"{folder.path} holds {self._summary(state)}; continue it with --resume, or discard it with --restart"
            )
        return state

    def _summary(self, state: dict[str, Any]) -> str:
        with RunJournal(self.path / "journal") as journal:
            done = journal.rows
        return (
            f"an interrupted run of recipe {state['recipe']!r} started {state['started_at']} "
            f"({done} of {state['planned']} dialogues finished)"
        )

    def begin(
        self,
        recipe: Recipe,
        model: str,
        planned: int,
        inputs: dict[str, str],
        started_at: datetime,
        folder: DatasetFolder,
        *,
        resume: bool,
        restart: bool,
    ) -> dict[str, Any] | None:
        """Start a new run, or take up the interrupted one; for a resumed run, what it carries over."""
        state = self.check(folder, resume=resume, restart=restart)
        if state is not None and resume:
            why = self._why_not(state, recipe, model, planned, inputs)
            if why:
                raise RecipeError(
                    f"cannot resume {self._summary(state)}: {why}. Run it again with --restart to start over"
                )
            self.started_at = datetime.fromisoformat(state["started_at"])
            with RunJournal(self.path / "journal") as journal:
                return {"dialogues": journal.rows, "started_at": state["started_at"]}
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True)
        state = {
            "recipe": recipe.name,
            "model": model,
            "planned": planned,
            "started_at": started_at.isoformat(),
            "fields": shaping_fields(recipe),
            "inputs": inputs,
        }
        temporary = self.state_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(state, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(temporary, self.state_file)
        return None

    @staticmethod
    def _why_not(state: dict[str, Any], recipe: Recipe, model: str, planned: int, inputs: dict[str, str]) -> str | None:
        now = shaping_fields(recipe)
        before = state.get("fields", {})
        changed = sorted(key for key in set(now) | set(before) if now.get(key) != before.get(key))
        if changed:
            shown = ", ".join(changed[:8]) + (f" and {len(changed) - 8} more" if len(changed) > 8 else "")
            return f"the recipe changed since it started ({shown})"
        held = state.get("inputs", {})
        edited = sorted(key for key in set(inputs) | set(held) if inputs.get(key) != held.get(key))
        if edited:
            return (
                f"the content of {', '.join(edited)} changed since it started (a persona file, bank or few-shot file)"
            )
        if state.get("model") != model:
            return f"it was made with the model {state.get('model')!r}, and the endpoint now serves {model!r}"
        if state.get("planned") != planned:
            return f"it planned {state.get('planned')} dialogues and the recipe now plans {planned}"
        return None

    def publishing(self, version: str) -> None:
        state = self._state() or {}
        state["publishing"] = version
        self.state_file.write_text(json.dumps(state, indent=1, sort_keys=True), encoding="utf-8")

    def published_as(self, folder: DatasetFolder) -> str | None:
        """The version this run became, when it was killed after publishing but before discarding."""
        version = (self._state() or {}).get("publishing")
        return version if version and version in folder.versions() else None

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

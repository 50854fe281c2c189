"""A dialogue run: plan -> engine -> version -> publish.

Everything that can be checked before work starts is checked first (recipe, persona files,
casting, the critics report, the folder, the endpoint, Ray), so bad input writes nothing at all.
Finished dialogues go to the folder's run journal as they finish; a run that dies leaves the
journal and no version, and ``--resume`` continues it.
"""

from __future__ import annotations

import os
import time
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from factory.critics.acceptance import settle_run
from factory.critics.base import JudgePanel
from factory.critics.jury import judge_panels, prices_of
from factory.critics.learned.critic import loaded
from factory.critics.report import load_critic_report
from factory.dataset.card import CardContext, published_folder_name
from factory.dataset.dialogues import (
    ChatRows,
    dialogue_card,
    released_of,
    review_draws,
    shared_split,
    write_dialogues,
)
from factory.dataset.folder import DatasetFolder
from factory.dataset.pipeline_file import pipeline_yaml
from factory.dataset.stats import RunStats
from factory.dataset.version import VersionWriter
from factory.engine.budget import Budget, BudgetGate
from factory.engine.distributed import ray_session
from factory.engine.journal import RunJournal
from factory.engine.progress import RunProgress, progress_for
from factory.engine.resume import InterruptedRun
from factory.engine.rounds import Execution, execute, planned_dialogues, prompt_preview
from factory.errors import BudgetReached, EndpointError, PersonaFileError, PipelineError
from factory.generation.role_play.chat import chat_examples
from factory.llm.embedded import check_running_servers
from factory.llm.endpoint import (
    agent_endpoints,
    endpoint_provenance,
    open_endpoint,
    package_versions,
    structured_output_used,
)
from factory.llm.keys import ApiKeys
from factory.llm.pricing import usd
from factory.llm.serve import models_to_serve, serving
from factory.llm.spec import EndpointSpec
from factory.personas import CastPlan, plan
from factory.personas.casting import Cast
from factory.plan import latest_version, plan_run
from factory.recipes import Recipe
from factory.records import ChatExample, DialogueRecord


@dataclass
class RunResult:
    path: Path
    version: str
    previous_version: str | None
    stats: RunStats
    manifest: dict[str, Any]
    seconds: float

    def summary(self) -> str:
        """What `persona-factory run` prints when it is done."""
        stats = self.stats
        rejected = ", ".join(f"{critic} {n}" for critic, n in stats.rejected_by.items()) or "none"
        per_accepted = f"{stats.tokens_per_accepted:,.0f}" if stats.tokens_per_accepted is not None else "n/a"
        resumed = self.manifest.get("resumed_with")
        return "\n".join(
            [
                f"version     {self.version}" + (f" (after {self.previous_version})" if self.previous_version else ""),
                f"dialogues   {stats.generated} generated, {stats.accepted} accepted, {stats.rejected} rejected",
                f"rejected by {rejected}",
                f"tokens      {stats.total_tokens:,} ({stats.generation_tokens:,} generation, "
                f"{stats.critic_tokens:,} critics; {per_accepted} per accepted dialogue)",
                *(
                    [f"cost        {usd(stats.total_cost)} ({usd(stats.cost_per_accepted)} per accepted dialogue)"]
                    if stats.generation_cost is not None
                    else []
                ),
                *self._training_rows(rejected),
                f"time        {self.seconds:.1f}s"
                + (f" (resumed: {resumed['dialogues']} dialogues were already finished)" if resumed else ""),
                str(self.path),
            ]
        )

    def _training_rows(self, rejected: str) -> list[str]:
        """The messages config's rows per split, and why there are none when there are none."""
        configs = self.manifest.get("configs") or {}
        if not configs:
            return []
        rows = {
            name.removeprefix("messages-") if name != "messages" else "train": c["rows"] for name, c in configs.items()
        }
        if any(rows.values()):
            return ["messages    " + ", ".join(f"{split} {n}" for split, n in rows.items()) + " training rows"]
        why = f"rejected by {rejected}" if self.stats.generated else "none was generated"
        return [f"messages    no training rows were written: no dialogue was accepted ({why})"]


@dataclass
class _Started:
    """When and from what a run started: what its manifest and card say besides the dialogues."""

    recipe: Recipe
    recipe_text: str
    out: str | Path
    plan: CastPlan
    critic_report: dict[str, Any] | None
    monotonic: float
    at: datetime

    @classmethod
    def of(cls, recipe: Recipe, recipe_text: str | None, out: str | Path) -> _Started:
        return cls(
            recipe=recipe,
            recipe_text=recipe_text or yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False),
            out=out,
            plan=plan(recipe),  # persona files, banks and casting fail here, before anything is written
            critic_report=load_critic_report(recipe.critics.report, recipe.resolve_path),
            monotonic=time.monotonic(),
            at=datetime.now(timezone.utc),
        )


def run_recipe(
    recipe: Recipe,
    out: str | Path,
    *,
    recipe_text: str | None = None,
    show_progress: bool = True,
    quiet: bool = False,
    resume: bool = False,
    restart: bool = False,
    budget: Budget | None = None,
) -> RunResult:
    """Run a recipe into the dataset folder ``out`` as its next version. ``resume`` continues the
    folder's interrupted run (the same recipe and inputs); ``restart`` discards it; ``quiet`` shows
    progress as a line a minute even on a terminal. A ``budget`` stops the run at a chunk boundary
    before it would spend more (:class:`BudgetReached`)."""
    started = _Started.of(recipe, recipe_text, out)
    folder = DatasetFolder(out)
    folder.check_usable()
    interrupted = InterruptedRun(folder.state / "run")
    interrupted.check(folder, resume=resume, restart=restart)  # before an endpoint is started for nothing
    keys = ApiKeys()
    planned = planned_dialogues(recipe, started.plan.casts)
    with ExitStack() as stack:
        # A model the run serves itself is deployed on Ray first; the recipe's endpoints then point at it.
        ray_where = stack.enter_context(ray_session(recipe.ray.address)) if models_to_serve(recipe) else None
        working, served = stack.enter_context(serving(recipe))
        started = replace(started, recipe=working)
        spec = stack.enter_context(open_endpoint(working.llm))
        prompt_preview(working, started.plan.casts, spec)  # few-shot files and prompts fail here
        _check_files(working)  # and what is read on the workers or at the end
        agents = agent_endpoints(working.generation.role_play.agents, working.llm, spec, keys)
        judges = judge_panels(working.critics, working.llm, spec, keys)  # judge endpoints fail here too
        gate = _budget_gate(budget, working, started.plan.casts, folder, spec, judges)  # one it cannot price fails here
        # Ray is reached before the folder is touched: a cluster that cannot be joined leaves no run behind
        if _on_ray(recipe) and ray_where is None:
            ray_where = stack.enter_context(ray_session(recipe.ray.address))
        # From here to the published version the folder is this run's alone.
        stack.enter_context(folder.locked())
        folder.prepare()
        carried = interrupted.begin(
            recipe, spec.model, planned, started.plan.inputs, started.at, folder, resume=resume, restart=restart
        )
        journal = RunJournal(interrupted.path / "journal")
        speakers = AgentsAndJudges(agents, judges)
        shown = progress_for(planned, journal.rows, show_progress, prices_of(spec, judges), quiet)
        execution = _execute(started, spec, speakers, journal, keys, shown, gate)
        _check_finished(execution, gate, journal.rows, planned + execution.topped_up, out)
        writer = VersionWriter(folder)
        manifest = writer.manifest_head(
            recipe, endpoint_provenance(spec), interrupted.started_at or started.at, started.monotonic
        )
        manifest.update(_run_manifest(started, spec, speakers, execution, carried, ray_where, folder.path))
        manifest["ray"]["served"] = {role: model.manifest() for role, model in served.items()}
        stats = _write(writer, started, journal, spec, execution, manifest, judges)
        interrupted.publishing(writer.version)
        writer.publish(f"{writer.version}: {recipe.name}, {stats.accepted} accepted of {stats.generated}")
        interrupted.discard()
    return RunResult(
        folder.path, writer.version, writer.previous, stats, manifest, time.monotonic() - started.monotonic
    )


def _check_files(recipe: Recipe) -> None:
    """The trained critic's folder and the reference corpus, read before any call: a wrong path fails
    here, not on a worker or after the run."""
    if recipe.critics.learned.enabled:
        loaded(recipe.critics.learned)
    if recipe.output.compare_to:
        path = recipe.resolve_path(recipe.output.compare_to)
        if not path.is_file():
            raise PersonaFileError("file not found", path=path, field="output.compare_to")


def _budget_gate(
    budget: Budget | None,
    recipe: Recipe,
    casts: list[Cast],
    folder: DatasetFolder,
    spec: EndpointSpec,
    judges: dict[str, JudgePanel],
) -> BudgetGate | None:
    """The gate of a budget, its first chunks priced by the plan (on the folder's last version when there is one)."""
    if budget is None or not budget.limited:
        return None
    estimate = plan_run(recipe, *latest_version(folder), casts=casts)
    per_dialogue = estimate.dialogues or 1
    tokens = (estimate.expected_tokens() or 0.0) / per_dialogue
    cost = estimate.total_cost()
    return BudgetGate(budget, prices_of(spec, judges), tokens, cost / per_dialogue if cost is not None else None)


def _on_ray(recipe: Recipe) -> bool:
    """Ray workers, unless the calls go out as batches: the endpoint's batch service does the parallel work."""
    return recipe.ray.enabled and not recipe.llm.batch


def _check_finished(
    execution: Execution, gate: BudgetGate | None, journaled: int, planned: int, out: str | Path
) -> None:
    """Every planned dialogue is in the journal, or the run stops here, saying why."""
    if execution.budget_stop is not None and gate is not None:
        raise _budget_reached(gate, gate.reason(), journaled, planned, out)
    if journaled != planned:
        raise PipelineError(f"planned {planned} dialogues but the journal holds {journaled}; resume with --resume")


def _budget_reached(gate: BudgetGate, why: str, finished: int, planned: int, out: str | Path) -> BudgetReached:
    """What a run stopped by its budget says: what is kept, and the budget that would finish it."""
    # the whole run at the cost per dialogue so far (the plan's before any finished), and a tenth more
    tokens, cost = gate.per_dialogue()
    tokens, cost = round(tokens * planned * 1.1), round(cost * planned * 1.1, 2)
    return BudgetReached(
        f"the budget stopped the run: {why}; {finished} of {planned} dialogues are finished and journaled. "
        f"Continue with --resume --out {out} {gate.budget.flags(tokens, cost)}"
    )


@dataclass
class AgentsAndJudges:
    """The endpoints besides the generator's: role-play agents' own, and the critics' judges."""

    agents: dict[str, EndpointSpec]
    judges: dict[str, JudgePanel]


def _execute(
    started: _Started,
    spec: EndpointSpec,
    speakers: AgentsAndJudges,
    journal: RunJournal,
    keys: ApiKeys,
    shown: RunProgress | None,
    budget: BudgetGate | None = None,
) -> Execution:
    """The engine's rounds, into the journal, with progress per finished dialogue."""
    recipe = started.recipe
    try:
        execution = execute(
            recipe, started.plan.casts, spec, journal, on_ray=_on_ray(recipe), keys=keys,
            progress=shown.update if shown else None, agents=speakers.agents, judges=speakers.judges, budget=budget,
            journaled=shown.journaled if shown else None, batch_dir=str(journal.directory.parent / "batches"),
            top_up=started.plan.top_up, planned_more=shown.extend if shown else None,
        )  # fmt: skip
    except EndpointError as exc:  # the endpoint's trouble, not the work's: what is journaled stays
        hint = f"; the finished dialogues are kept: continue with --resume --out {started.out}"
        raise EndpointError(f"{exc}{hint}") from None
    finally:
        if shown is not None:
            shown.close()
        journal.close()
    check_running_servers()  # a run whose embedded server died made no dialogues worth publishing
    return execution


def _write(
    writer: VersionWriter,
    started: _Started,
    journal: RunJournal,
    spec: EndpointSpec,
    execution: Execution,
    manifest: dict[str, Any],
    judges: dict[str, JudgePanel],
) -> RunStats:
    """The version's data, card, recipe and manifest, into its staging folder."""
    recipe = started.recipe
    context = CardContext(
        recipe_name=recipe.name,
        description=recipe.description,
        version=writer.version,
        previous_version=writer.previous,
        recipe_hash=recipe.content_hash(),
        model=spec.model,
        endpoint_kind=spec.kind,
        license=recipe.output.license,
        pretty_name=recipe.output.pretty_name,
        samples=recipe.output.samples_in_card,
        rounds=execution.rounds,
        coverage=execution.coverage,
        critic_report=started.critic_report,
        persona_banks=manifest["persona_banks"],
        critics=recipe.critics.enabled(),
        uncertain_band=recipe.critics.learned.deciding_band(),
        load_as=published_folder_name(started.out),
        chat_test_share=recipe.output.splits.test if recipe.output.splits else None,
    )
    settle = settle_run(recipe.critics, journal.batches)
    stats, samples, ids = write_dialogues(
        writer, journal.batches, settle, _chat_rows(recipe), context, prices_of(spec, judges)
    )
    if recipe.output.compare_to:
        from factory.critics.reference import measure_against
        from factory.llm.embeddings import shared_minilm

        where = recipe.resolve_path(recipe.output.compare_to)
        context.reference = measure_against(stats.turn_sample, where, shared_minilm(), recipe.seed)
    card = dialogue_card(writer, context, stats, samples, manifest, released_of(writer.folder), started.recipe_text)
    writer.finish(
        card=card, cells_by_split=ids, review_seed=recipe.seed,
        review_samples=review_draws(recipe.output.review_samples), labels_required=recipe.output.review_labels,
        least_sure=stats.least_sure,
        recipe_text=started.recipe_text, manifest=manifest,
        pipeline_text=pipeline_yaml(started.recipe_text, recipe.name),
    )  # fmt: skip
    return stats


def _chat_rows(recipe: Recipe) -> ChatRows:
    """Every accepted dialogue also as chat examples (the ``messages`` config), in persona-disjoint
    train and test splits when ``output.splits`` asks for them."""
    output = recipe.output

    def rows(record: DialogueRecord) -> list[ChatExample]:
        return chat_examples(record, recipe.generation.role_play, output.messages.speakers)

    if output.splits is None:
        return ChatRows(rows)
    test = output.splits.test
    return ChatRows(rows, lambda record: shared_split(record, test, recipe.seed), ("train", "test"))


def _run_manifest(
    started: _Started,
    spec: EndpointSpec,
    speakers: AgentsAndJudges,
    execution: Execution,
    carried: dict[str, Any] | None,
    ray_where: str | None,
    out: Path,
) -> dict[str, Any]:
    """What a dialogue run's manifest says beyond any version's: agents, banks, inputs, execution."""
    return {
        "agents": {key: endpoint_provenance(agent) for key, agent in speakers.agents.items()},
        "judges": {
            critic: {
                "aggregate": panel.aggregate if len(panel.jurors) > 1 else None,
                "jurors": [endpoint_provenance(juror.spec) for juror in panel.jurors],
            }
            for critic, panel in speakers.judges.items()
        },
        "persona_banks": [_published_bank(bank, out) for bank in started.plan.banks],
        "inputs": started.plan.inputs,
        "resumed_with": carried,
        "ray": {"address": ray_where, "nodes_by_step": execution.nodes_by_step},
        "execution": execution.report,
        "structured_output": structured_output_used(spec, execution.report),
        "rounds": execution.rounds,
        "packages": package_versions(),
    }


def _published_bank(provenance: dict[str, Any], out: Path) -> dict[str, Any]:
    """A bank's provenance as it may be published: a local bank's path relative to the run
    folder, never the absolute path that names this machine's layout."""
    if "path" not in provenance:
        return provenance
    return {**provenance, "path": os.path.relpath(provenance["path"], out)}

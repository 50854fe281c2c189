"""A run in progress, kept in the dataset folder so that it outlives a killed process.

``run.json`` says what the run is making (recipe name, model, planned dialogues, the settings that
shape the data, a digest of each input) and the journal holds the dialogues finished so far. The
next ``run`` resumes it (same recipe, inputs and model), discards it (``--restart``), or refuses to
start and says how to choose.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from factory.dataset.folder import DatasetFolder
from factory.engine.journal import RunJournal
from factory.errors import OutputError, RecipeError
from factory.recipes import Recipe
from factory.recipes.base import shaping_fields


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
            state = json.loads(self.state_file.read_text(encoding="utf-8"))
            return state if isinstance(state, dict) else None
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

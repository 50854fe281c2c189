"""The JSON Schemas in schemas/ are generated from the models; they must not drift."""

from __future__ import annotations

import json
import subprocess
import sys

from factory.dataset.manifest import published_schemas
from factory.records import DialogueRecord, json_schemas, render_schema


def test_schema_files_match_the_models(project_root):
    for stem, schema in published_schemas().items():
        path = project_root / "schemas" / f"{stem}.schema.json"
        assert path.is_file(), f"{path} missing: run `persona-factory schemas export schemas`"
        assert path.read_text(encoding="utf-8") == render_schema(schema), (
            f"{path.name} drifted from the models: run `persona-factory schemas export schemas`"
        )


def test_schema_check_command_fails_on_drift(tmp_path, project_root):
    for path in (project_root / "schemas").glob("*.schema.json"):
        (tmp_path / path.name).write_text(path.read_text())
    check = [sys.executable, "-m", "factory.cli", "schemas", "check", str(tmp_path)]
    assert subprocess.run(check, capture_output=True, text=True).returncode == 0
    drifted = json.loads((tmp_path / "dialogue_record.schema.json").read_text())
    drifted["properties"].pop("accepted")
    (tmp_path / "dialogue_record.schema.json").write_text(json.dumps(drifted))
    result = subprocess.run(check, capture_output=True, text=True)
    assert result.returncode == 2
    assert "dialogue_record" in result.stderr and "schemas export" in result.stderr


def test_dialogue_record_schema_names_every_field():
    schema = json_schemas()["dialogue_record"]
    assert set(schema["properties"]) == set(DialogueRecord.model_fields)
    verdict = schema["$defs"]["Verdict"]["properties"]
    assert {"critic", "passed", "score", "reason"} <= set(verdict)

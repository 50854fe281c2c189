"""Bad input: one clear line naming the file, row and field, exit 2, and nothing written."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from factory.bank import build_bank, check_inputs
from factory.errors import PersonaFileError, RecipeError
from factory.personas import plan
from factory.personas.conversations import load_conversations
from factory.personas.statements import load_spc_rows
from factory.recipes import PersonaBankRecipe, load_recipe, parse_recipe
from tests.conftest import subprocess_env
from tests.recipes import small_recipe, write_recipe


def run_cli(*args: str):
    return subprocess.run(
        [sys.executable, "-m", "factory.cli", *args], capture_output=True, text=True, env=subprocess_env(), timeout=120
    )


def test_unknown_recipe_key_names_file_and_field(tmp_path):
    recipe = small_recipe()
    recipe["generation"]["max_turn"] = 9
    path = write_recipe(tmp_path, recipe)
    with pytest.raises(RecipeError) as error:
        load_recipe(path)
    assert error.value.field == "generation.max_turn"
    assert str(path) in str(error.value) and "unknown key" in str(error.value)


def test_wrong_type_names_the_field_and_the_value(tmp_path):
    recipe = small_recipe()
    recipe["casting"]["dialogues"] = "many"
    path = write_recipe(tmp_path, recipe)
    with pytest.raises(RecipeError) as error:
        load_recipe(path)
    assert error.value.field == "casting.dialogues"
    assert "'many'" in str(error.value)


def test_persona_source_errors_point_into_the_list(tmp_path):
    recipe = small_recipe()
    recipe["personas"][1]["count"] = -1
    with pytest.raises(RecipeError) as error:
        load_recipe(write_recipe(tmp_path, recipe))
    assert error.value.field == "personas[1].count"


def test_a_field_named_like_a_source_kind_keeps_its_place_in_the_location():
    """Only the union's tag after the list index is dropped: a pool's `columns.statements` is a
    field, though `statements` is also a source kind."""
    source = {"source": "hub_personas", "path": "pool.jsonl", "columns": {"persona": "persona", "statements": [1]}}
    with pytest.raises(RecipeError) as error:
        parse_recipe(small_recipe(personas=[source]))
    assert error.value.field == "personas[0].columns.statements"


def test_impossible_turn_bounds_are_refused(tmp_path):
    recipe = small_recipe(generation={"min_turns": 10, "max_turns": 4})
    with pytest.raises(RecipeError, match="min_turns"):
        load_recipe(write_recipe(tmp_path, recipe))


def test_cli_prints_one_line_and_writes_nothing(tmp_path):
    recipe = small_recipe()
    recipe["critics"] = {"faithfulnes": {"enabled": True}}
    path = write_recipe(tmp_path, recipe)
    out = tmp_path / "out"
    result = run_cli("run", str(path), "--out", str(out), "--base-url", "http://127.0.0.1:9/v1")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"error: {path}, field 'critics.faithfulnes': unknown key (check its spelling; unknown keys are errors)"
    ]
    assert not out.exists()


def test_persona_csv_missing_column(tmp_path):
    path = tmp_path / "personas.csv"
    path.write_text('user 1 personas,user two personas\n"I like tea.","I run."\n')
    with pytest.raises(PersonaFileError) as error:
        load_spc_rows(path)
    assert error.value.path == str(path) and error.value.field == "user 2 personas"


def test_persona_csv_empty_statements_names_the_row(tmp_path):
    path = tmp_path / "personas.csv"
    path.write_text('user 1 personas,user 2 personas\n"I like tea.","I run."\n"I swim.",""\n')
    with pytest.raises(PersonaFileError) as error:
        load_spc_rows(path)
    assert (error.value.row, error.value.field) == (2, "user 2 personas")


def test_persona_jsonl_malformed_row_names_the_line(tmp_path):
    path = tmp_path / "personas.jsonl"
    good = {"User 1 Personas": ["I like tea."], "User 2 Personas": ["I run."]}
    path.write_text(json.dumps(good) + "\n" + '{"User 1 Personas": ["I swim."], \n')
    with pytest.raises(PersonaFileError) as error:
        load_spc_rows(path)
    assert error.value.row == 2 and "not valid JSON" in str(error.value)


def test_persona_jsonl_wrong_type_names_row_and_field(tmp_path):
    path = tmp_path / "personas.jsonl"
    path.write_text(json.dumps({"User 1 Personas": ["I like tea."], "User 2 Personas": 7}) + "\n")
    with pytest.raises(PersonaFileError) as error:
        load_spc_rows(path)
    assert (error.value.row, error.value.field) == (1, "user 2 personas")


def test_bad_persona_file_in_a_run_writes_nothing(tmp_path):
    personas = tmp_path / "personas.csv"
    personas.write_text("user 1 personas\nI like tea.\n")
    recipe = small_recipe(personas=[{"source": "statements", "path": "personas.csv"}])
    path = write_recipe(tmp_path, recipe)
    out = tmp_path / "out"
    result = run_cli("run", str(path), "--out", str(out), "--base-url", "http://127.0.0.1:9/v1")
    assert result.returncode == 2
    assert str(personas) in result.stderr and "user 2 personas" in result.stderr
    assert not out.exists()


def test_unreachable_endpoint_is_a_clear_error_and_writes_nothing(tmp_path):
    path = write_recipe(tmp_path, small_recipe())
    out = tmp_path / "out"
    result = run_cli("run", str(path), "--out", str(out), "--base-url", "http://127.0.0.1:9/v1")
    assert result.returncode == 1
    assert "cannot reach the LLM endpoint at http://127.0.0.1:9/v1" in result.stderr
    assert "--base-url" in result.stderr
    assert not out.exists()


# -- persona banks and their inputs --------------------------------------------------------------


def _write_jsonl(path, *lines: str):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_conversation_file_errors_name_file_row_and_field(tmp_path):
    good = json.dumps([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}])
    cases = {
        "not valid JSON": ('[{"role": "user"', None),
        "role must be user, assistant or system": (json.dumps([{"role": "bot", "content": "x"}]), "messages[0].role"),
        "content must be text": (
            json.dumps([{"role": "user", "content": "x"}, {"role": "assistant"}]),
            "messages[1].content",
        ),
        "non-empty list": (json.dumps({"turns": []}), "messages"),
    }
    for message, (bad_line, field) in cases.items():
        path = _write_jsonl(tmp_path / "chats.jsonl", good, "", bad_line)
        with pytest.raises(PersonaFileError) as error:
            load_conversations(path)
        assert message in str(error.value)
        assert (error.value.path, error.value.row, error.value.field) == (str(path), 3, field)


def test_bank_build_with_a_bad_conversation_file_exits_2_and_writes_nothing(tmp_path):
    chats = _write_jsonl(tmp_path / "chats.jsonl", json.dumps([{"role": "user", "content": 5}]))
    recipe = tmp_path / "bank.yaml"
    recipe.write_text(f"name: users\nsources:\n  - source: implicit\n    path: {chats.name}\n", encoding="utf-8")
    out = tmp_path / "bank"
    result = run_cli("personas", "build", str(recipe), "--out", str(out), "--base-url", "http://127.0.0.1:9/v1")
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {chats}, row 1, field 'messages[0].content': content must be text"
    assert not out.exists()


def test_bank_recipe_errors_name_the_source_field(tmp_path):
    recipe = tmp_path / "bank.yaml"
    recipe.write_text("name: b\nsources:\n  - source: mbti_bank\n    per_typ: 2\n", encoding="utf-8")
    with pytest.raises(RecipeError) as error:
        load_recipe(recipe, PersonaBankRecipe)
    assert error.value.field == "sources[0].per_typ"
    recipe.write_text("name: b\nsources:\n  - source: mbti_bank\n    types: [INTJ, XXXX]\n", encoding="utf-8")
    with pytest.raises(RecipeError, match="XXXX") as error:
        check_inputs(load_recipe(recipe, PersonaBankRecipe))
    assert error.value.field == "sources.types"


def test_seeding_from_something_that_is_not_a_bank(tmp_path):
    recipe = small_recipe(personas=[{"source": "bank", "path": str(tmp_path)}])
    with pytest.raises(PersonaFileError, match="not a persona bank folder") as error:
        plan(parse_recipe(recipe))
    assert error.value.path == str(tmp_path)
    with pytest.raises(RecipeError, match="exactly one of `path`"):
        parse_recipe(small_recipe(personas=[{"source": "bank"}]))


def test_seeding_from_a_revision_the_bank_does_not_have(tmp_path):
    bank = tmp_path / "bank"
    build_bank(
        parse_recipe({"name": "b", "sources": [{"source": "mbti", "count": 4}]}, model=PersonaBankRecipe),
        bank,
        show_progress=False,
    )
    recipe = small_recipe(personas=[{"source": "bank", "path": str(bank), "revision": "v9.0.0"}])
    with pytest.raises(PersonaFileError, match=r"no revision 'v9.0.0' \(versions: v1.0.0\)") as error:
        plan(parse_recipe(recipe))
    assert error.value.field == "revision"


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_byte_that_is_not_utf8_is_one_line_naming_file_row_and_field(tmp_path, suffix):
    personas = tmp_path / f"personas{suffix}"
    if suffix == ".csv":
        personas.write_bytes(b'user 1 personas,user 2 personas\n"I like tea.","I run."\n"I swim.","I \xff run."\n')
        where = "row 2, field 'user 2 personas'"
    else:
        good = json.dumps({"User 1 Personas": ["I like tea."], "User 2 Personas": ["I run."]}).encode()
        personas.write_bytes(good + b'\n{"User 1 Personas": ["I \xfe swim."], "User 2 Personas": ["x"]}\n')
        where = "row 2, field 'User 1 Personas[0]'"
    path = write_recipe(tmp_path, small_recipe(personas=[{"source": "statements", "path": personas.name}]))
    out = tmp_path / "out"
    result = run_cli("run", str(path), "--out", str(out), "--base-url", "http://127.0.0.1:9/v1")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {personas}, {where}: not UTF-8 text (the byte 0x{'ff' if suffix == '.csv' else 'fe'}); save the file as UTF-8"
    ]
    assert not out.exists()


def test_a_runaway_statement_is_refused_by_row_and_field(tmp_path):
    personas = tmp_path / "personas.csv"
    personas.write_text(
        'user 1 personas,user 2 personas\n"I like tea.","I run."\n"I swim.","' + "x" * 1_000_000 + '"\n'
    )
    with pytest.raises(PersonaFileError, match="a statement of 1,000,000 characters") as error:
        load_spc_rows(personas)
    assert (error.value.row, error.value.field) == (2, "user 2 personas")
    many = tmp_path / "many.jsonl"
    many.write_text(json.dumps({"User 1 Personas": ["I like tea."] * 400, "User 2 Personas": ["I run."]}) + "\n")
    with pytest.raises(PersonaFileError, match="a profile of 4,400 characters") as error:
        load_spc_rows(many)
    assert (error.value.row, error.value.field) == (1, "user 1 personas")


def test_a_plan_too_large_to_hold_is_refused_with_its_estimate(tmp_path):
    recipe = small_recipe(dialogues=10_000_000)
    with pytest.raises(RecipeError) as error:
        load_recipe(write_recipe(tmp_path, recipe))
    assert error.value.field == "casting.dialogues" and "GB" in str(error.value) and "1,000,000" in str(error.value)


def test_a_list_item_that_is_not_text_is_named_by_its_place(tmp_path):
    path = tmp_path / "personas.jsonl"
    path.write_text(json.dumps({"User 1 Personas": ["I like tea."], "User 2 Personas": ["I run.", 7]}) + "\n")
    with pytest.raises(PersonaFileError) as error:
        load_spc_rows(path)
    assert (error.value.row, error.value.field) == (1, "user 2 personas")
    assert error.value.detail == "statement 2 of the list is not text: 7"


def test_a_source_without_its_kind_says_source_is_missing(tmp_path):
    recipe = small_recipe(personas=[{"path": "people.csv", "count": 3}])
    with pytest.raises(RecipeError) as error:
        load_recipe(write_recipe(tmp_path, recipe))
    assert error.value.field == "personas[0]"
    assert error.value.detail.startswith("`source` is missing: say which kind of source this is, one of mbti, ")
    assert "hub_personas" in error.value.detail and "discriminator" not in str(error.value)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run"], "Missing argument 'recipe'; see 'persona-factory run --help'"),
        (["run", "quickstart", "--out", "x", "--foo"], "No such option: --foo"),
        (["rnu"], "No such command 'rnu'"),
        (["run", "quickstart", "--out", "x", "--max-tokens", "abc"], "Invalid value for '--max-tokens'"),
        (["serve", "--port", "99999"], "99999 is not a port"),
    ],
)
def test_a_usage_error_is_one_line_and_exit_2(tmp_path, args, expected):
    finished = subprocess.run(
        [sys.executable, "-m", "factory.cli", *args], capture_output=True, text=True, env=subprocess_env(),
        timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert finished.returncode == 2, finished.stderr[-2000:]
    (line,) = finished.stderr.strip().splitlines()
    assert line.startswith("error: ") and expected in line
    assert not (tmp_path / "x").exists()


def test_serve_on_a_busy_port_says_the_port_is_taken(tmp_path):
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        finished = run_cli("serve", "--port", str(port))
    assert finished.returncode == 2
    assert finished.stderr.strip().splitlines() == [
        f"error: field '--port': port {port} on 127.0.0.1 is taken by another process: choose another"
    ]

"""A version's manifest.json through its model: today's manifests and older ones are read, what a
producer adds is kept as written, and a manifest this release cannot read is one line naming it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from factory.dataset.manifest import Manifest, manifest_of, manifest_text
from factory.errors import OutputError

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "manifest-1.8.json"


def test_a_manifest_written_by_a_run_is_read_by_the_model():
    manifest = manifest_of(FIXTURE.read_bytes(), str(FIXTURE))
    assert manifest.version == "v1.0.0" and manifest.recipe == "quickstart" and manifest.schema_version == "1.8"
    assert manifest.files_of("accepted") and manifest.files_of("rejected")
    assert manifest.configs["messages"].files and manifest.stats["generated"] == 8
    assert manifest.rounds[0]["dialogues"] == 8  # a run's own field, kept as written


def test_the_writer_writes_what_it_was_given_checked():
    written = json.loads(FIXTURE.read_text(encoding="utf-8"))
    assert json.loads(manifest_text(written)) == written
    with pytest.raises(OutputError, match=r"manifest\.json: recipe_hash: Field required"):
        manifest_text({key: value for key, value in written.items() if key != "recipe_hash"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (json.dumps({"version": "v1.0.0", "recipe": "r", "recipe_hash": "x", "schema_version": "2.0"}),
         r"v1\.0\.0/manifest\.json: manifest: written with records schema 2\.0, newer than this persona-factory reads"),
        ("{not json", r"v1\.0\.0/manifest\.json: not JSON"),
        (json.dumps({"version": "v1.0.0", "recipe": "r", "recipe_hash": "x", "schema_version": "1.2", "splits": []}),
         r"v1\.0\.0/manifest\.json: splits: Input should be a valid dictionary"),
    ],
    ids=["newer schema", "not json", "bad field"],
)  # fmt: skip
def test_a_manifest_that_cannot_be_read_is_one_line_naming_it(text, message):
    with pytest.raises(OutputError, match=message) as raised:
        manifest_of(text, "v1.0.0/manifest.json")
    assert "\n" not in str(raised.value)


def test_an_older_manifest_without_the_later_fields_takes_their_defaults():
    old = Manifest.model_validate({"version": "v0.1.0", "recipe": "r", "recipe_hash": "x", "schema_version": "1.0"})
    assert old.splits == {} and old.kind == "dialogues" and old.files_of("accepted") == [] and old.stats == {}

"""A version's ``pipeline.yaml``: its recipe as a distilabel pipeline of one step, the factory's
engine (``factory.distilabel.engine.RecipeDialogues``), which ``distilabel pipeline run --config``
reruns. Written as distilabel's own serialised form, without importing distilabel: a run does not
pay its import. The tests hold this form to the pipeline distilabel builds itself
(``factory.distilabel.build_pipeline``)."""

from __future__ import annotations

from contextlib import suppress
from importlib import metadata

import yaml

GENERATOR_NAME = "generate_dialogues"
GENERATOR_TYPE = {"module": "factory.distilabel.engine", "name": "RecipeDialogues"}
PIPELINE_DESCRIPTION = "persona-factory: the recipe on the factory's engine"


def pipeline_yaml(recipe_text: str, name: str) -> str:
    version = "unknown"
    with suppress(metadata.PackageNotFoundError):
        version = metadata.version("distilabel")
    document = {
        "distilabel": {"version": version},
        "pipeline": {
            "name": name,
            "description": PIPELINE_DESCRIPTION,
            "steps": [
                {
                    "step": {"name": GENERATOR_NAME, "recipe": recipe_text, "type_info": GENERATOR_TYPE},
                    "name": GENERATOR_NAME,
                }
            ],
            "connections": [{"from": GENERATOR_NAME, "to": []}],
            "routing_batch_functions": [],
            "type_info": {"module": "distilabel.pipeline.local", "name": "Pipeline"},
        },
        "requirements": [],
    }
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)

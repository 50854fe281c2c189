"""``source: hub_personas`` on small files in the layouts of PersonaHub, FinePersonas and
Nemotron-Personas: mapping, statements, near-duplicates, stratified draws, and a wrong mapping."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
import yaml

from factory.errors import PersonaFileError, RecipeError
from factory.personas import plan
from factory.personas.pool import HubPersonaPool, statements_of
from factory.personas.source import SourceContext
from factory.recipes import parse_recipe
from factory.recipes.personas import HubPersonasSource
from tests.conftest import subprocess_env
from tests.hub import HubServer

PROFESSIONS = ["nurse", "carpenter", "violinist", "beekeeper", "chemist", "pilot", "librarian", "chef"]


def personahub_rows(count: int) -> list[dict]:
    return [
        {"persona": f"A retired {PROFESSIONS[i % 8]} from town {i} who restores old bicycles. Loves jazz records."}
        for i in range(count)
    ]


def source(**settings) -> HubPersonasSource:
    return HubPersonasSource.model_validate({"source": "hub_personas", **settings})


def make(settings: HubPersonasSource, tmp_path, seed: int = 3):
    context = SourceContext(lambda name: tmp_path / name, random.Random(seed))
    return HubPersonaPool().make(settings, None, context)


def test_a_personahub_file_becomes_first_person_statement_personas(tmp_path):
    pl.DataFrame(personahub_rows(5)).write_parquet(tmp_path / "personas.parquet")

    made = make(source(path="personas.parquet", layout="personahub"), tmp_path)

    assert len(made.personas) == 5
    first = made.personas[0]
    assert first.statements == ["I am a retired nurse from town 0 who restores old bicycles.", "Loves jazz records."]
    assert first.description.startswith("A retired nurse") and first.source == "personas.parquet row 1"
    assert len({p.id for p in made.personas}) == 5


@pytest.mark.parametrize(
    ("text", "statements"),
    [
        ("A potter who fires her own glazes. She sells mugs online and hates plastic cups.",
         ["I am a potter who fires my own glazes.", "I sell mugs online and hate plastic cups."]),
        ("A beekeeper. She sells honey and candles at the market and talks to her bees.",
         ["I am a beekeeper.", "I sell honey and candles at the market and talk to my bees."]),
        ("A postman. He still walks ten miles a day. His dog Rex goes with him.",
         ["I am a postman.", "I still walk ten miles a day.", "My dog Rex goes with me."]),
        ("A teacher. She calls her mother every day. Loves jazz.",
         ["I am a teacher.", "I call my mother every day.", "Loves jazz."]),
    ],
)  # fmt: skip
def test_a_pool_persona_written_about_them_becomes_what_they_say(text, statements):
    """A persona told as "He ..." is given to the agent as who it is: in the third person the agent
    narrates itself ("He leans in and says")."""
    assert statements_of(text) == statements


def test_finepersonas_labels_become_topics(tmp_path):
    lines = [
        {"id": "a", "persona": "A marine biologist studying coral reefs.", "labels": json.dumps(["Science", "Ocean"])},
        {"id": "b", "persona": "An amateur astronomer with a backyard telescope.", "labels": '["Science"]'},
    ]
    (tmp_path / "fine.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")

    made = make(source(path="fine.jsonl", layout="finepersonas"), tmp_path)

    assert [p.topics for p in made.personas] == [["Science", "Ocean"], ["Science"]]
    assert made.personas[1].statements == ["I am an amateur astronomer with a backyard telescope."]


def test_nemotron_demographics_and_themed_texts_are_mapped(tmp_path):
    row = {
        "uuid": "u1",
        "persona": "Maria Lopez is a meticulous planner who keeps a garden.",
        "professional_persona": "Maria runs the night shift at a regional hospital pharmacy.",
        "hobbies_and_interests": "She grows tomatoes and sings in a church choir.",
        "sex": "Female",
        "age": 47,
        "occupation": "pharmacy_technician",
        "education_level": "bachelors",
        "city": "Tucson",
        "state": "AZ",
        "country": "USA",
    }
    pl.DataFrame([row]).write_parquet(tmp_path / "nemotron.parquet")

    persona = make(source(path="nemotron.parquet", layout="nemotron"), tmp_path).personas[0]

    assert persona.demographics.model_dump() == {
        "age": 47,
        "gender": "Female",
        "occupation": "pharmacy technician",
        "education": "bachelors",
        "location": "Tucson, AZ, USA",
    }
    assert persona.statements[1] == "Maria runs the night shift at a regional hospital pharmacy."
    assert len(persona.statements) == 3


def test_near_duplicates_are_dropped_and_named(tmp_path):
    rows = personahub_rows(4)
    rows.insert(2, {"persona": rows[0]["persona"].replace("Loves jazz records.", "Loves jazz records!")})
    pl.DataFrame(rows).write_parquet(tmp_path / "p.parquet")

    made = make(source(path="p.parquet", layout="personahub", dedup_threshold=0.7), tmp_path)

    assert len(made.personas) == 4
    assert [d.item for d in made.dropped] == ["p.parquet row 3"]
    assert made.reports["hub_personas"] == {"read": 5, "usable": 5, "near_duplicates": 1, "drawn": 4}


def test_a_column_draw_spreads_over_the_values_not_the_head_of_the_file(tmp_path):
    # 90 rows of one region, then 10 of each of three others: the head of the file is all "north"
    regions = ["north"] * 90 + ["south"] * 10 + ["east"] * 10 + ["west"] * 10
    rows = [
        {"persona": f"A {PROFESSIONS[i % 8]} number {i} who has a distinct story of their own, {i * 7}.", "region": r}
        for i, r in enumerate(regions)
    ]
    pl.DataFrame(rows).write_parquet(tmp_path / "p.parquet")
    settings = source(
        path="p.parquet",
        columns={"persona": "persona"},
        sample={"count": 8, "stratify_by": "region"},
        dedup_threshold=None,
    )

    made = make(settings, tmp_path)

    drawn = Counter(int(p.source.rsplit(" ", 1)[1]) for p in made.personas)
    by_region = Counter(regions[row - 1] for row in drawn)
    assert sum(by_region.values()) == 8 and by_region == {"north": 2, "south": 2, "east": 2, "west": 2}


def test_a_cluster_draw_covers_every_cluster(tmp_path):
    themes = ["sails boats on the open sea", "bakes sourdough bread at dawn", "repairs vintage radios"]
    rows = [{"persona": f"A person who {themes[i % 3]} and is number {i}."} for i in range(30)]
    pl.DataFrame(rows).write_parquet(tmp_path / "p.parquet")
    settings = source(
        path="p.parquet",
        layout="personahub",
        sample={"count": 6, "stratify_by": "cluster", "clusters": 3},
        dedup_threshold=None,  # the rows of a theme differ only in their number
    )

    made = make(settings, tmp_path)

    assert len(made.personas) == 6
    drawn = Counter(next(t for t in themes if t in p.description) for p in made.personas)
    assert drawn == dict.fromkeys(themes, 2)


def test_a_wrong_mapping_names_the_missing_column(tmp_path):
    pl.DataFrame(personahub_rows(2)).write_parquet(tmp_path / "p.parquet")

    with pytest.raises(PersonaFileError, match=r"no column 'bio'.*\['persona'\]") as caught:
        make(source(path="p.parquet", columns={"persona": "bio"}), tmp_path)
    assert caught.value.field == "columns.persona"
    with pytest.raises(PersonaFileError, match=r"no column 'region' to stratify by") as caught:
        make(source(path="p.parquet", layout="personahub", sample={"count": 1, "stratify_by": "region"}), tmp_path)
    assert caught.value.field == "sample.stratify_by"
    with pytest.raises(RecipeError, match="layout"):
        parse_recipe(
            {"name": "x", "personas": [{"source": "hub_personas", "path": "p.parquet"}], "casting": {"dialogues": 1}}
        )


def test_a_run_is_cast_from_a_pool(tmp_path):
    pl.DataFrame(personahub_rows(12)).write_parquet(tmp_path / "p.parquet")
    recipe = parse_recipe(
        {
            "name": "pool",
            "personas": [
                {"source": "hub_personas", "path": "p.parquet", "layout": "personahub", "sample": {"count": 6}}
            ],
            "casting": {"dialogues": 4},
        },
        path=tmp_path / "recipe.yaml",
    )

    casts = plan(recipe).casts

    assert len(casts) == 4
    assert all(speaker.id.startswith("pool-") for cast in casts for speaker in cast.speakers)


def test_a_pool_seeds_a_persona_bank(tmp_path):
    import datasets

    from factory.bank import build_bank
    from factory.recipes import PersonaBankRecipe

    pl.DataFrame(personahub_rows(10)).write_parquet(tmp_path / "p.parquet")
    recipe = parse_recipe(
        {
            "name": "pool-bank",
            "sources": [
                {"source": "hub_personas", "path": "p.parquet", "layout": "personahub", "sample": {"count": 6}}
            ],
            "output": {"license": "cc-by-nc-sa-4.0"},
        },
        path=tmp_path / "bank.yaml",
        model=PersonaBankRecipe,
    )

    build_bank(recipe, tmp_path / "bank", show_progress=False)

    personas = datasets.load_dataset(str(tmp_path / "bank"), split="personas")
    assert len(personas) == 6 and all(source.startswith("p.parquet row ") for source in personas["source"])


def test_a_mapped_mbti_column_makes_mbti_personas_and_a_bad_type_drops_its_row(tmp_path):
    rows = [
        {"bio": "A night-shift nurse who keeps bees.", "type": "intj"},
        {"bio": "A chemist who plays the cello.", "type": "XKCD"},
        {"bio": "A pilot who collects maps.", "type": None},
    ]
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps(row) for row in rows) + "\n", encoding="utf-8")

    made = make(source(path="p.jsonl", columns={"persona": "bio", "mbti": "type"}), tmp_path)

    by_text = {p.description: p for p in made.personas}
    assert by_text["A night-shift nurse who keeps bees."].mbti == "INTJ"
    assert by_text["A night-shift nurse who keeps bees."].kind == "mbti"
    assert (
        by_text["A pilot who collects maps."].kind == "statements"
        and by_text["A pilot who collects maps."].mbti is None
    )
    assert [(d.item, d.reason) for d in made.dropped] == [("p.jsonl row 2", "columns.mbti: 'XKCD' is not an MBTI type")]


@pytest.mark.parametrize(
    ("name", "content"),
    [("garbage.parquet", b"no parquet here" * 50), ("binary.jsonl", bytes(range(256)) * 8), ("words.json", b"[1, 2")],
)
def test_a_pool_file_that_cannot_be_read_is_one_line_naming_it(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(PersonaFileError) as caught:
        make(source(path=name, layout="personahub"), tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / name}: not a readable {Path(name).suffix} pool (")
    assert "\n" not in message


def test_a_hub_pool_offline_or_missing_is_one_line_naming_the_repo(tmp_path):
    bank = {"name": "pool", "seed": 1, "sources": [{"source": "hub_personas", "repo": "org/no-such-pool",
                                                      "layout": "personahub", "sample": {"count": 2}}]}  # fmt: skip
    (tmp_path / "bank.yaml").write_text(yaml.safe_dump(bank), encoding="utf-8")
    with HubServer(token="hf_pool_token_1a2b") as hub:
        settings = {"offline": {"HF_HUB_OFFLINE": "1"}, "missing": {"HF_HUB_OFFLINE": "0"},
                    "refused": {"HF_HUB_OFFLINE": "0", "HF_TOKEN": "hf_wrong"}}  # fmt: skip
        for case, extra in settings.items():
            env = subprocess_env(HF_ENDPOINT=hub.endpoint, HF_HOME=str(tmp_path / f"hf-{case}"), **extra)
            finished = subprocess.run(
                [sys.executable, "-m", "factory.cli", "personas", "build", str(tmp_path / "bank.yaml"),
                 "--out", str(tmp_path / case), "--no-progress"],
                capture_output=True, text=True, env=env, timeout=300,
            )  # fmt: skip
            assert finished.returncode == 2, (case, finished.stderr[-2000:])
            (line,) = finished.stderr.strip().splitlines()
            assert line.startswith("error: org/no-such-pool@main: cannot read the pool from the Hub ("), (case, line)
            assert "hf_" not in line and not (tmp_path / case).exists()

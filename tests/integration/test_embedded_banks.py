"""Persona banks on the real embedded stack: SmolLM2 through llama.cpp's server for the LLM, and
the packaged all-MiniLM-L6-v2 through sentence-transformers for embeddings."""

from __future__ import annotations

import json
import subprocess
import sys

import datasets
import numpy as np
import pytest
import yaml

from factory.dataset.bank_card import compute_coverage
from factory.llm.embeddings import open_embedder
from factory.personas.mbti_bank import BEHAVIOUR
from factory.recipes.llm import EmbeddingsConfig
from tests.conftest import subprocess_env

pytestmark = [pytest.mark.embedded, pytest.mark.slow]


def test_packaged_minilm_embeds_offline_and_ranks_paraphrases_first():
    embedder = open_embedder(EmbeddingsConfig(backend="minilm"), None, None)
    vectors = embedder.embed(
        ["I love my two dogs.", "I adore my pair of puppies.", "The bond market fell sharply today."]
    )
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 2] + 0.3


def _build(tmp_path, text: str):
    recipe = tmp_path / "bank.yaml"
    recipe.write_text(text, encoding="utf-8")
    out = tmp_path / "bank"
    result = subprocess.run(
        [sys.executable, "-m", "factory.cli", "personas", "build", str(recipe), "--out", str(out), "--no-progress"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == str(out.resolve())
    rows = list(datasets.load_dataset(str(out), split="personas"))
    metadata = yaml.safe_load((out / "README.md").read_text(encoding="utf-8").split("---")[1])
    assert metadata["persona_factory"]["coverage"] == compute_coverage(rows).as_dict()
    return rows, json.loads((out / "manifest.json").read_text()), metadata


def test_mbti_characters_from_the_embedded_model(tmp_path):
    rows, manifest, _ = _build(
        tmp_path,
        "name: small-mbti\nseed: 3\nsources:\n  - {source: mbti_bank, types: [INTJ, ESFP], per_type: 1, max_attempts: 2}\n",
    )
    assert manifest["model"] == "smollm2-135m-instruct" and manifest["llm"]["calls"] >= 2
    assert len(rows) + len(manifest["dropped"]) == 2
    for row in rows:  # whatever the small model wrote, what was kept passed validation
        assert row["mbti"] in ("INTJ", "ESFP") and all(BEHAVIOUR.match(e) for e in row["behaviour_examples"])


def test_implicit_profiles_from_usp_with_minilm_agreement(tmp_path):
    rows, manifest, metadata = _build(
        tmp_path, "name: usp-users\nsources:\n  - {source: implicit, path: 'builtin:usp'}\n"
    )
    # The schema-constrained extractor always answers in shape, so both distinct chats that have a
    # user turn become profiles; the other 9 lines are a chat without one and repeats.
    assert len(rows) == 2 and {row["kind"] for row in rows} == {"implicit"}
    assert len(manifest["dropped"]) == 9
    agreement = manifest["reports"]["implicit_agreement"]
    assert agreement["embedder"].startswith("all-MiniLM-L6-v2") and agreement["conversations"] == 2
    for part in ("objective", "subjective"):
        assert agreement[f"{part}_top1"] in (0.0, 0.5, 1.0)  # two conversations: 0, 1 or 2 ranked first
    assert metadata["persona_factory"]["implicit_agreement"] == agreement

"""One version of a dataset folder, from staging to published: the one path dialogue runs and
persona banks both take.

A version is staged in a folder of its own (parquet shards, card with its review section, recipe,
manifest) and only moved into the dataset folder, as one git commit, once every file is written;
a run that dies while writing leaves the folder as it was.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import pyarrow.parquet as pq
from pydantic import BaseModel

from factory.dataset.arrow import arrow_schema, records_to_table
from factory.dataset.card import dataset_info
from factory.dataset.folder import DatasetFolder
from factory.dataset.manifest import manifest_text
from factory.dataset.review_section import LEAST_SURE, ReviewState, pick_samples, write_state
from factory.records import SCHEMA_VERSION

ROWS_PER_SHARD = 20_000
ROWS_PER_ROW_GROUP = 1_000


class MadeByRecipe(Protocol):
    """What a version's manifest says of the recipe that made it (a run's or a bank's)."""

    name: str
    seed: int

    def content_hash(self) -> str: ...


class ShardWriter:
    """One split's parquet shards, ``ROWS_PER_SHARD`` rows each, written row group by row group."""

    def __init__(self, data_dir: Path, split: str, shards: int, names: list[str], model: type[BaseModel]) -> None:
        self.data_dir, self.split, self.shards, self.names, self.model = data_dir, split, shards, names, model
        self._buffer: list[BaseModel] = []
        self._writer: pq.ParquetWriter | None = None
        self._in_shard = 0
        self.rows = 0

    def add(self, record: BaseModel) -> None:
        self._buffer.append(record)
        self.rows += 1
        if len(self._buffer) >= ROWS_PER_ROW_GROUP or self._in_shard + len(self._buffer) >= ROWS_PER_SHARD:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        writer = self._writer or self._open()
        writer.write_table(records_to_table(self.model, self._buffer))
        self._in_shard += len(self._buffer)
        self._buffer = []
        if self._in_shard >= ROWS_PER_SHARD:
            writer.close()
            self._writer, self._in_shard = None, 0

    def close(self) -> None:
        self._flush()
        if not self.names and self.shards:  # a declared split with no rows: one file without row groups
            self._open()
        if self._writer is not None:
            self._writer.close()

    def _open(self) -> pq.ParquetWriter:
        name = f"{self.split}-{len(self.names):05d}-of-{self.shards:05d}.parquet"
        self.names.append(f"data/{name}")
        self._writer = pq.ParquetWriter(self.data_dir / name, arrow_schema(self.model))
        return self._writer


class VersionWriter:
    """The next version of ``folder``, staged: splits are added, then the card, recipe and
    manifest, then it is published. Taken while the folder's lock is held."""

    def __init__(self, folder: DatasetFolder) -> None:
        self.folder = folder
        self.previous = folder.current_version()
        self.version = folder.next_version()
        self.staging = folder.new_staging()
        (self.staging / "data").mkdir()
        self.files: dict[str, list[str]] = {}
        self.rows: dict[str, int] = {}
        self._writers: list[tuple[str, ShardWriter]] = []

    def split(self, name: str, rows: int, model: type[BaseModel], *, declared: bool = False) -> ShardWriter:
        """A writer for the ``rows`` rows of a split (known beforehand: shard names count them).
        An empty split has no file, unless ``declared``: then one file without row groups, which
        ``datasets`` reads as no rows (a file with an empty row group it cannot read at all)."""
        shards = -(-rows // ROWS_PER_SHARD) or int(declared)
        writer = ShardWriter(self.staging / "data", name, shards, self.files.setdefault(name, []), model)
        self._writers.append((name, writer))
        return writer

    def write_split(self, name: str, model: type[BaseModel], records: Iterable[BaseModel]) -> None:
        items = list(records)
        writer = self.split(name, len(items), model)
        for item in items:
            writer.add(item)

    def close_splits(self) -> None:
        for name, writer in self._writers:
            writer.close()
            self.rows[name] = writer.rows

    def dataset_info(self, splits: list[str], config_name: str = "default") -> dict[str, Any]:
        return dataset_info(
            self.staging, {s: self.files[s] for s in splits}, {s: self.rows[s] for s in splits}, config_name
        )

    def split_listing(self, splits: list[str]) -> dict[str, dict[str, Any]]:
        """What the manifest says of these splits: rows and files."""
        return {split: {"rows": self.rows[split], "files": self.files[split]} for split in splits}

    def manifest_head(
        self, recipe: MadeByRecipe, provenance: dict[str, Any], started_at: datetime, started: float
    ) -> dict[str, Any]:
        """The fields every version's manifest opens with: which version, made by what, when."""
        return {
            "version": self.version,
            "previous_version": self.previous,
            "recipe": recipe.name,
            "recipe_hash": recipe.content_hash(),
            "schema_version": SCHEMA_VERSION,
            **provenance,
            "seed": recipe.seed,
            "started_at": started_at.isoformat(),
            "finished_at": datetime.now(timezone.utc).isoformat(),
            "seconds": round(time.monotonic() - started, 2),
        }

    def finish(
        self,
        *,
        card: str,
        cells_by_split: dict[str, dict[str, str]],
        review_seed: int,
        review_samples: dict[str, int],
        labels_required: bool = False,
        least_sure: list[str] | None = None,
        recipe_text: str,
        manifest: dict[str, Any],
        pipeline_text: str | None = None,
    ) -> None:
        """The card with its review section (the samples a reviewer must read, drawn with
        ``review_seed``, stratified over the persona cells ``cells_by_split`` gives each row), the
        recipe, the manifest, and the distilabel pipeline that reruns it."""
        picked, strata = pick_samples(cells_by_split, review_seed, review_samples)
        drawn = {i for ids in picked.values() for i in ids}
        # the learned critic's least sure, offered first; not a random draw, so they weigh nothing in estimates
        unsure = [i for i in least_sure or [] if i not in drawn][: review_samples.get("accepted", 0)]
        if unsure:
            picked = {LEAST_SURE: unsure, **picked}
        review = ReviewState(samples=picked, seed=review_seed, strata=strata, labels_required=labels_required)
        (self.staging / "README.md").write_text(write_state(card, review), encoding="utf-8")
        (self.staging / "recipe.yaml").write_text(recipe_text, encoding="utf-8")
        if pipeline_text is not None:
            (self.staging / "pipeline.yaml").write_text(pipeline_text, encoding="utf-8")
        (self.staging / "manifest.json").write_text(manifest_text(manifest), encoding="utf-8")

    def publish(self, message: str) -> None:
        self.folder.publish(self.staging, self.version, message)

"""The finished dialogues of a run, on disk from the moment they finish.

Each finished cast is appended to ``segment.jsonl`` (one record per line, flushed, so a killed
process loses nothing it reported finished); every ``rows_per_part`` rows the segment is rolled into
a parquet part (written to a temporary name and renamed, so a part is whole or absent). A line cut
short by a lost machine is dropped on reopening, and so is a segment row already in a part (the
machine was lost between writing a part and emptying the segment).

The journal is what ``--resume`` reads: a dialogue in it is never generated or judged again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from factory.dataset.arrow import arrow_schema
from factory.records import DialogueRecord

SEGMENT = "segment.jsonl"


class RunJournal:
    def __init__(self, directory: Path, rows_per_part: int = 500) -> None:
        self.directory = directory
        self.rows_per_part = rows_per_part
        directory.mkdir(parents=True, exist_ok=True)
        self._segment_path = directory / SEGMENT
        self._parts = sorted(directory.glob("part-*.parquet"))
        in_parts = self._part_ids()
        kept = [line for line, row in self._segment_entries() if row["id"] not in in_parts]
        self._segment_path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        self._segment_rows = len(kept)
        self.rows = len(in_parts) + len(kept)
        self._segment = self._segment_path.open("a", encoding="utf-8")

    def _part_ids(self) -> set[str]:
        return {i for part in self._parts for i in pq.read_table(part, columns=["id"]).column("id").to_pylist()}

    def _segment_entries(self) -> list[tuple[str, dict[str, Any]]]:
        """Each whole line of the segment with its parsed row."""
        if not self._segment_path.exists():
            return []
        entries = []
        for line in self._segment_path.read_text(encoding="utf-8").splitlines():
            try:
                entries.append((line, json.loads(line)))
            except json.JSONDecodeError:
                break  # the tail of a write cut short; everything after it is lost with it
        return entries

    def append(self, records: list[DialogueRecord]) -> None:
        self._segment.write("".join(record.model_dump_json() + "\n" for record in records))
        self._segment.flush()
        self._segment_rows += len(records)
        self.rows += len(records)
        if self._segment_rows >= self.rows_per_part:
            self._roll()

    def _roll(self) -> None:
        self._segment.close()
        # the lines were dumped from validated records: straight to arrow, no second validation
        rows = [row for _, row in self._segment_entries()]
        if rows:
            part = self.directory / f"part-{len(self._parts):05d}.parquet"
            temporary = part.with_suffix(".tmp")
            pq.write_table(pa.Table.from_pylist(rows, schema=arrow_schema(DialogueRecord)), temporary)
            os.replace(temporary, part)
            self._parts.append(part)
        self._segment = self._segment_path.open("w", encoding="utf-8")
        self._segment_rows = 0

    def _flush(self) -> None:
        if not self._segment.closed:
            self._segment.flush()

    def close(self) -> None:
        if self._segment_rows:
            self._roll()
        self._segment.close()

    def __enter__(self) -> RunJournal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def batches(self, batch_size: int = 500) -> Iterator[list[DialogueRecord]]:
        """Every record, a batch at a time: the parts, then the segment."""
        for part in self._parts:
            for batch in pq.ParquetFile(part).iter_batches(batch_size=batch_size):
                yield [DialogueRecord.model_validate(row) for row in batch.to_pylist()]
        self._flush()
        rows = [row for _, row in self._segment_entries()]
        for start in range(0, len(rows), batch_size):
            yield [DialogueRecord.model_validate(row) for row in rows[start : start + batch_size]]

"""The parquet schema of published records, derived from their pydantic models.

Deriving it (rather than letting pyarrow infer it from rows) keeps every shard of every split
identical, even a split with no rows or a batch whose optional fields are all empty.
"""

from __future__ import annotations

import types
import typing
from functools import cache

import pyarrow as pa
from pydantic import BaseModel

_SCALARS: dict[type, pa.DataType] = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}


def _arrow_type(annotation: typing.Any) -> pa.DataType:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        non_null = [arg for arg in args if arg is not type(None)]
        if len(non_null) != 1:
            raise TypeError(f"cannot map union {annotation} to arrow")
        return _arrow_type(non_null[0])
    if origin is typing.Literal:
        return _SCALARS[type(args[0])]
    if origin is list:
        return pa.list_(_arrow_type(args[0]))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return pa.struct(_fields(annotation))
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    raise TypeError(f"cannot map {annotation!r} to arrow")


def _fields(model: type[BaseModel]) -> list[pa.Field]:
    hints = typing.get_type_hints(model)
    return [pa.field(name, _arrow_type(hints[name])) for name in model.model_fields]


@cache
def arrow_schema(model: type[BaseModel]) -> pa.Schema:
    return pa.schema(_fields(model))


def records_to_table(model: type[BaseModel], records: list[BaseModel]) -> pa.Table:
    return pa.Table.from_pylist([record.model_dump(mode="json") for record in records], schema=arrow_schema(model))

"""What every recipe model shares: unknown keys are errors."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from factory.records import dotted


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Marks a field that may change between a run and its resumption: where the work runs and how hard
# the endpoint is pushed, never what shapes a dialogue. Declared on the field itself.
MAY_CHANGE_ON_RESUME: dict[str, Any] = {"may_change_on_resume": True}


def may_change_on_resume(model: type[BaseModel], name: str) -> bool:
    extra = model.model_fields[name].json_schema_extra
    return isinstance(extra, dict) and bool(extra.get("may_change_on_resume"))


def shaping_fields(config: BaseModel) -> dict[str, object]:
    """The settings that shape the data, as {dotted key: value}: everything but the fields that
    may change on resume (an extra key of a model that allows them holds a model of its own)."""
    flat: dict[str, object] = {}
    for name in type(config).model_fields:
        if may_change_on_resume(type(config), name) or type(config).model_fields[name].exclude:
            continue
        value = getattr(config, name)
        if isinstance(value, BaseModel):
            flat.update({f"{name}.{key}": inner for key, inner in shaping_fields(value).items()})
        else:
            flat.update(dotted(config.model_dump(mode="json", include={name})[name], name))
    for name, value in (config.model_extra or {}).items():  # a plugin's settings, beside the fields
        flat.update({f"{name}.{key}": inner for key, inner in shaping_fields(value).items()})
    return flat

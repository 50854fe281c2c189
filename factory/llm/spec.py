"""Where requests go and how: an endpoint as every client of it is made, free of secrets."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import ConfigDict

from factory.recipes.llm import EndpointLimits, LLMConfig
from factory.records import EndpointKind


class EndpointSpec(EndpointLimits):
    """Where to send requests and how (the recipe's limits, with the endpoint found). Holds no
    secret: it travels to Ray workers and into pipeline files."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_urls: tuple[str, ...]
    model: str
    kind: EndpointKind = "openai-compatible"
    structured_output: Literal["json_schema", "json_object"] = "json_schema"

    @classmethod
    def of(
        cls,
        llm: LLMConfig,
        base_urls: str | list[str] | tuple[str, ...],
        model: str,
        kind: EndpointKind,
    ) -> EndpointSpec:
        """The recipe's endpoint settings, for the endpoint found (or started) at ``base_urls``."""
        limits = llm.model_dump(include=set(EndpointLimits.model_fields))
        limits["min_concurrency"] = min(llm.min_concurrency, llm.max_concurrency)
        return cls(
            base_urls=(base_urls,) if isinstance(base_urls, str) else tuple(base_urls),
            model=model,
            kind=kind,
            structured_output=llm.structured_output or ("json_object" if kind == "embedded" else "json_schema"),
            **limits,
        )

    @property
    def base_url(self) -> str:
        """The first base URL: where one-off requests (checks, embeddings) go."""
        return self.base_urls[0]

    def response_format(self, name: str, schema: dict[str, Any]) -> dict[str, Any]:
        return json_response_format(self.structured_output, name, schema)


def json_response_format(
    structured_output: Literal["json_schema", "json_object"], name: str, schema: dict[str, Any]
) -> dict[str, Any]:
    """OpenAI's ``json_schema`` format, or the ``json_object`` + ``schema`` form that llama.cpp's
    Python server understands (it rejects ``json_schema``)."""
    if structured_output == "json_object":
        return {"type": "json_object", "schema": schema}
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


def prompt_hash(messages: list[dict[str, str]]) -> str:
    return hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()


def public(url: str) -> str:
    """A URL without any credentials it might carry."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))

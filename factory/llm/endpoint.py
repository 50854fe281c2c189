"""Where a job's LLM is: the configured endpoint, or the embedded model for the job's duration;
and what a manifest records of it (never a credential)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from urllib.parse import urlsplit, urlunsplit

from factory.config import LLMConfig, environment_overrides
from factory.errors import EndpointError
from factory.llm.client import EndpointSpec, check_endpoint


def endpoint_spec(llm: LLMConfig, base_url: str, model: str, kind: str) -> EndpointSpec:
    structured = llm.structured_output or ("json_object" if kind == "embedded" else "json_schema")
    return EndpointSpec(
        base_url=base_url,
        model=model,
        kind=kind,  # type: ignore[arg-type]
        max_concurrency=llm.max_concurrency,
        max_retries=llm.max_retries,
        timeout=llm.timeout,
        backoff_base=llm.backoff_base,
        backoff_max=llm.backoff_max,
        structured_output=structured,
    )


@contextmanager
def open_endpoint(llm: LLMConfig) -> Iterator[EndpointSpec]:
    """The configured endpoint, or the embedded llama.cpp server for the duration of the run."""
    if llm.base_url:
        spec = endpoint_spec(llm, llm.base_url, llm.model or "", "openai-compatible")
        models = check_endpoint(spec, environment_overrides()["api_key"])
        if not spec.model:
            if len(models) != 1:
                raise EndpointError(
                    f"the endpoint at {spec.base_url} serves {len(models)} models ({', '.join(models[:5]) or 'none listed'}); "
                    "choose one with --model (or PERSONA_FACTORY_MODEL)"
                )
            spec = spec.model_copy(update={"model": models[0]})
        yield spec
        return
    from factory.llm.embedded import EmbeddedServer

    with EmbeddedServer() as server:
        yield endpoint_spec(llm, server.base_url, server.model, "embedded")


def public_url(url: str) -> str:
    """The URL without any credentials it might carry."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def endpoint_provenance(spec: EndpointSpec | None) -> dict[str, str | None]:
    """What a manifest says of the endpoint: the model, the kind, and where (without credentials)."""
    if spec is None:
        return {"model": None, "endpoint_kind": None, "endpoint": None}
    where = "embedded llama.cpp server" if spec.kind == "embedded" else public_url(spec.base_url)
    return {"model": spec.model, "endpoint_kind": spec.kind, "endpoint": where}


def package_versions() -> dict[str, str]:
    versions = {}
    for package in (
        "persona-factory", "distilabel", "ray", "datasets", "openai", "huggingface-hub", "polars", "sentence-transformers",
    ):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions

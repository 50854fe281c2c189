"""Where a job's LLM is: the configured endpoint, or the embedded model for the job's duration;
and what a manifest records of it (never a credential)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from importlib import metadata
from typing import Any

from factory.errors import EndpointError
from factory.llm.client import EndpointSpec, check_endpoint, public
from factory.recipes.llm import AgentLLMConfig, LLMConfig
from factory.settings import environment


def endpoint_spec(llm: LLMConfig, base_urls: str | list[str], model: str, kind: str) -> EndpointSpec:
    structured = llm.structured_output or ("json_object" if kind == "embedded" else "json_schema")
    return EndpointSpec(
        base_urls=(base_urls,) if isinstance(base_urls, str) else tuple(base_urls),
        model=model,
        kind=kind,  # type: ignore[arg-type]
        max_concurrency=llm.max_concurrency,
        min_concurrency=min(llm.min_concurrency, llm.max_concurrency),
        initial_concurrency=llm.initial_concurrency,
        adaptive_concurrency=llm.adaptive_concurrency,
        latency_tolerance=llm.latency_tolerance,
        eject_after=llm.eject_after,
        eject_seconds=llm.eject_seconds,
        outage_seconds=llm.outage_seconds,
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
        spec = endpoint_spec(llm, llm.base_urls, llm.model or "", "openai-compatible")
        models = check_endpoint(spec, environment().api_key)
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


def agent_endpoints(
    agents: dict[str, AgentLLMConfig], llm: LLMConfig, spec: EndpointSpec, api_key: str | None
) -> dict[str, EndpointSpec]:
    """The role-play speakers that talk through another model or endpoint than the recipe's,
    checked before any work starts."""
    specs = {}
    for key, agent in agents.items():
        if agent.base_urls:
            agent_spec = endpoint_spec(llm, agent.base_urls, agent.model or "", "openai-compatible")
            models = check_endpoint(agent_spec, api_key)
            model = agent.model or (models[0] if len(models) == 1 else None)
            if not model:
                raise EndpointError(
                    f"the endpoint of agent {key!r} serves {len(models)} models; name one with "
                    f"generation.role_play.agents.{key}.model"
                )
            specs[key] = agent_spec.model_copy(update={"model": model})
        elif agent.model:
            specs[key] = spec.model_copy(update={"model": agent.model})
    return specs


def structured_output_used(spec: EndpointSpec, report: dict[str, Any]) -> dict[str, str]:
    """How the critics' JSON was asked for: as configured, or json_object where the endpoint refused json_schema."""
    refused = [url for url, numbers in (report.get("endpoints") or {}).items() if numbers.get("json_schema_refused")]
    used = "json_object" if refused else spec.structured_output
    return {
        "configured": spec.structured_output,
        "used": used,
        **({"refused_by": ", ".join(refused)} if refused else {}),
    }


def endpoint_provenance(spec: EndpointSpec | None) -> dict[str, str | None]:
    """What a manifest says of the endpoint: the model, the kind, and where (without credentials)."""
    if spec is None:
        return {"model": None, "endpoint_kind": None, "endpoint": None}
    where = "embedded llama.cpp server" if spec.kind == "embedded" else ", ".join(public(url) for url in spec.base_urls)
    return {"model": spec.model, "endpoint_kind": spec.kind, "endpoint": where}


def package_versions() -> dict[str, str]:
    versions = {}
    for package in (
        "persona-factory",
        "ray",
        "datasets",
        "openai",
        "huggingface-hub",
        "polars",
        "sentence-transformers",
    ):
        with suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return versions

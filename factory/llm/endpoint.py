"""Where a job's LLM is: the configured endpoint, or the embedded model for the job's duration;
and what a manifest records of it (never a credential)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from importlib import metadata
from typing import Any

import openai

from factory.errors import EndpointError
from factory.llm.client import PLACEHOLDER_API_KEY, backoff_delay
from factory.llm.keys import DEFAULT_KEY_ENV, ApiKeys
from factory.llm.spec import EndpointSpec, public
from factory.llm.wire import describe_answer, short
from factory.recipes.llm import AgentLLMConfig, LLMConfig


@contextmanager
def open_endpoint(llm: LLMConfig) -> Iterator[EndpointSpec]:
    """The configured endpoint, or the embedded llama.cpp server for the duration of the run."""
    if llm.base_url:
        spec = EndpointSpec.of(llm, llm.base_urls, llm.model or "", "openai-compatible")
        models = check_endpoint(spec, ApiKeys())
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
        yield EndpointSpec.of(llm, server.base_url, server.model, "embedded")


def agent_endpoints(
    agents: dict[str, AgentLLMConfig], llm: LLMConfig, spec: EndpointSpec, keys: ApiKeys
) -> dict[str, EndpointSpec]:
    """The role-play speakers that talk through another model or endpoint than the recipe's,
    checked before any work starts."""
    specs = {}
    for key, agent in agents.items():
        if agent.base_urls:
            agent_spec = EndpointSpec.of(llm, agent.base_urls, agent.model or "", "openai-compatible").model_copy(
                update={"api_key_env": agent.api_key_env or DEFAULT_KEY_ENV}  # another server: not the recipe's key
            )
            models = check_endpoint(agent_spec, keys)
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


def check_endpoint(spec: EndpointSpec, keys: ApiKeys, *, attempts: int = 3) -> list[str]:
    """Fail fast, before any work starts, when no base URL of the endpoint can be used at all.
    Returns the models the first answering URL lists (empty when it does not list them)."""
    errors = []
    for url in spec.base_urls:
        try:
            return _list_models(url, keys.for_endpoint(spec), spec.api_key_env, attempts)
        except _Unreachable as exc:
            errors.append(f"{public(url)} ({exc})")
    raise EndpointError(
        f"cannot reach the LLM endpoint at {'; '.join(errors)}. "
        "Check --base-url (or OPENAI_BASE_URL), or leave it out to run the embedded model."
    )


class _Unreachable(Exception):
    pass


def _list_models(url: str, api_key: str | None, key_env: str, attempts: int) -> list[str]:
    client = openai.OpenAI(base_url=url, api_key=api_key or PLACEHOLDER_API_KEY, timeout=10, max_retries=0)
    last_error: Exception | None = None
    try:
        for attempt in range(attempts):
            try:
                listing = client.get("/models", cast_to=object)
                models = listing.get("data") if isinstance(listing, dict) else None
                if not isinstance(models, list):
                    raise EndpointError(
                        f"the endpoint at {public(url)} answered /models with {describe_answer(listing)}, not a "
                        "model list: is it an OpenAI-compatible server? (the base URL usually ends in /v1)"
                    )
                return [str(model.get("id")) for model in models if isinstance(model, dict) and model.get("id")]
            except ValueError as exc:  # a body cut off mid-JSON
                raise EndpointError(
                    f"the endpoint at {public(url)} answered /models with broken JSON ({short(exc, 80)})"
                ) from None
            except openai.AuthenticationError as exc:
                raise EndpointError(
                    f"the endpoint at {public(url)} rejected the API key ({exc.status_code}); "
                    f"set {key_env} to a valid key"
                ) from exc
            except openai.NotFoundError:
                return []  # some servers do not list models; the first chat call will tell
            except (openai.APIConnectionError, openai.APITimeoutError, openai.InternalServerError) as exc:
                last_error = exc
                if attempt + 1 < attempts:
                    time.sleep(backoff_delay(attempt, 0.5, 4.0))
    finally:
        client.close()
    raise _Unreachable(f"{type(last_error).__name__}: {short(last_error)}")

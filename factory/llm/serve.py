"""Models served on the Ray cluster for a run (``llm.serve``, ``critics.llm.serve``).

The run deploys each as a Ray Serve application behind Serve's HTTP proxy on the head node, waits
until it answers through the same API the pipeline uses, points the recipe's endpoint at it, and
deletes it when the run ends however it ends (unless ``serve.keep``). A replica that dies is
restarted by Serve; the client's retries carry the requests it held. Ray must be connected first.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from factory.errors import EndpointError
from factory.llm.embedded import http_trouble
from factory.llm.serve_apps import llama_cpp_app, served_model_name, vllm_app
from factory.recipes import Recipe
from factory.recipes.serve import ServeConfig

APP_PREFIX = "persona-factory"


@dataclass
class ServedModel:
    """One model the run deployed: where it answers, and where its replicas ran."""

    role: str
    app: str
    config: ServeConfig
    base_url: str
    model: str
    seen: dict[str, dict[str, Any]] = field(default_factory=dict)  # replica id -> its deployment, node and pid

    def look(self) -> list[dict[str, Any]]:
        """The replicas running now (Serve's own account of them), remembered with those seen before."""
        running = running_replicas(self.app)
        self.seen.update({replica["replica_id"]: replica for replica in running})
        return running

    def manifest(self) -> dict[str, Any]:
        self.look()
        nodes: dict[str, set[str]] = {}
        for replica in self.seen.values():
            nodes.setdefault(replica["deployment"], set()).add(replica["node_id"])
        return {
            "app": self.app,
            "engine": self.config.engine,
            "model": self.model,
            "replicas": self.config.model_dump(mode="json")["replicas"],
            "replica_nodes": sorted(set().union(*nodes.values())) if nodes else [],
            "nodes_by_deployment": {name: sorted(ids) for name, ids in nodes.items()},
            "replicas_seen": len(self.seen),
        }


def running_replicas(app: str) -> list[dict[str, Any]]:
    """Serve's details of the application's running replicas (what its dashboard API shows):
    replica id, deployment, node id and pid."""
    from ray.serve.context import _get_global_client

    client = _get_global_client()
    details = client.get_serve_details() if client is not None else {}
    deployments = details.get("applications", {}).get(app, {}).get("deployments", {})
    return [
        {"replica_id": replica["replica_id"], "deployment": name, "node_id": replica["node_id"], "pid": replica["pid"]}
        for name, deployment in deployments.items()
        for replica in deployment.get("replicas", [])
        if replica.get("state") == "RUNNING"
    ]


def models_to_serve(recipe: Recipe) -> dict[str, ServeConfig]:
    """The recipe's ``serve`` blocks by role: ``generator`` (llm.serve), ``judge`` (critics.llm.serve)."""
    wanted = {"generator": recipe.llm.serve, "judge": recipe.critics.llm.serve}
    return {role: config for role, config in wanted.items() if config is not None}


def app_name(recipe_name: str, role: str) -> str:
    return f"{APP_PREFIX}-{recipe_name}-{role}"


@contextmanager
def serving(recipe: Recipe) -> Iterator[tuple[Recipe, dict[str, ServedModel]]]:
    """The recipe with its served models' endpoints in place of their ``serve`` blocks, for as
    long as they are deployed."""
    with ExitStack() as stack:
        served = {
            role: stack.enter_context(deployed(config, app_name(recipe.name, role), role))
            for role, config in models_to_serve(recipe).items()
        }
        yield pointed_at(recipe, served), served


def pointed_at(recipe: Recipe, served: dict[str, ServedModel]) -> Recipe:
    """The recipe whose generator and judge talk to the models served for it."""
    update: dict[str, Any] = {}
    for role, model in served.items():
        llm = recipe.llm if role == "generator" else recipe.critics.llm
        endpoint = {"serve": None, "base_url": model.base_url, "model": model.model}
        if llm.structured_output is None and model.config.engine == "llama.cpp":
            endpoint["structured_output"] = "json_object"  # as for the embedded model
        update[role] = llm.model_copy(update=endpoint)
    critics = recipe.critics
    if "judge" in update:
        critics = critics.model_copy(update={"llm": update["judge"]})
    pointed = recipe.model_copy(update={"llm": update.get("generator", recipe.llm), "critics": critics})
    pointed.base_dir = recipe.base_dir
    return pointed


@contextmanager
def deployed(config: ServeConfig, app: str, role: str = "generator") -> Iterator[ServedModel]:
    """A Serve application of ``config`` named ``app``, answering; deleted on the way out unless kept."""
    from ray import serve

    start_serve(config.port)
    target = llama_cpp_app(config) if config.engine == "llama.cpp" else vllm_app(config)
    try:
        try:
            serve.run(target, name=app, route_prefix=f"/{app}")
        except RuntimeError as exc:  # Serve gave up on the replicas: their constructor's error is in the text
            raise EndpointError(f"the {role} model could not be served on the cluster: {_last_error(exc)}") from None
        base_url = f"http://{head_address()}:{config.port}/{app}/v1"
        model = ServedModel(role, app, config, base_url, served_model_name(config))
        wait_until_answering(model.base_url, config.startup_timeout)
        model.look()
    except BaseException:
        remove(app)
        raise
    try:
        yield model
    finally:
        if not config.keep:
            remove(app)


def _last_error(exc: BaseException) -> str:
    """The last line of Serve's report that names an error (the replica's own), or its first line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    named = [line for line in lines if "Error" in line]
    return (named[-1] if named else lines[0] if lines else type(exc).__name__)[:400]


def start_serve(port: int) -> None:
    """Serve's controller and one HTTP proxy, on the head node, reachable from every node."""
    from ray import serve

    serve.start(proxy_location="HeadOnly", http_options={"host": "0.0.0.0", "port": port})


def remove(app: str) -> None:
    """Delete the application; and Serve itself when no application is left (so nothing of the run stays)."""
    from ray import serve

    serve.delete(app)
    if not serve.status().applications:
        serve.shutdown()  # type: ignore[no-untyped-call]


def head_address() -> str:
    import ray

    for node in ray.nodes():  # type: ignore[no-untyped-call]
        if node.get("Alive") and "node:__internal_head__" in node.get("Resources", {}):
            return str(node["NodeManagerAddress"])
    return "127.0.0.1"


def wait_until_answering(base_url: str, timeout: float) -> None:
    """The model list answers through Serve's proxy (a replica's server is already up when Serve
    calls it running; the proxy may take a moment more to route to it)."""
    deadline = time.monotonic() + timeout
    last: str | None = "no answer"
    while time.monotonic() < deadline:
        last = http_trouble(f"{base_url}/models", timeout=10)
        if last is None:
            return
        time.sleep(0.5)
    raise EndpointError(
        f"the model served at {base_url} did not answer within {timeout:.0f} s ({last}); is Serve's proxy on "
        "another port (serve.port)?"
    )


def deploy_to_keep(recipe: Recipe) -> list[ServedModel]:
    """Deploy the recipe's served models and leave them running (``persona-factory serve``)."""
    served = []
    for role, config in models_to_serve(recipe).items():
        with deployed(config.model_copy(update={"keep": True}), app_name(recipe.name, role), role) as model:
            served.append(model)
    return served


def remove_kept(recipe: Recipe) -> list[str]:
    """Delete the recipe's served models that are still deployed; returns the applications removed."""
    from ray import serve

    running = set(serve.status().applications)
    removed = [app for app in (app_name(recipe.name, role) for role in models_to_serve(recipe)) if app in running]
    for app in removed:
        remove(app)
    return removed

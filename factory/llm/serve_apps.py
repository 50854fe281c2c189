"""The Ray Serve applications a run deploys: llama.cpp's server on CPU nodes, vLLM on GPU nodes.

Each is built from a recipe's ``serve`` block alone, so what a recipe asks for can be checked
without deploying it (or having a GPU). Ray Serve is imported only when an application is built.
"""

from __future__ import annotations

import os
from typing import Any

from factory.errors import RecipeError
from factory.recipes.serve import ReplicaRange, ServeConfig


def replica_options(config: ServeConfig) -> dict[str, Any]:
    """Serve's deployment options for the replicas: how many (or the autoscaling range), and each one's resources."""
    options: dict[str, Any] = {}
    if isinstance(config.replicas, ReplicaRange):
        options["autoscaling_config"] = {
            "min_replicas": config.replicas.min,
            "max_replicas": config.replicas.max,
            "target_ongoing_requests": config.replicas.requests_per_replica,
        }
    else:
        options["num_replicas"] = config.replicas
    if config.one_replica_per_node:
        options["max_replicas_per_node"] = 1
    return options


def llama_cpp_parallel(config: ServeConfig) -> int:
    from factory.llm.embedded import EMBEDDED_PARALLEL

    return int(config.engine_args.get("parallel", EMBEDDED_PARALLEL))


def llama_cpp_app(config: ServeConfig) -> Any:
    """The llama.cpp application: each replica runs llama.cpp's server beside it and passes the
    OpenAI API through, so the replicas answer as one endpoint behind Serve's proxy."""
    from ray import serve

    replica = serve.deployment(
        name="llama-cpp",
        ray_actor_options={"num_cpus": config.num_cpus, "num_gpus": config.num_gpus or 0},
        # Serve queues beyond the slots, so a busy replica is not sent more than it decodes at once
        max_ongoing_requests=llama_cpp_parallel(config),
        health_check_period_s=2,
        health_check_timeout_s=30,
        graceful_shutdown_timeout_s=5,
        **replica_options(config),
    )(LlamaCppReplica)
    return replica.bind(config.model_dump(mode="json"))


def vllm_llm_config(config: ServeConfig) -> Any:
    """Ray Serve LLM's config of a vLLM deployment from the recipe: the model, the engine's
    arguments, the replicas, and each replica's GPUs and CPUs spread over its tensor x pipeline
    ranks (a fraction of a GPU each is allowed: a small model on part of one)."""
    engine_kwargs = dict(config.engine_args)
    ranks = int(engine_kwargs.get("tensor_parallel_size", 1)) * int(engine_kwargs.get("pipeline_parallel_size", 1))
    settings: dict[str, Any] = {
        "model_loading_config": {"model_id": config.model_name or config.model, "model_source": config.model},
        "engine_kwargs": engine_kwargs,
        "deployment_config": replica_options(config),
    }
    if config.num_gpus is not None:  # unset: vLLM's own, one GPU per rank
        if config.num_gpus > ranks:
            raise RecipeError(
                f"serve.num_gpus {config.num_gpus:g} is more than one per rank of the model ({ranks}); "
                "raise engine_args.tensor_parallel_size to use more GPUs per replica"
            )
        worker = {"GPU": config.num_gpus / ranks, "CPU": config.num_cpus / ranks}
        settings["placement_group_config"] = {"bundle_per_worker": worker, "strategy": "PACK"}
    return _llm_config_class()(**settings)


def _llm_config_class() -> Any:
    """Ray Serve LLM's LLMConfig. Its public import wants vLLM installed where the driver runs; the
    model it derives from does not, so a recipe is checked on a machine without vLLM or a GPU too."""
    try:
        from ray.serve.llm import LLMConfig

        return LLMConfig
    except ImportError:
        from ray.llm._internal.serve.core.configs.llm_config import LLMConfig as BaseLLMConfig

        return BaseLLMConfig


def vllm_app(config: ServeConfig) -> Any:
    """The vLLM application: Ray Serve LLM's OpenAI-compatible router over the vLLM replicas."""
    try:
        from ray.serve.llm import build_openai_app
    except ImportError as exc:
        raise RecipeError(
            f"serve.engine vllm needs Ray Serve LLM and vLLM on the cluster: pip install 'ray[serve,llm]' ({exc})"
        ) from None
    return build_openai_app({"llm_configs": [vllm_llm_config(config)]})


def served_model_name(config: ServeConfig) -> str:
    from factory.llm.embedded import EMBEDDED_MODEL_ALIAS

    if config.model_name:
        return config.model_name
    if config.engine == "vllm":
        return str(config.model)
    return os.path.splitext(os.path.basename(config.model))[0] if config.model else EMBEDDED_MODEL_ALIAS


class LlamaCppReplica:
    """One replica: llama.cpp's server on this node's loopback, dying with the replica (the
    kernel's parent-death signal covers a replica killed outright), and the OpenAI API passed through."""

    def __init__(self, serve_config: dict[str, Any]) -> None:
        from pathlib import Path

        import httpx

        from factory.llm.embedded import EmbeddedServer

        config = ServeConfig.model_validate(serve_config)
        engine_args = {key: value for key, value in config.engine_args.items() if key != "parallel"}
        self.server = EmbeddedServer(
            model_path=Path(config.model) if config.model else None,
            model_name=served_model_name(config),
            parallel=llama_cpp_parallel(config),
            n_threads=max(1, int(config.num_cpus)),
            engine_args=engine_args,
            startup_timeout=config.startup_timeout,
        ).start()
        self.upstream = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.server.port}", timeout=None)

    async def __call__(self, request: Any) -> Any:
        from starlette.responses import Response

        path = request.scope["path"]
        root = request.scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        answer = await self.upstream.request(
            request.method,
            path or "/",
            params=request.query_params,
            content=await request.body(),
            headers={"content-type": request.headers.get("content-type", "application/json")},
        )
        return Response(answer.content, status_code=answer.status_code, media_type=answer.headers.get("content-type"))

    def check_health(self) -> None:
        """Serve replaces a replica whose server died."""
        self.server.check_alive()

    def __del__(self) -> None:
        server = getattr(self, "server", None)
        if server is not None:
            server.stop()

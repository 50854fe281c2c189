"""A model the run serves itself on the Ray cluster (``llm.serve``, ``critics.llm.serve``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from factory.recipes.base import MAY_CHANGE_ON_RESUME, _Config


class ReplicaRange(_Config):
    """Serve's autoscaling: replicas follow the requests in flight, between ``min`` and ``max``."""

    min: int = Field(default=1, ge=1, le=1024)
    max: int = Field(ge=1, le=1024)
    requests_per_replica: int = Field(
        default=8, ge=1, description="Requests in flight per replica that Serve's autoscaler aims for."
    )

    @model_validator(mode="after")
    def _ordered(self) -> ReplicaRange:
        if self.max < self.min:
            raise ValueError(f"replicas.max ({self.max}) is below replicas.min ({self.min})")
        return self


class ServeConfig(_Config):
    """Deploy the model on the Ray cluster with Ray Serve for the run, and talk to it there.

    ``llama.cpp``: llama.cpp's server on CPU nodes, the packaged SmolLM2-135M unless ``model`` names
    a GGUF file present on every node. ``vllm``: Ray Serve LLM's vLLM deployment on GPU nodes;
    ``model`` is the model's id or path."""

    engine: Literal["llama.cpp", "vllm"] = "llama.cpp"
    model: str | None = Field(
        default=None,
        description="llama.cpp: a GGUF file on every node (unset: the packaged SmolLM2-135M-Instruct); "
        "vllm: the model id or path vLLM loads (required).",
    )
    model_name: str | None = Field(
        default=None, description="The name the endpoint serves the model under (unset: from the model)."
    )
    replicas: int | ReplicaRange = Field(
        json_schema_extra=MAY_CHANGE_ON_RESUME,
        default=1,
        description="Replicas: a number, or {min, max} for Serve's autoscaling.",
    )
    num_cpus: float = Field(
        json_schema_extra=MAY_CHANGE_ON_RESUME,
        default=1,
        gt=0,
        description="CPUs per replica (llama.cpp decodes on this many threads).",
    )
    num_gpus: float | None = Field(
        json_schema_extra=MAY_CHANGE_ON_RESUME,
        default=None,
        ge=0,
        description="GPUs per replica (unset: 0 for llama.cpp; vLLM's own, from its parallelism).",
    )
    one_replica_per_node: bool = Field(
        json_schema_extra=MAY_CHANGE_ON_RESUME,
        default=False,
        description="Never two replicas on one node (Serve's max_replicas_per_node: 1).",
    )
    engine_args: dict[str, Any] = Field(
        default_factory=dict,
        description="llama.cpp: llama-server options without the dashes ({parallel: 8, ctx-size: 16384}); "
        "vllm: vLLM engine arguments ({max_model_len: 4096, tensor_parallel_size: 2}).",
    )
    keep: bool = Field(
        json_schema_extra=MAY_CHANGE_ON_RESUME,
        default=False,
        description="Leave the deployment running after the run (remove it with `persona-factory serve --down`).",
    )
    port: int = Field(
        json_schema_extra=MAY_CHANGE_ON_RESUME,
        default=8000,
        ge=1,
        le=65535,
        description="The port of Serve's HTTP proxy on the head node.",
    )
    startup_timeout: float = Field(
        json_schema_extra=MAY_CHANGE_ON_RESUME,
        default=600.0,
        gt=0,
        description="Seconds for every replica to load the model and answer.",
    )

    @model_validator(mode="after")
    def _vllm_names_a_model(self) -> ServeConfig:
        if self.engine == "vllm" and not self.model:
            raise ValueError("serve.engine vllm needs serve.model (the model id or path vLLM loads)")
        return self

"""A real vLLM deployment on the cluster's GPUs through ``llm.serve``, and a short run against it.

Needs a Ray cluster with at least one GPU node where vLLM is installed (``pip install
'ray[serve,llm]'``) and the model is reachable (a Hub id the nodes may download, or a path on
them). It deploys the model with Ray Serve LLM as a recipe's ``llm.serve`` does, runs
``--dialogues`` dialogues in one-call mode with the default critics, prints tokens/s and
dialogues/s of the run, and removes the deployment. Without a GPU it says so and exits 1.

    python bench/gpu_serve.py --ray-address HEAD:6379 --model Qwen/Qwen2.5-0.5B-Instruct --replicas 2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from factory.api import parse_recipe, ray_session, run_recipe


def recipe_for(args: argparse.Namespace) -> dict:
    serve = {
        "engine": "vllm",
        "model": args.model,
        "replicas": args.replicas,
        "num_gpus": args.gpus_per_replica,
        "engine_args": {"max_model_len": args.max_model_len},
    }
    return {
        "name": "gpu-serve-bench",
        "seed": 5,
        "personas": [{"source": "statements", "count": 16}, {"source": "mbti", "count": 8}],
        "casting": {"dialogues": args.dialogues},
        "generation": {"mode": "spc", "min_turns": 6, "max_turns": 10, "max_tokens": 600},
        "llm": {"serve": serve, "max_concurrency": 256, "cache": {"enabled": False}},
        "ray": {"address": args.ray_address},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ray-address", default=None, help="The cluster; none: a local Ray on this machine.")
    parser.add_argument("--model", default="Qwen/Qwen2.5-0.5B-Instruct")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--gpus-per-replica", type=float, default=1)
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--dialogues", type=int, default=64)
    args = parser.parse_args()

    import ray

    with ray_session(args.ray_address):
        gpus = ray.cluster_resources().get("GPU", 0)
    if gpus < args.gpus_per_replica:
        print(f"no GPU to serve on: the cluster has {gpus:g} (this needs a GPU node with vLLM)", file=sys.stderr)
        return 1
    recipe = parse_recipe(recipe_for(args))
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        result = run_recipe(recipe, Path(tmp) / "out", show_progress=False)
        seconds = time.perf_counter() - started
    completion_tokens = sum(e["completion_tokens"] for e in result.manifest["execution"]["endpoints"].values())
    served = result.manifest["ray"]["served"]["generator"]
    print(f"vLLM {args.model}: {args.replicas} replica(s) on {len(served['replica_nodes'])} node(s), {gpus:g} GPUs")
    print(
        f"run (deploy included): {seconds:.1f} s; {result.stats.generated} dialogues, {result.stats.accepted} accepted"
    )
    print(f"{completion_tokens / seconds:.1f} tokens/s  {result.stats.generated / seconds:.3f} dialogues/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

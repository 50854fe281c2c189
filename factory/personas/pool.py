"""``source: hub_personas``: personas from a public persona pool.

The large pools teams seed from at scale (PersonaHub's text personas, FinePersonas,
Nemotron-Personas with demographic fields) are read with ``datasets`` as they are published: a
Hub dataset at a revision (streamed, so only the rows read are fetched) or a local parquet, JSONL
or CSV file. A column mapping (a built-in layout, or the recipe's own) turns each row into a
persona profile; free text becomes first-person statements a sentence at a time. Near-duplicate
personas are dropped (MinHash over word 3-grams, with LSH to find candidates), and the draw is a
spread over the pool's clusters or a column's values, not the head of the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import random
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factory.errors import PersonaFileError
from factory.personas.expansion import spherical_kmeans
from factory.personas.pool_statements import split_with_llm
from factory.personas.source import Made, SourceContext
from factory.personas.statements import MAX_PROFILE_CHARS, MAX_STATEMENT_CHARS
from factory.recipes.personas import HubPersonasSource, PersonaColumns
from factory.records import Demographics, Dropped, PersonaProfile
from factory.traits import MBTI_TYPES

LAYOUTS: dict[str, PersonaColumns] = {
    # proj-persona/PersonaHub, subset "persona": {"persona": "A retired nurse who ..."}
    "personahub": PersonaColumns(persona="persona"),
    # argilla/FinePersonas-v0.1: {"id", "persona", "labels": "[\"Education\", ...]"}
    "finepersonas": PersonaColumns(persona="persona", topics="labels"),
    # nvidia/Nemotron-Personas: a persona and themed descriptions, with census-grounded demographics
    "nemotron": PersonaColumns(
        persona="persona",
        more_text=["professional_persona", "hobbies_and_interests"],
        age="age",
        gender="sex",
        occupation="occupation",
        education="education_level",
        location=["city", "state", "country"],
    ),
}
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])")
_ARTICLE = re.compile(r"^(A|An|The)\s+", re.I)
_THIRD_PERSON = re.compile(r"^(He|She|They)\s+(?=[a-z])")
_POSSESSIVE = re.compile(r"^(His|Her|Their)\s+(?=[a-z])")
_NOT_A_NOUN = "every|a|an|the|to|at|in|on|for|with|about|and|or|up|out|back|again|daily|often"
_ADVERBS = frozenset({"still", "also", "often", "always", "never", "rarely", "sometimes", "usually", "even", "just"})
_IRREGULAR_VERBS = {"is": "am", "are": "am", "has": "have", "does": "do", "goes": "go", "was": "was", "were": "was"}
_FIRST_PERSON_WORDS = {"his": "my", "him": "me", "himself": "myself", "herself": "myself", "their": "my",
                       "them": "me", "themselves": "myself", "themself": "myself"}  # fmt: skip


def column_mapping(settings: HubPersonasSource) -> PersonaColumns:
    """The layout's mapping with the recipe's own columns over it."""
    base = LAYOUTS[settings.layout].model_dump() if settings.layout else {}
    own = settings.columns.model_dump(exclude_unset=True) if settings.columns else {}
    return PersonaColumns.model_validate({**base, **own})


@dataclass
class PoolRows:
    label: str  # the file as the recipe names it, or repo@revision: for messages and provenance
    rows: list[tuple[int, dict[str, Any]]]


def read_pool(settings: HubPersonasSource, resolve_path: Callable[[str], Path]) -> PoolRows:
    """The first ``scan`` rows of the pool, each mapped column checked to be there."""
    import datasets

    if settings.path is not None:
        path = resolve_path(settings.path)
        if not path.is_file():
            raise PersonaFileError("file not found", path=path)
        builders = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}
        builder = builders.get(path.suffix.lower())
        if builder is None:
            raise PersonaFileError("unsupported file type; use .parquet, .jsonl or .csv", path=path)
        label = settings.path  # as the recipe names it: provenance that names no machine's folders
        # pyarrow's, json's, datasets' own errors: whatever the bytes made of the reader
        failure, where = f"not a readable {path.suffix} pool", str(path)

        def opened() -> Any:
            return datasets.load_dataset(builder, data_files=str(path), split="train", streaming=True)

    else:
        label = f"{settings.repo}@{settings.revision or 'main'}"
        # offline, no such repo, refused (401, gated), a file that is no table
        failure, where = "cannot read the pool from the Hub", label

        def opened() -> Any:
            return datasets.load_dataset(
                settings.repo, name=settings.subset, revision=settings.revision, split=settings.split, streaming=True
            )

    try:
        rows = list(enumerate(itertools.islice(opened(), settings.scan), start=1))
    except Exception as exc:
        raise PersonaFileError(f"{failure} ({_first_line(exc)})", path=where) from exc
    if not rows:
        raise PersonaFileError("the pool has no rows", path=label)
    check_columns(settings, rows[0][1], label)
    return PoolRows(label, rows)


def _first_line(exc: BaseException) -> str:
    """What went wrong, as one line: the exception's first line (a Hub error's request id and
    advice follow on the next ones), or its class when it says nothing."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def check_columns(settings: HubPersonasSource, first: dict[str, Any], label: str) -> None:
    """Every column the source reads (the mapping's, and the one the draw is stratified by) is in the pool."""
    columns = column_mapping(settings)
    wanted = {f"columns.{name}": value for name, value in columns.model_dump().items() if isinstance(value, str)}
    wanted.update({f"columns.{name}": value for name in ("more_text", "location") for value in getattr(columns, name)})
    if settings.sample is not None and settings.sample.stratify_by not in (None, "cluster"):
        wanted["sample.stratify_by"] = settings.sample.stratify_by
    for field, column in wanted.items():
        if column not in first:
            purpose = " to stratify by" if field == "sample.stratify_by" else ""
            raise PersonaFileError(
                f"no column {column!r}{purpose}; the pool has {sorted(first)}", path=label, field=field
            )


def first_person(sentence: str) -> str:
    """PersonaHub's "A retired nurse who ..." as the persona says it: "I am a retired nurse who ...";
    a sentence about them ("He still swims every morning and misses his boat.") as "I still swim
    every morning and miss my boat." (an agent given "He ..." as who it is narrates itself: "He
    leans in and says")."""
    match = _ARTICLE.match(sentence)
    if match and sentence[: match.end()].strip().lower() in ("a", "an"):
        return _own(f"I am {sentence[0].lower()}{sentence[1:]}")
    if _POSSESSIVE.match(sentence):  # "Her collie Bran has found three lost walkers."
        return _own("My " + sentence.split(" ", 1)[1])
    subject = _THIRD_PERSON.match(sentence)
    if not subject:
        return sentence
    words = sentence[subject.end() :].split(" ")
    plural = subject.group(1) == "They"
    verb = 1 if len(words) > 1 and (words[0] in _ADVERBS or words[0].endswith("ly")) else 0
    words[verb] = _first_person_verb(words[verb], plural)
    # a second verb joined by "and" ("... every morning and misses ..."), told from a noun joined
    # to the object ("sells honey and candles") by the words between the verb and the "and"
    for index in range(verb + 3, len(words) - 1):
        if words[index] == "and" and "," not in " ".join(words[:index]):
            words[index + 1] = _first_person_verb(words[index + 1], plural)
            break
    said = "I " + " ".join(words)  # and "... every building she visits" as "... every building I visit"
    return _own(re.sub(r"\b(?:he|she) (\w+)", lambda m: "I " + _first_person_verb(m.group(1), False), said))


def _own(text: str) -> str:
    """The persona's own things: "his route", "her own glazes" as "my route", "my own glazes"."""
    text = re.sub(rf"\b(?:{'|'.join(_FIRST_PERSON_WORDS)})\b", lambda m: _FIRST_PERSON_WORDS[m.group(0)], text)
    # "her" before a noun is theirs ("her bees"); before anything else it is someone else ("calls her")
    return re.sub(rf"\bher (?!(?:{_NOT_A_NOUN})\b)(?=[a-z])", "my ", text)


def _first_person_verb(word: str, plural: bool) -> str:
    lower = word.lower()
    if lower in _IRREGULAR_VERBS:
        return _IRREGULAR_VERBS[lower]
    if plural or not lower.endswith("s") or lower.endswith("ss"):
        return word
    if re.search(r"[^aeiou]ies$", lower):
        return word[:-3] + "y"
    if re.search(r"(ss|sh|ch|x|z|o)es$", lower):
        return word[:-2]
    return word[:-1]


def statements_of(text: str) -> list[str]:
    sentences = [part.strip() for part in _SENTENCE_END.split(" ".join(text.split())) if part.strip()]
    return [first_person(sentence) for sentence in sentences]


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _listed(value: Any) -> list[str]:
    """A list column, a JSON list in a string (FinePersonas' labels), or lines of text."""
    if isinstance(value, str) and value.strip().startswith("["):
        with contextlib.suppress(ValueError):  # not JSON after all: lines of text
            value = json.loads(value)
    if isinstance(value, list):
        return [str(item).strip() for item in value if str(item).strip()]
    return [line.strip() for line in _text(value).splitlines() if line.strip()]


def persona_of(number: int, record: dict[str, Any], columns: PersonaColumns, label: str) -> PersonaProfile | str:
    """The row's persona, or why it cannot be one."""
    description = _text(record.get(columns.persona)) if columns.persona else ""
    statements = _listed(record.get(columns.statements)) if columns.statements else statements_of(description)
    for name in columns.more_text:
        statements += statements_of(_text(record.get(name)))
    statements = [s for s in dict.fromkeys(statements) if len(s) <= MAX_STATEMENT_CHARS]
    while statements and sum(map(len, statements)) > MAX_PROFILE_CHARS:
        statements.pop()  # the first sentences say who the persona is; the tail goes into no prompt
    if not statements:
        return "no usable persona text (empty, or every sentence too long)"
    age = _text(record.get(columns.age)) if columns.age else ""
    place = ", ".join(part for name in columns.location if (part := _text(record.get(name))))
    demographics = Demographics(
        age=int(float(age)) if re.fullmatch(r"\d+(\.0+)?", age) else None,
        gender=_text(record.get(columns.gender)) or None if columns.gender else None,
        occupation=_text(record.get(columns.occupation)).replace("_", " ") or None if columns.occupation else None,
        education=_text(record.get(columns.education)).replace("_", " ") or None if columns.education else None,
        location=place or None,
    )
    mbti = _text(record.get(columns.mbti)).upper() if columns.mbti else ""
    if mbti and mbti not in MBTI_TYPES:
        return f"columns.mbti: {mbti!r} is not an MBTI type"
    digest = hashlib.sha256("\n".join(statements).encode()).hexdigest()[:10]
    return PersonaProfile(
        id=f"pool-{digest}",
        kind="mbti" if mbti else "statements",
        mbti=mbti or None,
        name=_text(record.get(columns.name)) or None if columns.name else None,
        demographics=demographics,
        statements=statements,
        topics=_listed(record.get(columns.topics)) if columns.topics else [],
        description=description or " ".join(statements),
        source=f"{label} row {number}",
    )


def near_duplicates(texts: list[str], threshold: float) -> set[int]:
    """Indexes of texts that repeat an earlier one (estimated Jaccard of word 3-grams >= threshold)."""
    from factory.near_duplicates import first_repeats, signature

    return {int(key) for key in first_repeats(((str(i), signature(t)) for i, t in enumerate(texts)), threshold)}


def stratified(groups: dict[str, list[int]], count: int, rng: random.Random) -> list[int]:
    """``count`` indexes spread over the groups as evenly as their sizes allow, round robin from shuffled groups."""
    queues = [rng.sample(members, len(members)) for _, members in sorted(groups.items())]
    rng.shuffle(queues)
    chosen: list[int] = []
    while len(chosen) < count and any(queues):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(queue.pop())
    return chosen


class HubPersonaPool:
    """``source: hub_personas``: a persona pool read as published."""

    def generative(self, settings: HubPersonasSource) -> bool:
        return settings.statements_by == "llm"

    def attribution(self, settings: HubPersonasSource) -> str | None:
        return None  # the pool's licence is its own: named by the recipe's output.license

    def prepare(self, settings: HubPersonasSource, resolve_path: Callable[[str], Path]) -> PoolRows:
        return read_pool(settings, resolve_path)

    def needs_embeddings(self, settings: HubPersonasSource, prepared: PoolRows | None) -> bool:
        return settings.sample is not None and settings.sample.stratify_by == "cluster"

    def make(self, settings: HubPersonasSource, prepared: PoolRows | None, context: SourceContext) -> Made:
        pool = prepared or read_pool(settings, context.resolve_path)
        columns = column_mapping(settings)
        personas: list[PersonaProfile] = []
        rows: list[dict[str, Any]] = []
        dropped = []
        for number, record in pool.rows:
            made = persona_of(number, record, columns, pool.label)
            if isinstance(made, str):
                dropped.append(Dropped("hub_personas", f"{pool.label} row {number}", made))
            else:
                personas.append(made)
                rows.append(record)
        usable = len(personas)
        if settings.dedup_threshold is not None:
            repeated = near_duplicates([" ".join(p.statements) for p in personas], settings.dedup_threshold)
            dropped += [
                Dropped("hub_personas", personas[i].source, "a near-duplicate of an earlier persona")
                for i in sorted(repeated)
            ]
            personas = [p for i, p in enumerate(personas) if i not in repeated]
            rows = [r for i, r in enumerate(rows) if i not in repeated]
        chosen = self._draw(settings, personas, rows, context)
        report = {
            "read": len(pool.rows),
            "usable": usable,
            "near_duplicates": usable - len(personas),
            "drawn": len(chosen),
        }
        drawn = [personas[i] for i in chosen]
        if settings.statements_by == "llm":
            runner = context.llm()
            results = runner.gather(
                (split_with_llm(runner, persona, settings, context.rng.randrange(2**31)) for persona in drawn),
                desc="statements",
                show_progress=context.show_progress,
            )
            drawn = [result for result in results if isinstance(result, PersonaProfile)]
            dropped += [result for result in results if isinstance(result, Dropped)]
            report["split_by_llm"] = len(drawn)
        return Made(drawn, dropped, {"hub_personas": report})

    def _draw(
        self,
        settings: HubPersonasSource,
        personas: list[PersonaProfile],
        rows: list[dict[str, Any]],
        context: SourceContext,
    ) -> list[int]:
        sample = settings.sample
        if sample is None or sample.count >= len(personas):
            return list(range(len(personas)))
        if sample.stratify_by is None:
            return sorted(context.rng.sample(range(len(personas)), sample.count))
        if sample.stratify_by == "cluster":
            vectors = _embed([" ".join(p.statements) for p in personas], context)
            labels = [
                str(label) for label in spherical_kmeans(vectors, sample.clusters, seed=context.rng.randrange(2**31))
            ]
        else:  # a column, checked with the mapped ones when the pool was read
            labels = [_text(row.get(sample.stratify_by)) for row in rows]
        groups: dict[str, list[int]] = defaultdict(list)
        for index, label in enumerate(labels):
            groups[label].append(index)
        return sorted(stratified(groups, sample.count, context.rng))


def _embed(texts: list[str], context: SourceContext) -> Any:
    """The context's embedder, or the packaged all-MiniLM-L6-v2 for this once (a dialogue run opens
    none for its persona sources), closed when done."""
    if context.embedder is not None:
        return context.embedder.embed(texts)
    from factory.llm.embeddings import open_embedder
    from factory.recipes.llm import EmbeddingsConfig

    embedder = open_embedder(EmbeddingsConfig(), None, None)
    try:
        return embedder.embed(texts)
    finally:
        embedder.close()

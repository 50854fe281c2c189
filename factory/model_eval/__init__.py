"""`persona-factory eval-model`: how well a chat model stays in character on a version's held-out
personas, after the role-playing evaluations the seed methods end in (APC, PsyPlay's portrayal
back-test, PersonaEval's attribution, Synthetic-Persona-Chat's faithfulness expert).

For each persona of the split (``test`` by default: ``output.splits`` keeps its personas out of
every training row), the factory's user simulator plays a partner persona against the model
under test for a set number of exchanges; the critics judge the transcripts on their own
endpoints; the figures, overall and per persona cell with 95% intervals, go into an evaluation
folder that records the dataset version, the models and the judges. Two models are evaluated on
the same personas with the same simulator and seeds, and the report says, critic by critic,
whether their difference lies beyond the intervals.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from factory.critics.base import JudgeContext, JudgePanel
from factory.critics.jury import judge_panels, needs_generator
from factory.critics.portrayal import checked_kind
from factory.critics.registry import critic_specs, verdict_of
from factory.dataset.card import published_folder_name
from factory.errors import InputError, MostlyUnanswered, PipelineError
from factory.llm.embedded import check_running_servers
from factory.llm.endpoint import endpoint_provenance, open_endpoint, package_versions
from factory.llm.keys import ApiKeys
from factory.llm.spec import EndpointSpec
from factory.llm.tasks import JsonTaskRunner
from factory.model_eval.card import check_out, write_evaluation
from factory.model_eval.personas import EvalPersona, split_personas
from factory.model_eval.report import Judged, compare, comparison_lines, model_figures, summary_table
from factory.model_eval.talk import BUILTIN_QUESTIONS, PARTNER, PLAYED, Voices, conversation_seed, converse
from factory.recipes.critics import CriticsConfig, needs_llm
from factory.recipes.generation import GenerationConfig
from factory.recipes.judges import JudgeLLMConfig
from factory.recipes.llm import LLMConfig
from factory.records import FORMAT, DialogueRecord, PersonaProfile
from factory.rejudge.sources import read_version

# the critics that judge a model's persona play: those that ask a model whether a speaker is who they are
EXPERTS = tuple(
    name for name, spec in critic_specs().items() if needs_llm(name) and spec.label[0] in ("faithful", "portrayed")
)
LABELS = ("a", "b")


@dataclass
class EvalModelRequest:
    """What `eval-model` was asked: the version and its split, the models (one, or two to
    compare), who judges and who plays the user, and how long each conversation is."""

    source: str
    out: Path
    models: list[LLMConfig]
    revision: str | None = None
    judge: JudgeLLMConfig | None = None
    simulator: LLMConfig | None = None  # none: the judges' endpoint
    critics: CriticsConfig = field(default_factory=CriticsConfig)
    experts: list[str] = field(default_factory=lambda: list(EXPERTS))
    split: str = "test"
    personas: int | None = None
    turns: int = 4
    seed: int = 0
    temperature: float = 0.7
    questions: tuple[str, ...] = ()  # instead of the simulator: these, asked in turn
    show_progress: bool = True


@dataclass
class EvalModelResult:
    out: Path
    report: dict[str, Any]

    def summary(self) -> str:
        return "\n".join([*summary_table(self.report), *comparison_lines(self.report), str(self.out)])

    def check_answered(self) -> None:
        """Fails (one line) when a critic's judge left most of a model's verdicts unanswered:
        that critic measured nothing, whatever the rest of the report says."""
        _check_answered(self.report, self.out)


def evaluate_models(request: EvalModelRequest) -> EvalModelResult:
    """Evaluate the request's models and write the evaluation folder (then see
    :meth:`EvalModelResult.check_answered`)."""
    experts = _checked(request)
    check_out(request.out)
    version = read_version(request.source, request.revision)
    cast = split_personas(version, request.split, request.personas, request.seed)
    critics = request.critics
    if request.judge is not None:
        critics = critics.model_copy(update={"llm": request.judge.over(critics.llm)})
    keys = ApiKeys()
    with ExitStack() as stack:
        endpoints = _Endpoints(stack)
        models = [endpoints.open(llm) for llm in request.models]
        generator = endpoints.open(LLMConfig()) if needs_generator(critics, experts) else None
        panels = judge_panels(critics, LLMConfig(), generator, keys, names=experts)
        simulator = endpoints.open(request.simulator) if request.simulator else _judges_endpoint(generator, panels)
        transcripts = _conversations(request, cast, models, simulator, keys)
        judged = _judge(transcripts, cast, critics, experts, generator, panels, simulator, keys, request)
    check_running_servers()
    report: dict[str, Any] = {
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dataset": _published(version.provenance),
        "split": request.split,
        "personas": len(cast),
        "turns": request.turns,
        "seed": request.seed,
        "temperature": request.temperature,
        "experts": experts,
        "simulator": endpoint_provenance(simulator),
        "interlocutor": f"{len(request.questions)} fixed questions" if request.questions else "user simulator",
        "judges": {name: [endpoint_provenance(juror.spec) for juror in panel.jurors] for name, panel in panels.items()},
        "models": [
            {
                "label": label,
                "model": endpoint_provenance(spec),
                **_conversation_counts(transcripts[label]),
                **model_figures(judged[label], experts),
            }
            for label, spec in zip(LABELS, models)
        ],
        "packages": package_versions(),
    }
    if len(models) == 2:
        report["comparison"] = compare(report["models"][0], report["models"][1], experts)
    write_evaluation(request.out, report, transcripts)
    return EvalModelResult(request.out, report)


def _published(provenance: dict[str, Any]) -> dict[str, Any]:
    """The dataset as a report may name it: a folder given by an absolute path by its name, which
    says nothing of this machine's layout."""
    if "path" not in provenance:
        return provenance
    return {**provenance, "path": published_folder_name(provenance["path"])}


def load_questions(value: str) -> tuple[str, ...]:
    """``builtin`` (PersonaGym-style questions shipped with the factory), or a text file with a
    question per line."""
    if value == "builtin":
        return BUILTIN_QUESTIONS
    path = Path(value)
    if not path.is_file():
        raise InputError("no such file (give a text file with a question per line, or builtin)", path=path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start})", path=path) from None
    questions = tuple(line.strip() for line in lines if line.strip())
    if not questions:
        raise InputError("holds no question", path=path)
    return questions


def _checked(request: EvalModelRequest) -> list[str]:
    unknown = [name for name in request.experts if name not in EXPERTS]
    if unknown or not request.experts:
        raise InputError(f"unknown critics {unknown}; choose from {', '.join(EXPERTS)}", field="--experts")
    if not 1 <= len(request.models) <= len(LABELS):
        raise InputError(f"evaluate one model, or two to compare, not {len(request.models)}", field="--base-url")
    if request.turns < 1 or (request.personas is not None and request.personas < 1):
        raise InputError("--turns and --personas must be at least 1", field="--turns")
    return list(dict.fromkeys(request.experts))


class _Endpoints:
    """Each endpoint opened once: models, judges and simulator on the embedded model share one server."""

    def __init__(self, stack: ExitStack) -> None:
        self.stack = stack
        self.opened: dict[tuple[tuple[str, ...], str | None], EndpointSpec] = {}

    def open(self, llm: LLMConfig) -> EndpointSpec:
        key = (tuple(llm.base_urls), llm.model if llm.base_urls else None)
        if key not in self.opened:
            self.opened[key] = self.stack.enter_context(open_endpoint(llm))
        return self.opened[key]


def _judges_endpoint(generator: EndpointSpec | None, panels: dict[str, JudgePanel]) -> EndpointSpec:
    if generator is not None:
        return generator
    return next(iter(panels.values())).jurors[0].spec


def _conversations(
    request: EvalModelRequest,
    cast: list[EvalPersona],
    models: list[EndpointSpec],
    simulator: EndpointSpec,
    keys: ApiKeys,
) -> dict[str, list[DialogueRecord]]:
    with JsonTaskRunner(simulator, keys) as runner:
        if runner.client is None:
            raise PipelineError("the simulator has no client")
        plays = [
            (
                label,
                persona,
                Voices(
                    runner.client_for(spec), spec.model, runner.client, request.temperature, questions=request.questions
                ),
            )
            for label, spec in zip(LABELS, models)
            for persona in cast
        ]
        records = runner.gather(
            (converse(persona, voices, request.turns, request.seed, label) for label, persona, voices in plays),
            desc="conversations",
            show_progress=request.show_progress,
        )
    by_model: dict[str, list[DialogueRecord]] = {label: [] for label in LABELS[: len(models)]}
    for (label, _, _), record in zip(plays, records):
        by_model[label].append(record)
    for label, spec in zip(LABELS, models):
        finished = [record for record in by_model[label] if _finished(record)]
        if not finished:
            first = by_model[label][0].verdicts[-1].reason
            raise PipelineError(f"the model under test ({spec.model}) failed every conversation; the first: {first}")
    return by_model


def _finished(record: DialogueRecord) -> bool:
    return all(verdict.passed for verdict in record.verdicts if verdict.critic == FORMAT)


def _conversation_counts(records: list[DialogueRecord]) -> dict[str, Any]:
    usage = [record.generation.usage for record in records]
    return {
        "conversations": len(records),
        "failed": sum(not _finished(record) for record in records),
        "tokens": {
            "prompt": sum(u.prompt_tokens for u in usage),
            "completion": sum(u.completion_tokens for u in usage),
        },
    }


def judged_record(transcript: DialogueRecord, critic: str, seed: int) -> DialogueRecord | None:
    """What ``critic`` is shown of a conversation, or None when the played persona gives it
    nothing to check. apc, faithfulness and portrayal judge the played persona alone: the
    partner's profile is left blank, since the simulator's fidelity says nothing of the model.
    Attribution is shown the model's lines only, and both profiles in a seeded order, and asked
    whose lines they are."""
    played, partner = transcript.speakers[PLAYED], transcript.speakers[PARTNER]
    if critic == "portrayal" and checked_kind(played) is None:
        return None
    if critic == "attribution":
        own = [turn for turn in transcript.turns if turn.speaker == played.id]
        pair = [played, partner] if conversation_seed(played.id, seed) % 2 == 0 else [partner, played]
        return transcript.model_copy(update={"speakers": pair, "turns": own, "verdicts": []})
    blank = PersonaProfile(id=partner.id, kind=partner.kind, name=partner.name, statements=[])
    return transcript.model_copy(update={"speakers": [blank, played], "verdicts": []})


def _judge(
    transcripts: dict[str, list[DialogueRecord]],
    cast: list[EvalPersona],
    critics: CriticsConfig,
    experts: list[str],
    generator: EndpointSpec | None,
    panels: dict[str, JudgePanel],
    simulator: EndpointSpec,
    keys: ApiKeys,
    request: EvalModelRequest,
) -> dict[str, list[Judged]]:
    """Every critic's verdict on every finished conversation, kept on the transcript too."""
    cells = {entry.persona.id: entry.cell for entry in cast}
    asked = [
        (label, record, critic, shown)
        for label, records in transcripts.items()
        for record in records
        if _finished(record)
        for critic in experts
        if (shown := judged_record(record, critic, request.seed)) is not None
    ]
    with JsonTaskRunner(generator or simulator, keys) as runner:
        clients = {juror.spec: runner.client_for(juror.spec) for panel in panels.values() for juror in panel.jurors}
        context = JudgeContext(
            runner.client if generator else None, GenerationConfig(min_turns=2, max_turns=1000),
            judge_model=generator.model if generator else None, panels=panels, clients=clients,
        )  # fmt: skip
        verdicts = runner.gather(
            (verdict_of(critic, shown, critics.settings_of(critic), context) for _, _, critic, shown in asked),
            desc="judging",
            show_progress=request.show_progress,
        )
    judged: dict[str, list[Judged]] = {label: [] for label in transcripts}
    for (label, record, critic, _), verdict in zip(asked, verdicts):
        record.verdicts.append(verdict)
        judged[label].append(Judged(critic, cells[record.speakers[PLAYED].id], verdict))
    for records in transcripts.values():
        for record in records:
            record.accepted = all(verdict.passed for verdict in record.verdicts)
    return judged


def _check_answered(report: dict[str, Any], out: Path) -> None:
    for model in report["models"]:
        for critic, figure in model["overall"].items():
            asked = figure["judged"] + figure["unanswered"]
            if asked and figure["unanswered"] * 2 > asked:
                raise MostlyUnanswered(
                    f"{critic}: the judge left {figure['unanswered']} of {asked} verdicts on {model['label']} "
                    f"unanswered, so it measured nothing (the first: {figure['first_unanswered']}); the rest of "
                    f"the report is in {out}"
                )

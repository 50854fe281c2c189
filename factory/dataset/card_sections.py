"""The sections of a dialogue dataset's card body, each from the run's figures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from factory.dataset.stats import RunStats
from factory.llm.pricing import usd
from factory.recipes.critics import needs_llm
from factory.records import DialogueRecord, speaker_label


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


MODE_NOTES = {
    "spc": "one call writes the whole conversation (Synthetic-Persona-Chat)",
    "role_play": "one agent per speaker, one call per turn, persona memory (CharacterChat, PsyPlay, USP)",
}


@dataclass
class ChatSplits:
    """The messages config's rows per split, and how it was split."""

    rows: dict[str, int]
    left_out: int
    test_share: float | None


def modes_section(stats: RunStats, chat_config: bool, chat: ChatSplits | None = None) -> list[str]:
    """Which mode made the data of each config, and, when a recipe used both, how they compare."""
    if not stats.modes:
        return []
    made = ", ".join(f"`{m['mode']}` ({MODE_NOTES.get(m['mode'], m['mode'])})" for m in stats.modes)
    lines = ["## Generation modes", "", f"The `default` config holds every dialogue, made by {made}."]
    if chat_config:
        lines.append(
            "The `messages` config holds the accepted dialogues as chat messages (OpenAI format, the persona's "
            "agent prompt as the system message), for chat fine-tuning."
        )
    if chat_config and chat is not None and chat.test_share is not None:
        counts = ", ".join(f"{rows:,} in `{split}`" for split, rows in chat.rows.items())
        lines += [
            "",
            f"Its splits are persona-disjoint: each persona is in one split for good ({chat.test_share:.0%} of them in "
            "`test`, by a seeded hash of the persona's id); casting pairs personas of one split only, and a dialogue "
            f"goes to the split all its speakers are in, so no persona of `test` is seen in `train`. Rows: {counts}; "
            f"{chat.left_out:,} accepted dialogue{'s' if chat.left_out != 1 else ''} whose speakers are in different "
            "splits are in neither.",
        ]
    lines.append("")
    if len(stats.modes) > 1:
        lines += [
            markdown_table(
                ["mode", "dialogues", "accepted", "acceptance rate"],
                [[m["mode"], m["dialogues"], m["accepted"], f"{m['acceptance_rate']:.0%}"] for m in stats.modes],
            ),
            "",
        ]
    if stats.cleaned_turns:
        lines += [
            f"What cleaning changed in the models' lines ({stats.turns:,} turns; each turn's `cleaned` names its own): "
            "a speaker label taken off (`label`), a part written for another speaker cut (`other_speaker`), "
            "narration or stage directions taken out (`narration`), a line cut by the token limit trimmed to its last "
            "whole sentence (`trimmed`), asked again when no sentence was whole (`asked_again`).",
            "",
            markdown_table(["change", "turns"], [[k, v] for k, v in stats.cleaned_turns.items()]),
            "",
        ]
    if stats.ended_by:
        lines += [
            "Why the role-plays ended:",
            "",
            markdown_table(["ended by", "dialogues"], [[k, v] for k, v in stats.ended_by.items()]),
            "",
        ]
    return lines


def rounds_section(rounds: list[dict[str, Any]]) -> list[str]:
    if len(rounds) < 2:
        return []
    return [
        "## Generator-Critic rounds",
        "",
        "Each round's best accepted dialogues are the next round's few-shot examples.",
        "",
        markdown_table(
            ["round", "casts", "dialogues", "accepted", "tokens", "few-shot examples from"],
            [
                [
                    r["round"],
                    r["casts"],
                    r["dialogues"],
                    r["accepted"],
                    r["tokens"],
                    ", ".join(r["few_shot_from"][:4]) + (" ..." if len(r["few_shot_from"]) > 4 else ""),
                ]
                for r in rounds
            ],
        ),
        "",
    ]


def coverage_section(coverage: list[dict[str, Any]]) -> list[str]:
    """The quota cells after the critics: what was asked, cast and kept, and why a cell fell short."""
    if not coverage:
        return []
    requested = coverage[0]["requested"]
    rows = [
        [c["cell"], "-" if c["requested"] is None else c["requested"], c["cast"], c["accepted"],
         "yes" if c["filled"] else f"no: rejected most by `{c['rejected_most_by'] or 'none'}`"]
        for c in coverage
    ]  # fmt: skip
    short = [c for c in coverage if not c["filled"]]
    lines = ["## Coverage after filtering", ""]
    if requested is not None:
        lines += [
            f"`casting.accepted_per_cell` asks for {requested} accepted dialogue(s) per cell; cells short of it were "
            "cast again, round after round, until full or out of attempts (`casting.cell_attempts`).",
            "",
        ]
    lines += [markdown_table(["cell", "requested", "cast", "accepted", "filled"], rows), ""]
    if short:
        named = ", ".join(
            f"{c['cell']} ({c['accepted']} of {c['requested']}, mostly `{c['rejected_most_by']}`)" for c in short
        )
        lines += [f"Not filled: {named}.", ""]
    return lines


def changelog_section(changelog: dict[str, Any] | None) -> list[str]:
    if not changelog:
        return []
    rows = [["dialogues", *changelog["generated"]], ["accepted", *changelog["accepted"]]]
    rows += [
        [f"pass rate: {critic}", *(("-" if v is None else f"{v:.0%}") for v in values)]
        for critic, values in changelog["critics"].items()
    ]
    rows += [
        [f"pass rate: {cell}", *(("-" if v is None else f"{v:.0%}") for v in values)]
        for cell, values in changelog["cells"].items()
    ]
    recipe = ", ".join(f"`{key}`" for key in changelog["recipe_changes"]) or "nothing"
    return [
        f"## Changes since {changelog['against']}",
        "",
        markdown_table(["", changelog["against"], "this version"], rows),
        "",
        f"Recipe settings changed: {recipe}.",
        "",
    ]


def _figure(value: object) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _measured_with(expert: str, report: dict[str, Any]) -> list[str]:
    """The model(s) a report measured an expert with: its judges, the embedder, or none (rules)."""
    judges = (report.get("judges") or {}).get(expert)
    if judges:
        return list(judges)
    if expert == "grounding":
        return [report["embedder"]] if report.get("embedder") else []
    return [report["model"]] if report.get("model") and needs_llm(expert) else []


TRUST_HEADING = "## How far to trust these critics"  # `critics eval` and `critics calibrate` both write here


def critic_report_section(report: dict[str, Any] | None) -> list[str]:
    if not report:
        return []
    rows = [
        [e["expert"], _judges(_measured_with(e["expert"], report)), e["examples"], _figure(e.get("accuracy")),
         _figure(e.get("auroc")), e["measure"]]
        for e in report.get("experts", [])
    ]  # fmt: skip
    return [
        TRUST_HEADING,
        "",
        f"From `persona-factory critics eval` on {report.get('data', 'labelled data')}:",
        "",
        markdown_table(["expert", "judge", "examples", "accuracy", "AUROC", "measured on"], rows),
        "",
    ]


def render_dialogue(record: DialogueRecord) -> str:
    lines = []
    for index, persona in enumerate(record.speakers, start=1):
        label = persona.name or speaker_label(index)
        frame = f" ({persona.mbti})" if persona.mbti else ""
        lines.append(f"**{label}{frame}**: " + " ".join(persona.statements))
    lines.append("")
    lines.extend(f"> **{record.speaker_name(turn.speaker)}:** {turn.text}  " for turn in record.turns)
    if not record.turns:
        lines.append("> (no turns could be parsed)")
    lines.append("")
    lines.extend(f"- `{v.critic}`: {'pass' if v.passed else 'FAIL'} — {v.reason}" for v in record.verdicts)
    return "\n".join(lines)


def counts_section(stats: RunStats) -> list[str]:
    mean_turns = f"{stats.mean_turns_accepted:g}" if stats.accepted else "n/a"
    return [
        "## Counts",
        "",
        markdown_table(
            ["generated", "accepted", "rejected", "acceptance rate", "mean turns (accepted)"],
            [[stats.generated, stats.accepted, stats.rejected, f"{stats.acceptance_rate:.0%}", mean_turns]],
        ),
        "",
    ]


def _judges(models: list[str]) -> str:
    return ", ".join(f"`{model}`" for model in models) or "rules"


def critics_section(stats: RunStats, enabled: list[str]) -> list[str]:
    priced = stats.generation_cost is not None or any(c.cost is not None for c in stats.critics)
    rows = [
        [
            c.critic,
            _judges(c.judges),
            c.judged,
            c.passed,
            f"{c.pass_rate:.0%}",
            stats.rejected_by.get(c.critic, 0),
            c.tokens,
            *([usd(c.cost)] if priced else []),
        ]
        for c in stats.critics
    ]
    # a critic that judged nothing (every dialogue failed a gate before it) is listed, not left out
    seen = {c.critic for c in stats.critics}
    rows += [
        [name, "-", 0, 0, "not reached", 0, 0, *([usd(0.0)] if priced else [])] for name in enabled if name not in seen
    ]
    warnings = [
        f"> **Warning:** `{critic}` is judged by {', '.join(f'`{m}`' for m in models)}, the model that wrote the "
        "dialogues: a model grading its own writing is lenient. Set `critics.llm` (or `--judge-model`) to judge "
        "with another."
        for critic, models in stats.judged_by_generator().items()
    ]
    return [
        "## Critics",
        "",
        "A dialogue is accepted when every critic passes it. `rejected` counts the dialogues each critic failed; "
        "`judge` names the model(s) that gave its verdicts.",
        "",
        markdown_table(
            ["critic", "judge", "judged", "passed", "pass rate", "rejected", "tokens", *(["cost"] if priced else [])],
            rows,
        ),
        "",
        *(line for warning in warnings for line in (warning, "")),
        *band_lines(stats),
    ]


def band_lines(stats: RunStats) -> list[str]:
    """What the learned critic's uncertain band saved, and how often the judges agreed where audited."""
    if not stats.band:
        return []
    band = stats.band
    low, high = band["band"]
    agreed = (
        f"{band['agreed']} of {band['audited']} ({band['agreed'] / band['audited']:.0%})" if band["audited"] else "none"
    )
    return [
        f"**The learned critic's uncertain band** ({low:.2f} to {high:.2f}): {band['in_band']} dialogues scored in it "
        f"and went to the LLM critics; {band['above']} scored above it, which saved {band['calls_saved']} LLM critic "
        f"verdicts. Of those above it, {band['audited']} were audited (the LLM critics asked anyway), and the LLM "
        f"critics passed {agreed}: how far the learned critic's word stands in for theirs.",
        "",
    ]


def reference_section(reference: dict[str, Any]) -> list[str]:
    """The accepted split against real persona conversations, beside real against real."""
    if not reference:
        return []
    accepted, baseline = reference["accepted"], reference.get("baseline")
    head = [
        "## How close to real conversations",
        "",
        f"The accepted turns against turns of `{reference['reference']}` (sentence embeddings: "
        f"{reference['embedder']}). Fréchet distance: 0 is the same distribution. Precision: the share of "
        "accepted turns that fall where real turns are; recall: the share of real turns that fall where accepted "
        "ones are. The second row is other real turns, as many, against the same: as close as real talk comes.",
        "",
    ]
    if baseline is None:
        return [*head, f"Not measured: {accepted['turns']} accepted turns are too few.", ""]
    rows = [
        [
            label,
            figures["turns"],
            f"{figures['frechet']:.3f}",
            f"{figures['precision']:.2f}",
            f"{figures['recall']:.2f}",
        ]
        for label, figures in (("accepted split", accepted), ("real conversations", baseline))
    ]
    return [*head, markdown_table(["", "turns", "Fréchet distance", "precision", "recall"], rows), ""]


def tokens_section(stats: RunStats) -> list[str]:
    """Tokens, and with prices set (``llm.pricing``) their cost, in all and per accepted dialogue."""
    per_accepted = f"{stats.tokens_per_accepted:,.0f}" if stats.tokens_per_accepted is not None else "n/a"
    rows = [["tokens", stats.generation_tokens, stats.critic_tokens, stats.total_tokens, per_accepted]]
    if stats.total_cost is not None or stats.generation_cost is not None:
        critic_costs = [c.cost for c in stats.critics]
        critics_cost = None if any(cost is None for cost in critic_costs) else sum(c or 0.0 for c in critic_costs)
        rows.append(
            ["cost", usd(stats.generation_cost), usd(critics_cost), usd(stats.total_cost), usd(stats.cost_per_accepted)]
        )
    return [
        "## Tokens",
        "",
        "Tokens as the endpoints counted them, replies from the reply cache included; the cost prices them "
        "with each endpoint's `pricing`.",
        "",
        markdown_table(["", "generation", "critics", "total", "per accepted dialogue"], rows),
        "",
    ]


def persona_sections(stats: RunStats) -> list[str]:
    return [
        "## Speakers by persona kind",
        "",
        markdown_table(["kind", "speakers"], [[kind, n] for kind, n in stats.speakers_by_kind.items()]),
        "",
        "## Pass rates by persona cell",
        "",
        "Speakers of each cell, and the share of them in accepted dialogues: a critic that quietly removes one "
        "kind of speaker shows up here.",
        "",
        markdown_table(
            ["dimension", "cell", "speakers", "accepted", "pass rate"],
            [[c["dimension"], c["cell"], c["speakers"], c["accepted"], f"{c['pass_rate']:.0%}"] for c in stats.cells],
        ),
        "",
    ]


def samples_section(records: list[DialogueRecord], samples: int) -> list[str]:
    accepted = [r for r in records if r.accepted][:samples]
    rejected = [r for r in records if not r.accepted][: max(1, samples // 2) if samples else 0]
    lines = ["## Samples", ""]
    for title, sample in (("Accepted", accepted), ("Rejected", rejected)):
        for record in sample:
            lines += [f"### {title}: `{record.id}`", "", render_dialogue(record), ""]
    return lines

"""What the learned critic's uncertain band saves, and what it costs in agreement with the judge.

The dialogues: the first eight turns of the shipped Synthetic-Persona-Chat conversations of the
learned critic's held-out test part, each as it is and with User 1's persona swapped for another
conversation's. The judge: a scripted faithfulness judge whose verdict follows the data (it finds a
contradiction exactly in the swapped dialogues), served over HTTP as a real endpoint is. Judging
everything, every dialogue costs a judge call and the judge decides; with a band, only the
dialogues in it (and the audited share above it) are asked, and the cascade decides. Agreement is
the share of dialogues whose accept/reject is the same both ways.

    python bench/uncertain_band.py [--dialogues 200]
"""

from __future__ import annotations

import argparse
import json
import random
import re
from typing import Any

import _project  # noqa: F401 - the project root on sys.path, for tests.openai_server

from factory.api import (
    ApiKeys,
    CriticsConfig,
    DialogueRecord,
    EndpointSpec,
    GenerationConfig,
    GenerationMeta,
    JsonTaskRunner,
    JudgeContext,
    LLMConfig,
    PersonaProfile,
    Turn,
    judge,
    part_of,
    resolve_data_path,
    spc_training_data,
)
from tests.openai_server import ScriptedOpenAIServer

BANDS = ([0.3, 0.7], [0.45, 0.8], [0.45, 0.9], [0.6, 0.95])


def dialogues(count: int) -> tuple[list[DialogueRecord], dict[str, bool]]:
    """Originals and persona-swapped copies; and, by User 1's first statement and the first line,
    whether the judge should find a contradiction."""
    data = spc_training_data(resolve_data_path("builtin:synthetic_persona_chat", None))
    talks = [(i, t) for i, t in sorted(data.conversations.items()) if part_of(i) == "test"][: count // 2]
    rng = random.Random(0)
    records, swapped = [], {}
    for conversation, talk in talks:
        donor = rng.choice([t for i, t in talks if i != conversation])
        for kind, first in (("original", talk.profiles[0]), ("swapped", donor.profiles[0])):
            speakers = [
                PersonaProfile(id=f"{conversation}-{kind}-u1", kind="statements", statements=list(first)),
                PersonaProfile(id=f"{conversation}-{kind}-u2", kind="statements", statements=list(talk.profiles[1])),
            ]
            lines = talk.lines[:8]
            records.append(
                DialogueRecord(
                    id=f"{conversation}-{kind}",
                    recipe="bench",
                    speakers=speakers,
                    turns=[Turn(speaker=speakers[w].id, text=text) for w, text in lines],
                    generation=GenerationMeta(model="", prompt_hash="", seed=0),
                )
            )
            swapped[first[0] + "\n" + lines[0][1]] = kind == "swapped"
    return records, swapped


def scripted_judge(swapped: dict[str, bool]) -> Any:
    def reply(request: dict[str, Any]) -> str:
        prompt = request["messages"][-1]["content"]
        statement = re.search(r"User 1 Profile:\n- (.*)", prompt)
        first = re.search(r"\nUser 1: (.*)", prompt)
        key = f"{statement.group(1) if statement else ''}\n{first.group(1) if first else ''}"
        contradiction = swapped.get(key, False)
        return json.dumps({"reason": "checked", "speaker": "User 1" if contradiction else "none",
                           "contradiction": contradiction})  # fmt: skip

    return reply


def decide(
    records: list[DialogueRecord], critics: CriticsConfig, server: ScriptedOpenAIServer
) -> tuple[dict[str, bool], int]:
    shown = [r.model_copy(deep=True) for r in records]
    before = server.chat_calls
    spec = EndpointSpec.of(LLMConfig(max_concurrency=16), server.base_url, "judge", "openai-compatible")
    with JsonTaskRunner(spec, ApiKeys()) as runner:
        context = JudgeContext(runner.client, GenerationConfig(min_turns=2, max_turns=100), judge_model="judge")
        runner.gather((judge(r, critics, context) for r in shown), desc="judging", show_progress=False)
    return {r.id: all(v.passed for v in r.verdicts) for r in shown}, server.chat_calls - before


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dialogues", type=int, default=200)
    records, swapped = dialogues(parser.parse_args().dialogues)
    faithfulness = {"enabled": True, "few_shot": False}
    with ScriptedOpenAIServer(script=scripted_judge(swapped)) as server:
        everything, calls = decide(
            records,
            CriticsConfig.model_validate({"heuristic": {"enabled": False}, "faithfulness": faithfulness}),
            server,
        )
        print(f"{len(records)} dialogues, half persona-swapped; judging everything: {calls} judge calls")
        judge_right = sum(everything[r.id] == r.id.endswith("original") for r in records) / len(records)
        print(f"  the scripted judge is right on {judge_right:.0%}")
        for band in BANDS:
            critics = CriticsConfig.model_validate(
                {"heuristic": {"enabled": False}, "faithfulness": faithfulness,
                 "learned": {"enabled": True, "uncertain_band": band}}
            )  # fmt: skip
            decided, asked = decide(records, critics, server)
            agreed = sum(decided[i] == everything[i] for i in decided) / len(decided)
            print(f"  band {band[0]:.2f}-{band[1]:.2f}: {asked:>4} judge calls ({1 - asked / calls:.0%} saved), "
                  f"agreement with judging everything {agreed:.0%}")  # fmt: skip


if __name__ == "__main__":
    main()

"""How often each heuristic check rejects real conversations: the shipped Synthetic-Persona-Chat
data, every conversation, each check on its own. A check that rejects people's own talk rejects
good synthetic dialogue for the same reason.

    python bench/heuristic_false_rejects.py
"""

from __future__ import annotations

from collections import Counter

from factory.api import (
    GenerationConfig,
    HeuristicCriticConfig,
    PersonaProfile,
    Turn,
    heuristic_verdict,
    load_spc_rows,
    resolve_data_path,
)


def main() -> None:
    rows = [row for row in load_spc_rows(resolve_data_path("builtin:synthetic_persona_chat", None)) if row.conversation]
    config = HeuristicCriticConfig()
    generation = GenerationConfig(min_turns=2, max_turns=1000)
    failed: Counter[str] = Counter()
    for row in rows:
        speakers = [
            PersonaProfile(id=f"{row.id}-{n}", kind="statements", statements=list(row.personas[n])) for n in (0, 1)
        ]
        turns = [Turn(speaker=speakers[index].id, text=text) for index, text in row.conversation]
        verdict = heuristic_verdict(turns, speakers, generation, config)
        for problem in verdict.reason.split("; ") if not verdict.passed else []:
            failed[problem.split(":", 1)[0]] += 1
    print(f"{len(rows)} Synthetic-Persona-Chat conversations (the shipped validation split)")
    for check in ("turn count", "alternation", "repetition", "copying", *NEW_CHECKS):
        print(f"{check:16} rejects {failed[check]:5}  ({failed[check] / len(rows):.1%})")


NEW_CHECKS = ("unfinished", "boilerplate", "self-repetition", "partner copy", "few words", "placeholder")

if __name__ == "__main__":
    main()

"""How fast the shipped learned critic judges, on this machine's CPU: six-turn dialogues a minute.

Two figures, one run: every dialogue with personas never seen before (each statement embedded, the
worst case), and a run's case, where casts reuse a pool's personas (a statement is embedded once).
The dialogues are the first six turns of the shipped Synthetic-Persona-Chat conversations; each is
judged as the cascade judges it (embedding, features, head), one dialogue at a time.

    python bench/learned_critic.py [--dialogues 1000]
"""

from __future__ import annotations

import argparse
import time

from factory.api import SHIPPED, embedder_for_critics, features, load_critic, load_spc_rows, resolve_data_path, verdict


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dialogues", type=int, default=1000)
    count = parser.parse_args().dialogues
    rows = [
        r for r in load_spc_rows(resolve_data_path("builtin:synthetic_persona_chat", None)) if len(r.conversation) >= 6
    ]
    talks = [([list(p) for p in r.personas], list(r.conversation[:6])) for r in rows]
    talks = (talks * (count // len(talks) + 1))[:count]
    embedder = embedder_for_critics()
    embedder.embed(["warm up"])
    for label, reuse in (("new personas every dialogue", False), ("personas reused, as casts reuse a pool", True)):
        critic = load_critic(SHIPPED)
        if reuse:  # a pool of 50 personas: the statements are the pool's
            pool = [profile for profiles, _ in talks[:25] for profile in profiles]
            shown = [([pool[i % 50], pool[(i * 7 + 1) % 50]], lines) for i, (_, lines) in enumerate(talks)]
        else:
            shown = [(profiles, [(w, f"{t} ") for w, t in lines]) for profiles, lines in talks]  # no text seen before
        start = time.perf_counter()
        passed = 0
        for profiles, lines in shown:
            row = features(critic.vectors(profiles, lines, embedder), critic.probes)
            passed += verdict(critic, row, critic.threshold).passed
        elapsed = time.perf_counter() - start
        print(f"{label:<42} {len(shown) / elapsed * 60:>8.0f} dialogues/min  ({passed} of {len(shown)} passed)")


if __name__ == "__main__":
    main()

"""The columns distilabel users use, as the factory's records and back.

- ``personas``: one entry per speaker: a list of persona statements, a string of them (one per
  line), or a persona profile as the factory publishes it (``PersonaProfile``).
- ``conversation``: OpenAI messages. A system message is not a turn; ``user`` is the first
  speaker and ``assistant`` the second (a message's ``name``, when set to a speaker's label or
  persona id, says who instead).
- ``verdicts``: the factory's verdicts, as dicts, one appended per critic step.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from factory.errors import InputError
from factory.records import DialogueRecord, GenerationMeta, PersonaProfile, Turn, speaker_label

ROLE_SPEAKER = {"user": 0, "assistant": 1}


def _persona(value: Any, row: int, index: int) -> PersonaProfile:
    field = f"personas[{index}]"
    if isinstance(value, dict):
        try:
            return PersonaProfile.model_validate(value)
        except ValueError as exc:
            raise InputError(f"not a persona profile ({str(exc).splitlines()[0]})", row=row, field=field) from None
    if isinstance(value, str):
        value = [line.strip() for line in value.splitlines() if line.strip()]
    if isinstance(value, list) and all(isinstance(statement, str) for statement in value):
        return PersonaProfile(id=f"speaker{index + 1}", kind="statements", statements=list(value))
    raise InputError("a persona is a list of statements, a string of them, or a profile", row=row, field=field)


def record_of(row: dict[str, Any], number: int) -> DialogueRecord:
    """A row's speakers and turns as a dialogue record the factory's critics judge."""
    personas = row.get("personas")
    if not isinstance(personas, list) or len(personas) < 2:
        raise InputError("expected two or more personas", row=number, field="personas")
    speakers = [_persona(value, number, index) for index, value in enumerate(personas)]
    by_name = {speaker_label(n + 1): s.id for n, s in enumerate(speakers)} | {s.id: s.id for s in speakers}
    turns = []
    for index, message in enumerate(row.get("conversation") or []):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise InputError("a message is {role, content}", row=number, field=f"conversation[{index}]")
        if message.get("role") == "system":
            continue
        who = by_name.get(str(message.get("name") or ""))
        if who is None:
            position = ROLE_SPEAKER.get(str(message.get("role")))
            if position is None:
                raise InputError("role is user, assistant or system", row=number, field=f"conversation[{index}].role")
            who = speakers[position].id
        turns.append(Turn(speaker=who, text=message["content"]))
    identity = json.dumps([personas, row.get("conversation")], sort_keys=True, default=str)
    return DialogueRecord(
        id=str(row.get("id") or f"row-{number}"),
        recipe=str(row.get("recipe") or "distilabel"),
        speakers=speakers,
        turns=turns,
        generation=GenerationMeta(
            model=str(row.get("model_name") or ""),
            prompt_hash="",
            # the row's own seed (a factory dialogue's), or one fixed by its content
            seed=int(row["seed"])
            if isinstance(row.get("seed"), int)
            else int(hashlib.sha256(identity.encode()).hexdigest()[:8], 16),
        ),
    )


def conversation_of(record: DialogueRecord) -> list[dict[str, str]]:
    """A two-speaker dialogue's turns as OpenAI messages (first speaker ``user``), each named."""
    position = {persona.id: n for n, persona in enumerate(record.speakers)}
    return [
        {
            "role": "user" if position.get(turn.speaker, 0) % 2 == 0 else "assistant",
            "name": speaker_label(position.get(turn.speaker, 0) + 1),
            "content": turn.text,
        }
        for turn in record.turns
    ]

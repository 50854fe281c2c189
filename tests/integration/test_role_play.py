"""Turn-by-turn role-play against scripted endpoints: the turn records, stop rules and closing
turns, the moderator, a different endpoint per speaker, the user simulator, and the `messages`
config that `datasets` loads."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

import datasets
import pytest
import yaml

from factory.bank import build_bank
from factory.errors import RecipeError
from factory.generation.role_play.prompts import names_and_roles
from factory.recipes import PersonaBankRecipe, apply_overrides, load_recipe, parse_recipe
from factory.records import DialogueRecord
from factory.run import run_recipe
from tests.openai_server import ScriptedOpenAIServer, ScriptedReply
from tests.persona_scripts import PersonaScript
from tests.recipes import small_recipe, write_recipe

USP = Path(__file__).resolve().parents[2] / "factory" / "data" / "usp"
# a different line for each turn of a dialogue (a model that plays along does not parrot the other
# speaker), made of words many persona statements share, so that the persona memory has something to recall
TOPIC_LINES = [
    "My family bakes bread together every Sunday morning.",
    "Work has been busy lately, so music keeps me going.",
    "Friends of mine took the night train down to the coast.",
    "Our dogs need long walks before and after school.",
    "Food from the street market beats any restaurant I know.",
    "Travel books pile up beside my bed on weekends.",
]


def turn_of(messages: list[dict[str, Any]]) -> int:
    """Which turn of the dialogue an agent is asked for (its history, from its side)."""
    return 0 if "Start the conversation." in messages[-1]["content"] else len(messages) - 1


SCENARIOS = ["They share a table at a busy cafe.", "They wait together for a delayed train."]


class RolePlayScript:
    """Each agent answers with a labelled line naming its turn (so cleaning is exercised); the
    judges answer per ``sentiment``, ``goal_after`` and ``moderator`` (index into the choices)."""

    def __init__(self, sentiment: str = "3", goal_after: int | None = None, moderator: int = -1) -> None:
        self.sentiment, self.goal_after, self.moderator = sentiment, goal_after, moderator
        self.agent_requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def __call__(self, request: dict[str, Any]) -> str | ScriptedReply:
        messages = request["messages"]
        system, last = messages[0]["content"], messages[-1]["content"]
        if system.startswith("You rate the mood"):
            return json.dumps({"reason": "scripted", "sentiment": self.sentiment})
        if system.startswith("You judge whether a conversation has reached its goal"):
            lines = len(re.findall(r"^\S[^:\n]*: ", last.split("Conversation:", 1)[1], re.M))
            met = self.goal_after is not None and lines >= self.goal_after
            return json.dumps({"reason": "scripted", "met": "yes" if met else "no"})
        if system.startswith("You moderate"):
            form = request["response_format"]
            choices = (form.get("schema") or form["json_schema"]["schema"])["properties"]["next"]["enum"]
            return json.dumps({"next": choices[self.moderator]})
        if system.startswith("You set scenes"):
            return "They meet at a night market and talk about street food."
        if system.startswith("You are a careful annotator"):
            return '{"contradiction": false, "speaker": "none", "reason": "consistent"}'
        if system.startswith("You are ") or system.startswith("You are engaging"):
            with self._lock:
                self.agent_requests.append(request)
            me = re.match(r"You are ([^,]+), (?:an ordinary person, )?in a conversation", system)
            said = sum(m["role"] == "assistant" for m in messages)
            label = me.group(1) if me else "Someone"
            return f"{label}: Line {said + 1} from {label}. {TOPIC_LINES[turn_of(messages) % len(TOPIC_LINES)]}"
        return ScriptedReply(status=400, content=f"unexpected prompt: {system[:60]}")


def role_play_recipe(tmp_path: Path, server: ScriptedOpenAIServer, name: str = "recipe.yaml", **role_play: Any) -> Any:
    recipe = small_recipe(
        dialogues=4,
        personas=[{"source": "mbti", "count": 4}, {"source": "statements", "count": 4}],
        generation={
            "mode": "role_play",
            "min_turns": 4,
            "max_turns": 6,
            "chunk_size": 2,
            "role_play": {"scenarios": SCENARIOS, **role_play},
        },
        ray={"enabled": False},
    )
    return apply_overrides(load_recipe(write_recipe(tmp_path, recipe, name)), base_url=server.base_url)


def rows_of(out: Path, config: str = "default") -> list[dict]:
    return [row for split in datasets.load_dataset(str(out), config).values() for row in split]


def test_role_play_writes_turn_records_and_a_messages_config(tmp_path):
    script = RolePlayScript()
    with ScriptedOpenAIServer(script) as server:
        result = run_recipe(role_play_recipe(tmp_path, server), tmp_path / "out", show_progress=False)
    rows = rows_of(tmp_path / "out")
    assert len(rows) == 4
    for row in rows:
        generation = row["generation"]
        assert generation["mode"] == "role_play" and generation["ended_by"] == "max_turns"
        assert generation["scenario"] in SCENARIOS
        ids = [speaker["id"] for speaker in row["speakers"]]
        names = names_and_roles(DialogueRecord.model_validate(row))[0]
        assert [turn["speaker"] for turn in row["turns"]] == [ids[n % 2] for n in range(6)]
        # each line is the agent's own, label cleaned off, and counts that agent's turns
        assert [turn["text"] for turn in row["turns"]] == [
            f"Line {n // 2 + 1} from {names[n % 2]}. {TOPIC_LINES[n % len(TOPIC_LINES)]}" for n in range(6)
        ]
        assert not any(turn["closing"] for turn in row["turns"])
        assert generation["usage"]["completion_tokens"] > 0
    # one call per turn, and the judge's
    assert len(script.agent_requests) == 4 * 6
    # each record keeps the names the speakers went by, and the card calls them so, not "User 2"
    called = {re.match(r"You are ([^,]+),", r["messages"][0]["content"]).group(1) for r in script.agent_requests}
    assert called == {name for row in rows for name in row["names"]}
    card = (tmp_path / "out" / "README.md").read_text(encoding="utf-8")
    assert "> **User " not in card and any(f"> **{name}:**" in card for name in called)
    assert result.stats.modes == [
        {
            "mode": "role_play",
            "dialogues": 4,
            "accepted": result.stats.accepted,
            "acceptance_rate": round(result.stats.accepted / 4, 4),
        }
    ]

    accepted = {row["id"]: row for row in rows if row["accepted"]}
    assert accepted, "the scripted lines should pass the critics"
    chats = rows_of(tmp_path / "out", "messages")
    assert {chat["id"] for chat in chats} == set(accepted)
    for chat in chats:
        row = accepted[chat["id"]]
        first = row["speakers"][0]
        assert chat["persona"] == first["id"]
        assert chat["messages"][0]["role"] == "system" and first["statements"][0] in chat["messages"][0]["content"]
        expected = [
            {"role": "assistant" if turn["speaker"] == first["id"] else "user", "content": turn["text"]}
            for turn in row["turns"]
        ]
        assert chat["messages"][1:] == expected
    card = (tmp_path / "out" / "README.md").read_text()
    metadata = yaml.safe_load(card.split("---")[1])
    assert [config["config_name"] for config in metadata["configs"]] == ["default", "messages"]
    assert "## Generation modes" in card and "`messages` config holds the accepted dialogues as chat messages" in card


def test_memory_is_recorded_on_the_turns_and_shown_to_the_agent(tmp_path):
    script = RolePlayScript()
    with ScriptedOpenAIServer(script) as server:
        run_recipe(
            role_play_recipe(tmp_path, server, memory={"min_overlap": 0.01, "recent": 0}),
            tmp_path / "out",
            show_progress=False,
        )
    rows = rows_of(tmp_path / "out")
    recalled = [turn for row in rows for turn in row["turns"] if turn["memory"]]
    assert recalled, "some aspect of these personas shares a word with the scripted lines"
    for row in rows:
        for turn in row["turns"]:
            if turn["memory"]:
                speaker = next(s for s in row["speakers"] if s["id"] == turn["speaker"])
                aspects = speaker["statements"] + [f"{a['name']}: {a['value']}" for a in speaker["attributes"]]
                assert turn["memory"] in aspects
    notes = [r["messages"][-1]["content"] for r in script.agent_requests]
    assert any("Something about you that fits here:" in note for note in notes)


def test_without_scenarios_the_llm_writes_one_per_cast(tmp_path):
    script = RolePlayScript()
    with ScriptedOpenAIServer(script) as server:
        recipe = role_play_recipe(tmp_path, server, scenarios=[], generate_scenario=True)
        run_recipe(recipe, tmp_path / "out", show_progress=False)
    for row in rows_of(tmp_path / "out"):
        assert row["generation"]["scenario"] == "They meet at a night market and talk about street food."
    assert all(
        "The situation: They meet at a night market" in r["messages"][0]["content"] for r in script.agent_requests
    )


def test_a_sentiment_stop_ends_early_with_closing_turns(tmp_path):
    script = RolePlayScript(sentiment="5")
    with ScriptedOpenAIServer(script) as server:
        recipe = role_play_recipe(
            tmp_path, server, stop={"rule": "sentiment", "threshold": 4, "patience": 2}, closing_turns=2
        )
        recipe = recipe.model_copy(update={"generation": recipe.generation.model_copy(update={"max_turns": 12})})
        run_recipe(recipe, tmp_path / "out", show_progress=False)
    for row in rows_of(tmp_path / "out"):
        assert row["generation"]["ended_by"] == "sentiment"
        # the seeker (speaker 1) speaks at turns 1, 3, 5, ...; checks start at min_turns (4):
        # turn 5 is high once, turn 7 twice: stop, then two closing turns
        assert len(row["turns"]) == 7 + 2
        assert [turn["closing"] for turn in row["turns"]] == [False] * 7 + [True, True]


def test_a_goal_stop_ends_when_the_judge_finds_the_goal_met(tmp_path):
    script = RolePlayScript(goal_after=4)
    with ScriptedOpenAIServer(script) as server:
        recipe = role_play_recipe(
            tmp_path, server, stop={"rule": "goal", "goal": "they agree to meet again"}, closing_turns=1
        )
        recipe = recipe.model_copy(update={"generation": recipe.generation.model_copy(update={"max_turns": 12})})
        run_recipe(recipe, tmp_path / "out", show_progress=False)
    for row in rows_of(tmp_path / "out"):
        assert row["generation"]["ended_by"] == "goal"
        assert len(row["turns"]) == 4 + 1 and row["turns"][-1]["closing"]


def test_the_moderator_picks_who_speaks_next(tmp_path):
    script = RolePlayScript(moderator=-1)  # always the last of the other speakers
    with ScriptedOpenAIServer(script) as server:
        recipe = role_play_recipe(tmp_path, server, turn_order="moderator")
        recipe = recipe.model_copy(update={"casting": recipe.casting.model_copy(update={"group_size": 3})})
        run_recipe(recipe, tmp_path / "out", show_progress=False)
    for row in rows_of(tmp_path / "out"):
        ids = [speaker["id"] for speaker in row["speakers"]]
        # from speaker 0, the last other speaker each time: 0 -> 2 -> 1 -> 2 -> 1 -> 2
        assert [ids.index(turn["speaker"]) for turn in row["turns"]] == [0, 2, 1, 2, 1, 2]


def test_each_speaker_can_talk_through_its_own_endpoint(tmp_path):
    main, second = RolePlayScript(), RolePlayScript()
    with ScriptedOpenAIServer(main) as server, ScriptedOpenAIServer(second, model="cheap-model") as other:
        recipe = role_play_recipe(tmp_path, server, agents={"speaker2": {"base_url": other.base_url}})
        recipe = recipe.model_copy(update={"ray": recipe.ray.model_copy(update={"enabled": True})})
        result = run_recipe(recipe, tmp_path / "out", show_progress=False)
    rows = rows_of(tmp_path / "out")
    names = [names_and_roles(DialogueRecord.model_validate(row))[0] for row in rows]
    assert len(second.agent_requests) == len(main.agent_requests) == 4 * 3
    assert all(r["model"] == "cheap-model" for r in second.agent_requests)
    for requests, speaker in ((second.agent_requests, 1), (main.agent_requests, 0)):
        called = {re.match(r"You are ([^,]+),", r["messages"][0]["content"]).group(1) for r in requests}
        assert called <= {each[speaker] for each in names}, (called, names)
    assert result.manifest["agents"]["speaker2"]["model"] == "cheap-model"


def test_a_user_simulator_talks_to_an_assistant_in_usp_format(tmp_path):
    with ScriptedOpenAIServer(PersonaScript()) as server:
        bank_recipe = parse_recipe(
            {
                "name": "users",
                "seed": 4,
                "sources": [{"source": "implicit", "path": str(USP)}, {"source": "mbti", "count": 4}],
                "llm": {"base_url": server.base_url, "max_retries": 1},
                "embeddings": {"backend": "endpoint", "model": "bow"},
            },
            model=PersonaBankRecipe,
        )
        build_bank(bank_recipe, tmp_path / "bank", show_progress=False)
    script = RolePlayScript()
    with ScriptedOpenAIServer(script) as server:
        recipe = small_recipe(
            dialogues=2,
            personas=[{"source": "bank", "path": str(tmp_path / "bank")}],
            casting={"strategy": "user_assistant", "dialogues": 2},
            generation={
                "mode": "role_play",
                "min_turns": 4,
                "max_turns": 4,
                "role_play": {"user_simulator": True, "turn_order": "alternate"},
            },
            ray={"enabled": False},
        )
        recipe = apply_overrides(load_recipe(write_recipe(tmp_path, recipe)), base_url=server.base_url)
        run_recipe(recipe, tmp_path / "out", show_progress=False)
    simulator_prompts = [r for r in script.agent_requests if r["messages"][0]["content"].startswith("You are engaging")]
    assert len(simulator_prompts) == 2 * 2  # the user speaks first and every other turn
    rows = {row["id"]: row for row in rows_of(tmp_path / "out")}
    assert all(row["roles"] == ["user", "assistant"] for row in rows.values())
    for chat in rows_of(tmp_path / "out", "messages"):
        row = rows[chat["id"]]
        user = row["speakers"][0]
        assert user["kind"] == "implicit" and chat["persona"] == user["id"]
        assert chat["messages"][0]["content"].startswith("You are engaging in a conversation with an AI assistant.")
        assert [m["role"] for m in chat["messages"][1:]] == ["user", "assistant", "user", "assistant"]
        assert [m["content"] for m in chat["messages"][1:]] == [turn["text"] for turn in row["turns"]]


def test_a_recipe_using_both_modes_compares_them_in_the_card(tmp_path):
    from tests.scripts import DialogueScript

    spc, agents = DialogueScript(), RolePlayScript()

    def script(request: dict[str, Any]) -> str | ScriptedReply:
        system = request["messages"][0]["content"]
        return spc(request) if system.startswith("You write natural") else agents(request)

    with ScriptedOpenAIServer(script) as server:
        recipe = role_play_recipe(tmp_path, server)
        recipe = recipe.model_copy(update={"generation": recipe.generation.model_copy(update={"mode": "both"})})
        result = run_recipe(recipe, tmp_path / "out", show_progress=False)
    modes = {m["mode"]: m for m in result.stats.modes}
    assert set(modes) == {"spc", "role_play"} and modes["spc"]["dialogues"] == modes["role_play"]["dialogues"] == 2
    card = (tmp_path / "out" / "README.md").read_text()
    assert "| mode | dialogues | accepted | acceptance rate |" in card
    for mode in modes.values():
        assert f"| {mode['mode']} | {mode['dialogues']} | {mode['accepted']} |" in card


def test_an_impossible_turn_order_is_a_recipe_error_before_anything_runs(tmp_path):
    recipe = small_recipe(
        casting={"dialogues": 2, "group_size": 3},
        generation={"mode": "role_play", "role_play": {"turn_order": "alternate"}},
    )
    with pytest.raises(RecipeError, match=r"turn_order 'alternate' needs exactly two speakers.*group_size is 3"):
        load_recipe(write_recipe(tmp_path, recipe))


def test_the_shipped_role_play_recipes_accept_what_their_stop_rules_produce(tmp_path, project_root):
    import subprocess
    import sys

    from tests.conftest import subprocess_env

    with ScriptedOpenAIServer(PersonaScript()) as server:
        bank_recipe = parse_recipe(
            {
                "name": "users",
                "seed": 4,
                "sources": [{"source": "implicit", "path": str(USP)}],
                "llm": {"base_url": server.base_url, "max_retries": 1},
                "embeddings": {"backend": "endpoint", "model": "bow"},
            },
            model=PersonaBankRecipe,
        )
        build_bank(
            bank_recipe, tmp_path / "out" / "implicit_users", show_progress=False
        )  # where user_simulator.yaml looks
    # a model that plays along: the seeker is happy, the user's goal is met after four lines
    script = RolePlayScript(sentiment="5", goal_after=4)
    with ScriptedOpenAIServer(script) as server:
        for name, stop in (("role_play", "sentiment"), ("user_simulator", "goal")):
            recipe = project_root / "pipelines" / f"{name}.yaml"
            out = tmp_path / "out" / name
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "factory.cli",
                    "run",
                    str(recipe),
                    "--out",
                    str(out),
                    "--base-url",
                    server.base_url,
                    "--no-ray",
                    "--no-progress",
                ],
                capture_output=True,
                text=True,
                env=subprocess_env(),
                cwd=tmp_path,
                timeout=300,
            )
            assert result.returncode == 0, result.stderr[-2000:]
            rows = rows_of(out)
            loaded = load_recipe(recipe).generation
            assert all(loaded.min_turns <= len(row["turns"]) <= loaded.max_turns for row in rows)
            ended = [row for row in rows if row["generation"]["ended_by"] == stop]
            assert ended and all(row["turns"][-1]["closing"] for row in ended), f"{name}: the stop rule never fired"
            rejected = {
                v["critic"]: v["reason"]
                for row in rows
                if not row["accepted"]
                for v in row["verdicts"]
                if not v["passed"]
            }
            assert all(row["accepted"] for row in rows), f"{name}: {rejected}"


class MessyScript(RolePlayScript):
    """Agents answer as a small model does: a label, narration in asterisks and a line cut by the
    token limit mid-sentence; every third turn is first cut before any sentence ended."""

    def __init__(self) -> None:
        super().__init__()
        self.cut_short: set[tuple[str, int]] = set()

    def __call__(self, request: dict[str, Any]) -> str | ScriptedReply:
        answer = super().__call__(request)
        if not isinstance(answer, str) or "Line " not in answer:
            return answer
        turn = turn_of(request["messages"])
        if turn % 3 == 2:
            asked = (request["messages"][0]["content"], turn)
            with self._lock:
                first_time = asked not in self.cut_short
                self.cut_short.add(asked)
            return ScriptedReply(content="and then I went to the", finish_reason="length") if first_time else answer
        label, line = answer.split(":", 1)
        return ScriptedReply(
            content=f"{label}: *smiles warmly* {line.strip()} And I was about to", finish_reason="length"
        )


def test_lines_are_cleaned_trimmed_and_asked_again_and_the_turns_say_so(tmp_path):
    script = MessyScript()
    with ScriptedOpenAIServer(script) as server:
        run_recipe(role_play_recipe(tmp_path, server), tmp_path / "out", show_progress=False)
    rows = rows_of(tmp_path / "out")
    assert len(rows) == 4 and script.cut_short
    for row in rows:
        for n, turn in enumerate(row["turns"]):
            text = turn["text"]
            assert "*" not in text and not text.startswith(tuple(s["name"] or "User" for s in row["speakers"]))
            assert text.endswith((".", "!", "?")) and "And I was about to" not in text
            if n % 3 == 2:
                assert turn["cleaned"][:2] == ["trimmed", "asked_again"]
            else:
                assert turn["cleaned"] == ["label", "narration", "trimmed"]
    card = (tmp_path / "out" / "README.md").read_text()
    trimmed = sum("trimmed" in turn["cleaned"] for row in rows for turn in row["turns"])
    assert "What cleaning changed in the models' lines" in card and f"| trimmed | {trimmed} |" in card


class SometimesAssistantScript(RolePlayScript):
    """The first of each turn's identical requests is answered as an assistant would; the others
    in character: a turn asked once keeps the boilerplate, a turn asked twice has a choice."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def __call__(self, request: dict[str, Any]) -> str | ScriptedReply:
        answer = super().__call__(request)
        if not isinstance(answer, str) or "Line " not in answer:
            return answer
        key = json.dumps(request["messages"])
        with self._lock:
            first_time = key not in self.asked
            self.asked.add(key)
        return "As an AI language model, I hope this helps. Let me know if you need anything." if first_time else answer


@pytest.mark.parametrize("line_candidates", [1, 2])
def test_a_turn_keeps_the_candidate_line_the_critics_choose(tmp_path, line_candidates):
    script = SometimesAssistantScript()
    with ScriptedOpenAIServer(script) as server:
        recipe = role_play_recipe(tmp_path, server, line_candidates=line_candidates)
        run_recipe(recipe, tmp_path / "out", show_progress=False)
    rows = rows_of(tmp_path / "out")
    turns = [turn["text"] for row in rows for turn in row["turns"]]
    assert len(rows) == 4 and len(script.agent_requests) == line_candidates * len(turns)
    boilerplate = [text for text in turns if "As an AI" in text]
    if line_candidates == 1:  # asked once, every turn is the assistant's line, and the gate rejects it
        assert len(boilerplate) == len(turns) and not any(row["accepted"] for row in rows)
    else:
        assert not boilerplate and all(row["accepted"] for row in rows)

"""The critic registry: every critic's spec has every piece, and a plugin that would clash, or
change runs that do not name it, is refused with one line naming it."""

from __future__ import annotations

import pytest

from factory.critics.registry import critic_specs
from factory.errors import PluginError
from factory.recipes import critics as recipe_critics
from factory.recipes.critics import CriticConfig, CriticsConfig, HeuristicCriticConfig, needs_llm, settings_class
from factory.recipes.extensions import EVAL_LABELS, CriticSpec
from factory.records import PersonaProfile, Verdict

SPEAKERS = [
    PersonaProfile(id="a", kind="statements", statements=["I sail."]),
    PersonaProfile(id="b", kind="mbti", mbti="INTJ", statements=["I plan ahead."]),
]


@pytest.mark.parametrize("name", list(critic_specs()))
def test_every_registered_critic_has_every_piece(name):
    from factory.distilabel.critics import CRITIC_STEPS, LLMCriticStep

    spec = critic_specs()[name]
    assert settings_class(name) is spec.settings and spec.settings.scope == "dialogue"
    assert isinstance(getattr(CriticsConfig(), name), spec.settings)
    assert name in CriticsConfig().order and spec.label[0] in EVAL_LABELS and spec.summary
    assert spec.calls(SPEAKERS) >= 1 or not needs_llm(name)
    step = CRITIC_STEPS[name]
    assert step.critic == name and issubclass(step, LLMCriticStep) == needs_llm(name)


async def _pass(record, config, context) -> Verdict:
    return Verdict(critic="x", passed=True)


class OffByDefault(CriticConfig):
    enabled: bool = False


class OnByDefault(CriticConfig):
    pass


def _installed(monkeypatch, *objects: object) -> None:
    monkeypatch.setattr(
        recipe_critics, "plugin_objects", lambda group: [(f"pkg: e{i}", o) for i, o in enumerate(objects)]
    )
    recipe_critics.plugin_critics.cache_clear()


@pytest.fixture(autouse=True)
def _fresh_plugins():
    yield
    recipe_critics.plugin_critics.cache_clear()


@pytest.mark.parametrize(
    ("objects", "message"),
    [
        ((CriticSpec("heuristic", OffByDefault, _pass, "a second heuristic"),), "'heuristic' is taken"),
        ((CriticSpec("mine", OffByDefault, _pass, "one"), CriticSpec("mine", OffByDefault, _pass, "two")), "taken"),
        ((CriticSpec("order", OffByDefault, _pass, "a recipe key"),), "'order' is taken"),
        ((CriticSpec("eager", OnByDefault, _pass, "on unless named"),), "on by default"),
        (("not a spec",), "names a str, not a CriticSpec"),
    ],
    ids=["built-in name", "twice", "a settings key", "on by default", "not a spec"],
)
def test_a_clashing_or_eager_plugin_is_refused_naming_its_entry_point(monkeypatch, objects, message):
    _installed(monkeypatch, *objects)
    with pytest.raises(PluginError, match=message) as raised:
        recipe_critics.plugin_critics()
    assert "pkg: e" in str(raised.value) and "\n" not in str(raised.value)


def test_a_plugin_critic_is_a_recipe_key_validated_by_its_own_settings(monkeypatch):
    class Threshold(OffByDefault):
        threshold: float = 0.5

    _installed(monkeypatch, CriticSpec("mine", Threshold, _pass, "mine"))
    critics = CriticsConfig.model_validate({"mine": {"enabled": True, "threshold": 0.7}})
    assert critics.order[-1] == "mine" and [name for name, _ in critics.cascade()][-1] == "mine"
    assert critics.mine.threshold == 0.7 and isinstance(critics.heuristic, HeuristicCriticConfig)
    with pytest.raises(ValueError, match=r"mine\.threshold"):
        CriticsConfig.model_validate({"mine": {"threshold": "high"}})
    with pytest.raises(ValueError, match="mistyped"):
        CriticsConfig.model_validate({"mistyped": {}})


def test_an_installed_plugin_the_recipe_does_not_name_changes_nothing_of_it(monkeypatch):
    before = CriticsConfig.model_validate({"heuristic": {"enabled": True}}).model_dump(mode="json")
    _installed(monkeypatch, CriticSpec("mine", OffByDefault, _pass, "mine"))
    after = CriticsConfig.model_validate({"heuristic": {"enabled": True}})
    assert after.model_dump(mode="json") == before  # so a recipe's hash, and its resume, are unchanged
    assert "mine" not in after.order and not after.settings_of("mine").enabled
    assert CriticsConfig.model_validate({"order": ["heuristic", "mine"]}).cascade()[-1][0] == "heuristic"


def test_a_spec_names_a_recipe_key_and_a_label_critics_eval_knows():
    with pytest.raises(PluginError, match="lower-case identifier"):
        CriticSpec("Has Space", OffByDefault, _pass, "x")
    with pytest.raises(PluginError, match="label 'funny'"):
        CriticSpec("funny", OffByDefault, _pass, "x", label=("funny", True))

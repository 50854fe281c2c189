"""Who judges: each LLM critic's judge endpoint, or its jury, found before any work starts; and
how a jury's verdicts become the one that decides.

A critic's judges come from ``critics.<name>.llm`` / ``.jury``, else ``critics.llm`` /
``critics.jury``, else the generator's endpoint (see :func:`factory.recipes.critics.judges_of`).
Every judge endpoint is checked like the generator's (reachable, and which model it serves), and
becomes an :class:`EndpointSpec` of its own: its clients have their own adaptive limit, health and
ejection, on Ray workers as in process.
"""

from __future__ import annotations

from factory.critics.base import JudgePanel, Juror
from factory.errors import EndpointError, PipelineError
from factory.llm.endpoint import check_endpoint
from factory.llm.keys import ApiKeys
from factory.llm.pricing import Prices
from factory.llm.spec import EndpointSpec
from factory.recipes.critics import CriticsConfig, all_critic_names, judges_of, needs_llm
from factory.recipes.judges import Aggregate, JudgeLLMConfig
from factory.recipes.llm import EndpointLimits, LLMConfig
from factory.records import JurorVerdict, Verdict


def judge_panels(
    critics: CriticsConfig,
    llm: LLMConfig,
    generator: EndpointSpec | None,
    keys: ApiKeys,
    names: list[str] | None = None,
) -> dict[str, JudgePanel]:
    """The judges of the LLM critics named (every enabled one by default), each endpoint checked
    once. ``generator`` may be None when every judge has an endpoint of its own."""
    listed: dict[tuple[str, ...], list[str]] = {}
    panels = {}
    for name in critics.enabled() if names is None else names:
        if name not in all_critic_names() or not needs_llm(name):
            continue
        judges, aggregate = judges_of(critics, name)
        jurors = tuple(
            Juror(judge_spec(judge, llm, generator, keys, listed, name), judge.temperature or 0.0) for judge in judges
        )
        panels[name] = JudgePanel(jurors, aggregate)
    return panels


def prices_of(generator: EndpointSpec | None, panels: dict[str, JudgePanel]) -> Prices:
    """What each endpoint of a run charges: the generator, and every critic's jurors in turn."""
    return Prices(
        generator.pricing if generator is not None else None,
        {critic: tuple(juror.spec.pricing for juror in panel.jurors) for critic, panel in panels.items()},
    )


def needs_generator(critics: CriticsConfig, names: list[str]) -> bool:
    """Whether any judge of these critics is the generator's endpoint (has no base URL of its own)."""
    return any(not judge.base_urls for name in names if needs_llm(name) for judge in judges_of(critics, name)[0])


def judge_spec(
    judge: JudgeLLMConfig,
    llm: LLMConfig,
    generator: EndpointSpec | None,
    keys: ApiKeys,
    listed: dict[tuple[str, ...], list[str]],
    critic: str,
) -> EndpointSpec:
    """Where one judge is. Without a base URL it is the generator's server (its model unless it
    names another); with one, another server, checked here, whose model is the one it serves."""
    limits = judge.model_dump(include=set(EndpointLimits.model_fields), exclude_unset=True)
    if not judge.base_urls:
        if generator is None:
            raise PipelineError(f"the judge of {critic} has no endpoint of its own, and no generator endpoint is open")
        return generator.model_copy(update={"model": judge.model or generator.model, **limits})
    settings = LLMConfig.model_validate(
        {
            # another server: the generator's limits carry over, its price does not
            # nor its key: a judge elsewhere reads its own (api_key_env, OPENAI_API_KEY by default)
            **llm.model_dump(include=set(EndpointLimits.model_fields) - {"pricing", "api_key_env"}),
            **limits,
            "structured_output": judge.structured_output,
        }
    )
    spec = EndpointSpec.of(settings, judge.base_urls, judge.model or "", "openai-compatible")
    if spec.base_urls not in listed:
        listed[spec.base_urls] = check_endpoint(spec, keys)
    if spec.model:
        return spec
    models = listed[spec.base_urls]
    if len(models) != 1:
        raise EndpointError(
            f"the judge endpoint of {critic} at {spec.base_url} serves {len(models)} models "
            f"({', '.join(models[:5]) or 'none listed'}); name one with critics.llm.model (or --judge-model)"
        )
    return spec.model_copy(update={"model": models[0]})


def aggregate_verdicts(critic: str, verdicts: list[Verdict], how: Aggregate, threshold: float) -> Verdict:
    """The jury's verdict: ``majority`` passes when more than half of the jurors who answered
    pass (a tie fails); ``mean`` passes when their mean score reaches ``threshold``. Jurors who
    gave no usable answer are left out; when none answered, neither does the jury."""
    jurors = [
        JurorVerdict(
            judge=v.judge or "?",
            passed=v.passed,
            score=v.score,
            reason=v.reason,
            tokens=v.tokens,
            prompt_tokens=v.prompt_tokens,
            answered=v.answered,
        )
        for v in verdicts
    ]
    judge = " + ".join(j.judge for j in jurors)
    tokens = sum(v.tokens for v in verdicts)
    prompt_tokens = sum(v.prompt_tokens for v in verdicts)
    answered = [v for v in verdicts if v.answered]
    if not answered:
        reason = "no juror gave a usable answer: " + "; ".join(f"{v.judge}: {v.reason}" for v in verdicts)
        return Verdict(
            critic=critic, passed=False, reason=reason, tokens=tokens, prompt_tokens=prompt_tokens,
            answered=False, judge=judge, jurors=jurors,
        )  # fmt: skip
    scores = [v.score if v.score is not None else float(v.passed) for v in answered]
    mean = sum(scores) / len(scores)
    passes = sum(v.passed for v in answered)
    if how == "majority":
        passed = 2 * passes > len(answered)
        head = f"{passes} of {len(answered)} jurors pass it"
    else:
        passed = mean >= threshold
        head = f"jurors' mean score {mean:.2f} against {threshold:.2f}"
    unanswered = len(verdicts) - len(answered)
    if unanswered:
        head += f" ({unanswered} gave no usable answer)"
    deciding = next((v for v in answered if v.passed == passed), answered[0])
    return Verdict(
        critic=critic,
        passed=passed,
        score=round(mean, 4),
        reason=f"{head}; {deciding.judge}: {deciding.reason}",
        tokens=tokens,
        prompt_tokens=prompt_tokens,
        judge=judge,
        jurors=jurors,
    )

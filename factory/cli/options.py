"""Options more than one command takes, declared once."""

from __future__ import annotations

from typing import Annotated

import typer

JudgeBaseURL = Annotated[
    str | None,
    typer.Option(help="Endpoint of the critics' judge (or PERSONA_FACTORY_JUDGE_BASE_URL); none: the generator's."),
]
JudgeModel = Annotated[str | None, typer.Option(help="The judge's model (or PERSONA_FACTORY_JUDGE_MODEL).")]

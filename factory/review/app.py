"""The review app: a version's review in a web page (Gradio), for a local folder or a Hub repository.

It shows what a reviewer needs beside each other (the summary and its charts, each sampled
dialogue with its personas, turns and verdicts), takes a label per dialogue, the checklist, a
sign-off, and the approve or reject. Every step goes through the same calls as ``persona-factory
review`` on the same review state in the card, read again before each step, so a label given in the
terminal shows here and the reverse. ``write_space`` writes the files that run it as a Hugging
Face Space beside the dataset.
"""

from __future__ import annotations

import hmac
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from factory.dataset.card_sections import markdown_table
from factory.dataset.manifest import manifest_of
from factory.dataset.review_section import LABEL_FLAGS, ReviewState, read_state
from factory.errors import FactoryError, InputError
from factory.listening import is_loopback
from factory.records import speaker_label
from factory.review import (
    approve_version,
    card_of,
    label_version,
    opened,
    reject_version,
    sample_dialogues,
    sign_version,
)
from factory.review.targets import ReviewTarget

# System fonts only: the default theme fetches Google's, which a closed network never answers.
FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]


class ReviewSession:
    """One version's review as the app drives it: every step reads the card again first."""

    def __init__(self, where: str, version: str | None) -> None:
        self.target: ReviewTarget
        self.where = where  # as the reviewer named it: a folder path or hf://org/name
        self.target, self.version = opened(where, version)
        self.rows = {row["id"]: row for row in sample_dialogues(self.target, self.version)}
        self.manifest = manifest_of(self.target.file(self.version, "manifest.json"), f"{self.version}: manifest.json")
        self._charts = tempfile.TemporaryDirectory(prefix="persona-factory-review-")

    def state(self) -> ReviewState:
        return read_state(card_of(self.target, self.version))

    def header(self) -> str:
        state = self.state()
        left = f"; {len(state.unlabelled)} sampled dialogue(s) to label" if state.labels_required else ""
        return f"### {self.where} {self.version}: **{state.status}**{left}"

    def summary(self) -> str:
        stats = self.manifest.stats
        rate = f"{stats['acceptance_rate']:.0%}" if stats.get("acceptance_rate") is not None else "n/a"
        rows = [[stats.get("generated"), stats.get("accepted"), stats.get("rejected"), rate]]
        critics = [[c["critic"], c["judged"], c["passed"], f"{c['pass_rate']:.0%}"] for c in stats.get("critics", [])]
        return "\n\n".join([
            markdown_table(["generated", "accepted", "rejected", "acceptance rate"], rows),
            markdown_table(["critic", "judged", "passed", "pass rate"], critics),
        ])  # fmt: skip

    def charts(self) -> list[str]:
        """The version's chart files, copied where the page can serve them."""
        paths = []
        for name in self.manifest.charts:
            path = Path(self._charts.name) / Path(name).name
            path.write_bytes(self.target.file(self.version, name))
            paths.append(str(path))
        return paths

    def choices(self) -> list[tuple[str, str]]:
        """The sampled dialogues to pick from, each marked once someone has labelled it."""
        state = self.state()
        labelled = {label["id"] for label in state.labels}
        return [(f"{i} ✓" if i in labelled else i, i) for i in state.sampled if i in self.rows]

    def dialogue(self, dialogue_id: str | None) -> str:
        return render_dialogue(self.rows[dialogue_id]) if dialogue_id in self.rows else "Choose a dialogue."

    def label_of(self, dialogue_id: str | None, reviewer: str) -> dict[str, Any] | None:
        mine = [lb for lb in self.state().labels if lb["id"] == dialogue_id and lb["reviewer"] == reviewer]
        return mine[-1] if mine else None

    def save_label(self, dialogue_id: str | None, reviewer: str, label: dict[str, Any]) -> str:
        if not dialogue_id:
            return "Choose a dialogue first."
        state = label_version(self.target, self.version, reviewer, {"id": dialogue_id, **label})
        return f"Saved the label of {dialogue_id}; left to label: {', '.join(state.unlabelled) or 'none'}"

    def sign(self, reviewer: str, decision: str, notes: str, checks: list[str]) -> str:
        state = sign_version(self.target, self.version, reviewer, decision, notes, checks)
        return f"Signed ({decision}); checklist items left: {', '.join(state.missing) or 'none'}"

    def approve(self) -> str:
        approve_version(self.target, self.version)
        return f"{self.version} is approved and released."

    def reject(self, reason: str) -> str:
        if not reason.strip():
            return "Say why the version is rejected."
        reject_version(self.target, self.version, reason.strip())
        return f"{self.version} is rejected."

    def close(self) -> None:
        self._charts.cleanup()


def render_dialogue(row: dict[str, Any]) -> str:
    """A dialogue as the page shows it: the personas side by side, the turns, every verdict (a
    persona of a bank: its statements)."""
    if "turns" not in row:
        return "\n".join([f"#### `{row['id']}` ({row['kind']})", "", *(f"- {s}" for s in row["statements"])])
    names = {s["id"]: s.get("name") or speaker_label(i) for i, s in enumerate(row["speakers"], start=1)}
    header = [f"{names[s['id']]}" + (f" ({s['mbti']})" if s.get("mbti") else "") for s in row["speakers"]]
    personas = markdown_table(header, [["<br>".join(s["statements"]) for s in row["speakers"]]])
    turns = "\n".join(f"> **{names.get(t['speaker'], t['speaker'])}:** {t['text']}  " for t in row["turns"])
    verdicts = markdown_table(
        ["critic", "verdict", "score", "reason"],
        [
            [v["critic"], "pass" if v["passed"] else "**FAIL**", "-" if v.get("score") is None else v["score"],
             str(v["reason"]).replace("|", "/").replace("\n", " ")]
            for v in row["verdicts"]
        ],
    )  # fmt: skip
    status = "accepted" if row["accepted"] else "rejected"
    return "\n\n".join([f"#### `{row['id']}` ({status})", personas, turns or "> (no turns)", verdicts])


def _guarded(step: Any) -> Any:
    """A step whose refusal (an incomplete checklist, a label for no sample) is shown, not raised."""

    def run(*args: Any) -> Any:
        try:
            return step(*args)
        except FactoryError as error:
            return f"Refused: {error}"

    return run


def build_app(session: ReviewSession) -> Any:
    import gradio as gr

    with gr.Blocks(title=f"Review {session.version}", analytics_enabled=False) as app:
        header = gr.Markdown(session.header(), elem_id="header")
        reviewer = gr.Textbox(label="Reviewer", elem_id="reviewer", placeholder="your name")
        with gr.Tab("Summary"):
            gr.Markdown(session.summary())
            gr.Gallery(value=session.charts(), label="Charts", columns=1, object_fit="contain", elem_id="charts")
        with gr.Tab("Dialogues", elem_id="dialogues-tab"):
            _dialogue_tab(gr, session, reviewer, header)
        with gr.Tab("Sign and release", elem_id="sign-tab"):
            _sign_tab(gr, session, reviewer, header)
    return app


def _dialogue_tab(gr: Any, session: ReviewSession, reviewer: Any, header: Any) -> None:
    choice = gr.Radio(session.choices(), label="Sampled dialogues", elem_id="dialogue-choice")
    shown = gr.Markdown("Choose a dialogue.", elem_id="dialogue")
    with gr.Row():
        in_character = gr.Radio(["yes", "no"], label="In character?", elem_id="in-character")
        quality = gr.Radio(["1", "2", "3", "4", "5"], label="Quality (1-5)", elem_id="quality")
    flags = gr.CheckboxGroup(list(LABEL_FLAGS), label="Flags", elem_id="flags")
    note = gr.Textbox(label="Note", elem_id="note")
    save = gr.Button("Save label", elem_id="save-label", variant="primary")
    saved = gr.Markdown(elem_id="label-status")

    def pick(dialogue_id: str | None, who: str) -> tuple[Any, ...]:
        label = session.label_of(dialogue_id, who.strip())
        if label is None:
            return session.dialogue(dialogue_id), None, None, [], ""
        character = "yes" if label["in_character"] else "no"
        return session.dialogue(dialogue_id), character, str(label["quality"]), label["flags"], label["note"]

    def store(
        dialogue_id: str | None, who: str, character: str | None, score: str | None, marks: list[str], text: str
    ) -> str:
        if character is None or score is None:
            return "Refused: answer in character and quality first"
        label = {"in_character": character == "yes", "quality": int(score), "flags": marks, "note": text}
        return session.save_label(dialogue_id, who, label)

    choice.change(pick, [choice, reviewer], [shown, in_character, quality, flags, note])
    saved_label = save.click(_guarded(store), [choice, reviewer, in_character, quality, flags, note], saved)
    saved_label.then(session.header, None, header).then(
        lambda current: gr.update(choices=session.choices(), value=current), choice, choice
    )


def _sign_tab(gr: Any, session: ReviewSession, reviewer: Any, header: Any) -> None:
    state = session.state()
    checks = gr.CheckboxGroup(
        [(text, key) for key, text in state.items.items()],
        value=[key for key, done in state.checklist.items() if done],
        label="Checklist",
        elem_id="checklist",
    )
    decision = gr.Radio(["approve", "reject"], value="approve", label="Decision", elem_id="decision")
    notes = gr.Textbox(label="Notes", elem_id="notes")
    with gr.Row():
        sign = gr.Button("Sign", elem_id="sign", variant="primary")
        approve = gr.Button("Approve and release", elem_id="approve")
    reason = gr.Textbox(label="Why reject (for Reject)", elem_id="reason")
    reject = gr.Button("Reject", elem_id="reject", variant="stop")
    status = gr.Markdown(elem_id="sign-status")
    sign.click(_guarded(session.sign), [reviewer, decision, notes, checks], status).then(session.header, None, header)
    approve.click(_guarded(session.approve), None, status).then(session.header, None, header)
    reject.click(_guarded(session.reject), [reason], status).then(session.header, None, header)


PASSWORD_ENV = "PERSONA_FACTORY_REVIEW_PASSWORD"


def visitor_check(host: str) -> Callable[[str, str], bool] | None:
    """Who may open the page. On loopback, whoever is on this machine; beyond it, only a visitor
    who gives the password in PERSONA_FACTORY_REVIEW_PASSWORD (any user name), since the page can
    approve and release. A Hugging Face Space is guarded by the Space's own visibility."""
    if is_loopback(host):
        return None
    password = os.environ.get(PASSWORD_ENV)
    if password:
        return lambda _user, given: hmac.compare_digest(given.encode(), password.encode())
    if os.environ.get("SPACE_ID"):  # set by the Hub in a Space
        return None
    raise InputError(
        f"--host {host} serves the approve button to the network: set {PASSWORD_ENV} to ask every visitor "
        "for it, or serve on 127.0.0.1",
        field="--host",
    )


def launch(where: str, version: str | None, host: str, port: int) -> None:
    """Serve the review app until interrupted."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    auth = visitor_check(host)
    import gradio as gr

    session = ReviewSession(where, version)
    try:
        build_app(session).launch(
            server_name=host, server_port=port, share=False, inbrowser=False, ssr_mode=False, quiet=False, auth=auth,
            theme=gr.themes.Default(font=FONTS, font_mono=["ui-monospace", "monospace"]),
            allowed_paths=[session._charts.name],
        )  # fmt: skip
    finally:
        session.close()


SPACE_APP = '''\
"""The review app of {repo}, as a Hugging Face Space: set the Space's HF_TOKEN secret to a token
that may write to the dataset."""

from factory.review.app import launch

launch("hf://{repo}", None, host="0.0.0.0", port=7860)
'''


def write_space(repo: str, folder: Path) -> list[Path]:
    """The files of a Gradio Space that runs this app on the dataset ``repo``."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "app.py": SPACE_APP.format(repo=repo),
        "requirements.txt": "persona-factory[review]\n",
        "README.md": f"---\ntitle: Review {repo}\nsdk: gradio\napp_file: app.py\n---\n\nThe review app of the "
        f"dataset [{repo}](https://huggingface.co/datasets/{repo}).\n",
    }
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return [folder / name for name in files]

"""The review app in a real browser: Debian's Chromium, driven by Playwright, labels dialogues,
ticks the checklist, signs and approves a version folder; the card holds what the page did, and
the terminal's review commands see it (and the page sees theirs)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import markdown_it
import psutil
import pytest

from factory.dataset.folder import DatasetFolder
from factory.dataset.review_section import SECTION_END, SECTION_START, read_state, split_card
from factory.recipes import load_recipe
from factory.run import run_recipe
from tests.conftest import subprocess_env
from tests.integration.test_review import ALL_CHECKS, cli
from tests.recipes import small_recipe, write_recipe

CHROMIUM = "/usr/bin/chromium"
# Chromium in a closed network: no background connections, no sandbox as root, a fresh profile
CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
PNG = b"\x89PNG\r\n\x1a\n"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def version_folder(tmp_path, scripted_server) -> Path:
    recipe = small_recipe(8, ray={"enabled": False}, output={"review_samples": 1})
    recipe["llm"] |= {"base_url": scripted_server.base_url, "model": "scripted"}
    run_recipe(load_recipe(write_recipe(tmp_path, recipe)), tmp_path / "out", show_progress=False)
    return tmp_path / "out"


@pytest.fixture
def served(version_folder, tmp_path) -> Iterator[str]:
    """``persona-factory review app`` on the folder, as a user starts it, stopped after the test."""
    port = free_port()
    log = tmp_path / "app.log"
    with log.open("wb") as output:
        app = subprocess.Popen(
            [sys.executable, "-m", "factory.cli", "review", "app", str(version_folder), "--port", str(port)],
            stdout=output, stderr=subprocess.STDOUT, env=subprocess_env(),
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                assert app.poll() is None, log.read_text()[-2000:]
                assert time.monotonic() < deadline, "the review app did not start"
                time.sleep(0.5)
        yield url
    finally:
        children = psutil.Process(app.pid).children(recursive=True)
        app.terminate()
        app.wait(timeout=30)
        assert not [child for child in children if child.is_running()], "the app left processes behind"


def test_a_reviewer_labels_signs_and_approves_in_the_browser(served, version_folder, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    assert Path(CHROMIUM).exists(), "Chromium is missing: `make install` installs Debian's chromium"
    first, second = read_state((version_folder / "README.md").read_text()).sampled
    # a label given in the terminal first: the page shows it when the dialogue is opened
    assert cli("review", "label", str(version_folder), "--id", first, "--reviewer", "ana",
               "--in-character", "yes", "--quality", "4").returncode == 0  # fmt: skip
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.goto(served, wait_until="domcontentloaded")
            page.locator("#reviewer textarea, #reviewer input").first.fill("ana")
            page.get_by_role("tab", name="Dialogues").click()
            page.locator("#dialogue-choice label", has_text=first).click()
            expect(page.locator("#dialogue")).to_contain_text(first)
            expect(page.locator("#in-character input[value='yes']")).to_be_checked()
            expect(page.locator("#quality input[value='4']")).to_be_checked()
            label(page, "no", "2", ["repetitive"], "loops on the weather")
            expect(page.locator("#label-status")).to_contain_text(f"Saved the label of {first}")
            page.locator("#dialogue-choice label", has_text=second).click()
            expect(page.locator("#dialogue")).to_contain_text(second)
            label(page, "yes", "5", [], "")
            expect(page.locator("#label-status")).to_contain_text("left to label: none")
            page.screenshot(path=str(tmp_path / "review-app-dialogue.png"), full_page=True)

            page.get_by_role("tab", name="Sign and release").click()
            for box in page.locator("#checklist label").all():
                box.click()
            page.locator("#sign").click()
            expect(page.locator("#sign-status")).to_contain_text("checklist items left: none")
            page.locator("#approve").click()
            expect(page.locator("#sign-status")).to_contain_text("approved and released")
        finally:
            browser.close()

    assert (tmp_path / "review-app-dialogue.png").read_bytes()[:8] == PNG
    folder = DatasetFolder(version_folder)
    assert folder.released_versions() == ["v1.0.0"]
    state = read_state(folder.read_bytes(folder.resolve("v1.0.0"), "README.md").decode())
    assert state.status == "approved" and state.missing == []
    labels = {lb["id"]: lb for lb in state.labels}
    assert (labels[first]["in_character"], labels[first]["quality"], labels[first]["flags"]) == (
        False,
        2,
        ["repetitive"],
    )
    assert (labels[second]["in_character"], labels[second]["quality"]) == (True, 5)
    shown = cli("review", "show", str(version_folder), "--version", "v1.0.0")
    assert f"labelled: {first} by ana: in character no, quality 2, flags repetitive" in shown.stdout
    assert "v1.0.0: approved" in shown.stdout


def label(page, in_character: str, quality: str, flags: list[str], note: str) -> None:
    page.locator("#in-character label", has_text=in_character).click()
    page.locator("#quality label", has_text=quality).click()
    for flag in flags:
        page.locator("#flags label", has_text=flag).click()
    page.locator("#note textarea").fill(note)
    page.locator("#save-label").click()


def test_a_label_for_a_dialogue_not_sampled_is_refused(version_folder):
    refused = cli("review", "label", str(version_folder), "--id", "e2e-999999", "--reviewer", "ana",
                  "--in-character", "yes", "--quality", "3")  # fmt: skip
    assert refused.returncode == 2  # a value the user gave, as every bad flag
    assert refused.stderr.strip().startswith("error: e2e-999999 is not one of the sampled dialogues; label one of")
    assert read_state((version_folder / "README.md").read_text()).labels == []
    signed = cli("review", "sign", str(version_folder), "--reviewer", "ana", *ALL_CHECKS)
    assert signed.returncode == 0
    unlabelled = cli("review", "approve", str(version_folder))
    assert unlabelled.returncode == 1 and "2 sampled dialogue(s) have no label yet" in unlabelled.stderr


@pytest.mark.parametrize("reviewer", ["", "   ", "<b>ana</b>", "ana\n---"])
def test_a_label_or_sign_off_by_nobody_is_refused(version_folder, reviewer):
    first = read_state((version_folder / "README.md").read_text()).sampled[0]
    card = (version_folder / "README.md").read_text()
    for command in (
        ["label", "--id", first, "--in-character", "yes", "--quality", "3"],
        ["sign", "--decision", "approve", "--check", "coverage"],
    ):
        refused = cli("review", command[0], str(version_folder), "--reviewer", reviewer, *command[1:])
        assert refused.returncode == 2, refused.stderr
        (line,) = refused.stderr.strip().splitlines()
        assert line.startswith("error: field '--reviewer': ")
    assert (version_folder / "README.md").read_text() == card


def test_notes_with_markup_render_as_text_in_the_card(version_folder):
    first = read_state((version_folder / "README.md").read_text()).sampled[0]
    note = "drifts here\n---\n<b>bold</b> *claims* [a link](http://x)"
    assert cli("review", "label", str(version_folder), "--id", first, "--reviewer", "ana", "--in-character", "no",
               "--quality", "2", "--note", note).returncode == 0  # fmt: skip
    signed = cli("review", "sign", str(version_folder), "--reviewer", "ana", "--decision", "reject",
                 "--notes", "<script>x</script>\n---")  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    card = (version_folder / "README.md").read_text()
    _metadata, body = split_card(card)
    body = body[body.index(SECTION_START) : body.index(SECTION_END)]  # the review section: the reviewers' words
    assert "\n---\n" not in body and "<b>" not in body and "<script>" not in body
    assert "&lt;b&gt;bold&lt;/b&gt; \\*claims\\* \\[a link\\](http://x)" in body
    rendered = markdown_it.MarkdownIt().render(body)
    assert "<b>" not in rendered and "<hr" not in rendered and "<em>" not in rendered and "<a " not in rendered
    assert "&lt;b&gt;bold&lt;/b&gt;" in rendered and "*claims*" in rendered
    state = read_state(card)  # the words themselves are kept as written
    assert [label["note"] for label in state.labels] == [note]


def test_calibrating_twice_gives_the_same_table_and_writes_the_recipe(version_folder, tmp_path):
    for dialogue_id, in_character in zip(read_state((version_folder / "README.md").read_text()).sampled, ("yes", "no")):
        assert cli("review", "label", str(version_folder), "--id", dialogue_id, "--reviewer", "ana",
                   "--in-character", in_character, "--quality", "3").returncode == 0  # fmt: skip
    tuned = tmp_path / "tuned.yaml"
    first = cli("critics", "calibrate", str(version_folder), "--write-recipe", str(tuned))
    assert first.returncode == 0, first.stderr
    written = tuned.read_bytes() if tuned.exists() else None
    commits = DatasetFolder(version_folder).git("rev-list", "--all", "--count")
    again = cli("critics", "calibrate", str(version_folder), "--write-recipe", str(tuned))
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout  # the same table, and the recipe line again
    assert f"{tuned}: " in again.stdout
    assert (tuned.read_bytes() if tuned.exists() else None) == written
    assert DatasetFolder(version_folder).git("rev-list", "--all", "--count") == commits  # nothing new to commit


def test_the_app_beyond_loopback_asks_for_a_password_and_ports_are_checked(version_folder):
    env = {key: value for key, value in subprocess_env().items() if key != "PERSONA_FACTORY_REVIEW_PASSWORD"}
    exposed = cli("review", "app", str(version_folder), "--host", "0.0.0.0", "--port", str(free_port()), env=env)
    assert exposed.returncode == 2
    (line,) = exposed.stderr.strip().splitlines()
    assert "PERSONA_FACTORY_REVIEW_PASSWORD" in line and "--host" in line
    out_of_range = cli("review", "app", str(version_folder), "--port", "99999")
    assert out_of_range.returncode == 2 and out_of_range.stderr.strip().splitlines() == [
        "error: field '--port': 99999 is not a port: choose one from 1 to 65535"
    ]
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        busy = cli("review", "app", str(version_folder), "--port", str(taken))
    assert busy.returncode == 2 and busy.stderr.strip().splitlines() == [
        f"error: field '--port': port {taken} on 127.0.0.1 is taken by another process: choose another"
    ]


def test_space_files_run_the_same_app_on_the_hub_repository(tmp_path):
    written = cli("review", "app", "hf://org/chats", "--space", str(tmp_path / "space"))
    assert written.returncode == 0, written.stderr
    app = (tmp_path / "space" / "app.py").read_text()
    assert 'launch("hf://org/chats"' in app
    compile(app, "app.py", "exec")
    assert "persona-factory[review]" in (tmp_path / "space" / "requirements.txt").read_text()
    assert "sdk: gradio" in (tmp_path / "space" / "README.md").read_text()
    assert cli("review", "app", str(tmp_path), "--space", str(tmp_path / "s2")).returncode == 2  # not a Hub repo
    shutil.rmtree(tmp_path / "space")


def test_a_bank_persona_is_shown_by_its_statements():
    from factory.review.app import render_dialogue

    shown = render_dialogue({"id": "mbti-00001-intj-ab", "kind": "mbti", "statements": ["I plan.", "I read."]})
    assert "`mbti-00001-intj-ab` (mbti)" in shown and "- I plan." in shown and "- I read." in shown

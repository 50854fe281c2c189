"""Publishing a local version (dialogue dataset or persona bank) to the Hugging Face Hub.

A version goes up for review, not straight to ``main``: one commit with every file of the version
(data shards, card, recipe, manifest), opened as a pull request, with the card's
``persona_factory.review_status`` set to ``in_review``. The commit is atomic on the Hub, so a push
that fails leaves the repository as it was and can simply be run again; pushing a version that is
already in review or released changes nothing. ``HF_ENDPOINT`` and ``HF_TOKEN`` are honoured; the
token is only ever sent in the Authorization header.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from factory.dataset.folder import PUBLISHED_ENTRIES, DatasetFolder
from factory.errors import HubError, InputError, OutputError
from factory.settings import environment

# How a command is told that a target is a Hub repository and not a local folder.
HUB_PREFIX = "hf://"
_REPO_ID = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?/[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")


def looks_like_repo_id(text: str) -> bool:
    return bool(_REPO_ID.match(text)) and ".." not in text


def repo_id(text: str, *, field: str = "--repo") -> str:
    """``org/name`` (``hf://`` in front is allowed), checked here so that a malformed id is one
    line and no request is made."""
    repo = text[len(HUB_PREFIX) :] if text.startswith(HUB_PREFIX) else text
    if not looks_like_repo_id(repo) or len(repo) > 96:
        raise InputError(
            f"{text!r} is not a Hub repository id; write org/name (letters, digits, '-', '_', '.')", field=field
        )
    return repo


@contextmanager
def hub_errors(action: str, repo: str) -> Iterator[None]:
    """The Hub's HTTP errors as one line that says what was being done and what the Hub said."""
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError

    try:
        yield
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "no answer"
        raise HubError(f"the Hub refused {action} {repo} ({status}): {str(exc).splitlines()[0]}") from exc
    except HFValidationError as exc:
        raise InputError(f"{repo!r}: {str(exc).splitlines()[0]}", field="--repo") from exc


@dataclass
class PushResult:
    repo: str
    version: str
    state: str  # "opened", "in_review" (already), "released" (already)
    pr_num: int | None
    commit: str | None


def version_files(folder: DatasetFolder, version: str) -> dict[str, bytes]:
    """The published files of a version, read from its tag (not from the working tree)."""
    commit = folder.resolve(version)
    listing = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", commit], cwd=folder.path, capture_output=True, text=True, check=True
    ).stdout.split()
    wanted = [name for name in listing if name.split("/", 1)[0] in PUBLISHED_ENTRIES]
    return {name: folder.read_bytes(commit, name) for name in wanted}


def with_review_status(card: bytes, status: str) -> bytes:
    """The card with its review status set (and a review section, if it had none)."""
    from factory.review import read_state, write_state

    text = card.decode("utf-8")
    state = read_state(text)
    state.status = status
    return write_state(text, state).encode("utf-8")


def _title(version: str) -> str:
    return f"{version}: review"


def hub_api():
    from huggingface_hub import HfApi

    env = environment()
    return HfApi(endpoint=env.hf_endpoint, token=env.hf_token)


def push_version(path: str | Path, repo: str, *, version: str | None = None, private: bool = False) -> PushResult:
    from huggingface_hub import CommitOperationAdd

    repo = repo_id(repo)
    folder = DatasetFolder(path)
    if not folder.is_repository():
        raise OutputError(f"{folder.path} is not a persona-factory dataset folder")
    version = version or folder.current_version()
    if version is None:
        raise OutputError(f"{folder.path} has no version to push yet")
    files = version_files(folder, version)
    if "README.md" not in files:
        raise OutputError(f"{version} of {folder.path} has no dataset card")
    from factory.dataset.card import with_use_section

    card = with_review_status(files["README.md"], "in_review").decode("utf-8")
    files["README.md"] = with_use_section(card, repo).encode("utf-8")

    api = hub_api()
    with hub_errors(f"the push of {version} to", repo):
        api.create_repo(repo, repo_type="dataset", private=private, exist_ok=True)
        refs = api.list_repo_refs(repo, repo_type="dataset", include_pull_requests=True)
        if any(tag.name == version for tag in refs.tags):
            return PushResult(repo, version, "released", None, None)
        for pull in refs.pull_requests:
            number = int(pull.name.rsplit("/", 1)[1])
            details = api.get_discussion_details(repo, number, repo_type="dataset")
            if details.title == _title(version) and details.status == "open":
                return PushResult(repo, version, "in_review", number, pull.target_commit)
        operations = [
            CommitOperationAdd(path_in_repo=name, path_or_fileobj=content) for name, content in sorted(files.items())
        ]
        info = api.create_commit(
            repo,
            operations,
            commit_message=_title(version),
            repo_type="dataset",
            create_pr=True,
            commit_description=f"persona-factory {version}, for review before release.",
        )
    return PushResult(repo, version, "opened", info.pr_num, info.oid)

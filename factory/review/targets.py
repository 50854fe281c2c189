"""Where reviewed versions live. A local dataset folder keeps a version in review on a branch and
a released one on ``main`` with a tag; a Hub repository keeps it in an open pull request titled
``vX.Y.Z: review``, and releasing merges it into ``main`` and tags ``main``.

Each target answers the same few questions (which version is in review, its card and files) and
takes the same three steps (save a card, approve, reject); what a step means for the version is
decided in :mod:`factory.review`, not here. Every Hub failure is one line (``hub_errors``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from factory.dataset.folder import DatasetFolder, parse_version
from factory.dataset.review_section import read_state
from factory.errors import ReviewError, hub_errors
from factory.hub import ReviewPull, hub_api, review_pulls


class ReviewTarget(Protocol):
    """What the review needs from the place a version is published to."""

    name: str

    def latest_in_review(self) -> str: ...
    def file(self, version: str, name: str) -> bytes: ...
    def save(self, version: str, card: str, message: str) -> None: ...
    def approve(self, version: str, card: str, message: str) -> None: ...
    def reject(self, version: str, card: str, message: str, reasons: str) -> None: ...


class LocalTarget:
    """A dataset folder: versions in review are branches, released ones are main and tags."""

    def __init__(self, path: str | Path) -> None:
        self.folder = DatasetFolder(path)
        if not self.folder.is_repository():
            raise ReviewError(f"{self.folder.path} is not a persona-factory dataset folder")
        self.name = str(self.folder.path)

    def latest_in_review(self) -> str:
        released = self.folder.released_versions()
        for version in reversed(self.folder.review_versions()):
            card = self.file(version, "README.md").decode("utf-8")
            if version not in released and read_state(card).status == "in_review":
                return version
        raise ReviewError(f"{self.name} has no version in review")

    def file(self, version: str, name: str) -> bytes:
        return self.folder.read_bytes(self.folder.resolve(version), name)

    def save(self, version: str, card: str, message: str) -> None:
        with self.folder.locked():
            on = self.folder.branch()
            self.folder.commit_card(version, card, message)
            self.folder.git("checkout", "-q", on)

    def approve(self, version: str, card: str, message: str) -> None:
        with self.folder.locked():
            self.folder.release(version, card, message)

    def reject(self, version: str, card: str, message: str, reasons: str) -> None:
        """The card says why; the working tree leaves the rejected version for the latest released
        one (main), so loading the folder never returns a version a reviewer turned down."""
        with self.folder.locked():
            on = self.folder.branch()
            self.folder.commit_card(version, card, message)
            self.folder.git("checkout", "-q", "main" if on == self.folder.ref_for(version) else on)


class HubTarget:
    """A Hub dataset repository: a version in review is an open pull request."""

    def __init__(self, repo: str) -> None:
        self.api = hub_api()
        self.name = repo

    def _pull(self, version: str) -> ReviewPull:
        pull = review_pulls(self.api, self.name).get(version)
        if pull is None:
            raise ReviewError(f"{self.name} has no pull request for {version}")
        return pull

    def _revision(self, version: str) -> str:
        refs = self.api.list_repo_refs(self.name, repo_type="dataset")
        if any(tag.name == version for tag in refs.tags):
            return version
        return f"refs/pr/{self._pull(version).number}"

    def latest_in_review(self) -> str:
        with hub_errors("to list the pull requests of", self.name):
            pulls = review_pulls(self.api, self.name)
        in_review = [(parsed, v) for v, pull in pulls.items() if pull.status == "open" and (parsed := parse_version(v))]
        if not in_review:
            raise ReviewError(f"{self.name} has no version in review")
        return max(in_review)[1]

    def file(self, version: str, name: str) -> bytes:
        from huggingface_hub import hf_hub_download

        with hub_errors(f"{name} of {version} from", self.name):
            path = hf_hub_download(
                self.name, name, repo_type="dataset", revision=self._revision(version), token=self.api.token
            )
        return Path(path).read_bytes()

    def save(self, version: str, card: str, message: str) -> None:
        from huggingface_hub import CommitOperationAdd

        with hub_errors(f"the card of {version} for", self.name):
            self.api.create_commit(
                self.name,
                [CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card.encode("utf-8"))],
                commit_message=message,
                repo_type="dataset",
                revision=self._revision(version),
            )

    def approve(self, version: str, card: str, message: str) -> None:
        with hub_errors(f"the release of {version} of", self.name):
            number = self._pull(version).number
            self.save(version, card, message)
            self.api.merge_pull_request(self.name, number, repo_type="dataset", comment=message)
            self.api.create_tag(self.name, tag=version, revision="main", repo_type="dataset", tag_message=message)

    def reject(self, version: str, card: str, message: str, reasons: str) -> None:
        with hub_errors(f"to close the review of {version} of", self.name):
            number = self._pull(version).number
            self.save(version, card, message)
            self.api.change_discussion_status(self.name, number, "closed", repo_type="dataset", comment=reasons)

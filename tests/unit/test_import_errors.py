"""What an import's page says when git fails, and the 429s of a full queue."""

from __future__ import annotations

import pytest

from repodepot.exceptions import TooManyRequests
from repodepot.git.errors import GitTimeout
from repodepot.imports.errors import QueueFull, QuotaFull, explain
from tests.support import gitstderr
from tests.support.gitstderr import clone_failed

LOST = "The connection to the source was lost during the transfer."
UNREACHABLE = "Could not connect to the source host."
NOT_FOUND = "The repository was not found at this URL (or the token cannot see it)."
REDIRECT = (
    "The source answered with a redirect, which imports do not follow: use the "
    "repository's final URL."
)


@pytest.mark.parametrize(
    ("sample", "sentence"),
    [
        (
            "AUTH_REJECTED",
            "The source refused the credentials: check the token and that it may read this "
            "repository.",
        ),
        ("AUTH_MISSING", "The source requires credentials: give a token with the import."),
        ("HTTP_403", "The source refused access (HTTP 403): check the token's permissions."),
        ("NOT_FOUND", NOT_FOUND),
        ("SSH_NOT_A_REPOSITORY", "The URL does not point to a git repository."),
        ("UNRESOLVABLE", "The source host name could not be resolved."),
        ("CONNECTION_REFUSED", UNREACHABLE),
        ("CONNECTION_RESET", LOST),
        ("DROPPED_MID_PACK", LOST),
        ("DROPPED_IN_REF_LISTING", LOST),
        ("PROGRESS_THEN_DROPPED", LOST),
        ("REDIRECT_301", REDIRECT),
        ("REDIRECT_302", REDIRECT),
        ("DISK_FULL", "The server ran out of disk space during the import."),
    ],
)
def test_git_s_failures_in_words_a_person_acts_on(sample: str, sentence: str) -> None:
    assert explain(clone_failed(getattr(gitstderr, sample))) == sentence


def test_a_failure_without_words_of_its_own_quotes_git() -> None:
    said = explain(clone_failed(gitstderr.HTTP_500))
    assert said.startswith("git clone failed") and said.count("git clone failed") == 1
    assert "The requested URL returned error: 500" in said


def test_a_corrupt_source_is_not_called_a_lost_connection() -> None:
    said = explain(clone_failed(gitstderr.SOURCE_CORRUPT))
    assert said.startswith("The source repository is corrupt")


def test_a_killed_clone_says_after_how_long() -> None:
    said = explain(GitTimeout(["clone", "--bare"], 600.0))
    assert said == "git clone failed: git clone was killed after 600 s"


def test_a_full_queue_is_a_429_with_how_many_wait_and_when_to_retry() -> None:
    full = QueueFull.waiting(200, retry_after=30)
    assert isinstance(full, TooManyRequests)
    assert full.code == "queue_full"
    assert full.retry_after == 30
    assert full.message == "200 imports are already waiting; try again in 30 s"


def test_a_member_s_quota_names_the_limit_and_the_setting() -> None:
    full = QuotaFull.of(3, retry_after=60)
    assert isinstance(full, QueueFull)  # one 429 mapping serves both
    assert full.code == "import_quota"
    assert full.retry_after == 60
    assert full.message == (
        "you already have 3 imports pending or running, the most one member may have "
        "(import_queue_per_user); wait for one to finish or cancel one"
    )

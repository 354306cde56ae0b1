"""An update's failure, from git's real stderr, as the kind and the lines a person sees."""

from __future__ import annotations

import pytest

from repodepot.git.errors import GitCommandError, GitNotInstalled, GitTimeout
from repodepot.gitserver.failures import FailureKind, classify, credential_advice, message
from tests.support import gitstderr
from tests.support.gitstderr import clone_failed


@pytest.mark.parametrize(
    ("sample", "kind"),
    [
        ("AUTH_REJECTED", FailureKind.auth),
        ("AUTH_MISSING", FailureKind.auth),
        ("HTTP_403", FailureKind.auth),
        ("NOT_FOUND", FailureKind.not_found),
        ("SSH_NOT_A_REPOSITORY", FailureKind.not_found),
        ("CONNECTION_REFUSED", FailureKind.network),
        ("UNRESOLVABLE", FailureKind.network),
        ("CONNECTION_RESET", FailureKind.network),
        ("EMPTY_REPLY", FailureKind.network),
        ("DROPPED_MID_PACK", FailureKind.network),
        ("DROPPED_IN_REF_LISTING", FailureKind.network),
        ("PROGRESS_THEN_DROPPED", FailureKind.network),
        ("HTTP_500", FailureKind.network),
        ("HTTP_502", FailureKind.network),
        ("DISK_FULL", FailureKind.disk_full),
        # The source's corruption ends in "early EOF" too: corrupt wins, a retry won't help.
        ("SOURCE_CORRUPT", FailureKind.corrupt),
        ("MIRROR_NOT_A_REPOSITORY", FailureKind.corrupt),
        ("TRANSPORT_REFUSED", FailureKind.other),
    ],
)
def test_git_s_own_words_give_the_kind(sample: str, kind: FailureKind) -> None:
    assert classify(clone_failed(getattr(gitstderr, sample))) is kind


def test_a_git_killed_at_its_timeout_is_a_timeout_whatever_it_printed() -> None:
    assert classify(GitTimeout(["fetch", "origin"], 600.0)) is FailureKind.timeout


def test_the_kinds_are_the_words_stored_and_shown() -> None:
    assert [kind.value for kind in FailureKind] == [
        "auth",
        "not_found",
        "network",
        "timeout",
        "corrupt",
        "disk_full",
        "other",
    ]


def test_the_message_is_git_s_last_fatal_and_error_lines_without_progress() -> None:
    said = message(clone_failed(gitstderr.PROGRESS_THEN_DROPPED))
    assert said == (
        "error: 703 bytes of body are still expected\n"
        "fatal: early EOF\n"
        "fatal: fetch-pack: invalid index-pack output"
    )
    assert "Receiving objects" not in said and "Cloning into" not in said


def test_the_message_keeps_git_s_lines_in_order() -> None:
    assert message(clone_failed(gitstderr.SSH_NOT_A_REPOSITORY)) == (
        "fatal: '/nope.git' does not appear to be a git repository\n"
        "fatal: Could not read from remote repository."
    )
    assert message(clone_failed(gitstderr.AUTH_REJECTED)) == (
        "fatal: Authentication failed for 'http://127.0.0.1:42265/r.git/'"
    )


def test_without_fatal_lines_the_message_is_the_error_s_own() -> None:
    assert message(GitTimeout(["fetch", "origin"], 600.0)) == "git fetch was killed after 600 s"
    silent = GitCommandError(["fetch", "origin"], 1, "")
    assert message(silent) == "git fetch failed (exit 1): no message"


def test_a_mirror_missing_objects_is_corrupt_so_it_is_cloned_again() -> None:
    # What git 2.39 prints when the local mirror lost an object a fetched delta needs.
    stderr = "fatal: unresolved deltas left after unpacking\nfatal: unpack-objects failed\n"
    assert classify(clone_failed(stderr)) is FailureKind.corrupt


def test_git_missing_from_the_server_is_not_the_repository_s_not_found() -> None:
    assert classify(GitNotInstalled("git was not found on PATH")) is FailureKind.other


def test_the_message_keeps_what_the_remote_said() -> None:
    said = message(clone_failed(gitstderr.SOURCE_CORRUPT))
    assert "remote: fatal: bad tree object" in said.splitlines()[0]


def test_the_advice_names_whose_credential_the_host_refused() -> None:
    own = credential_advice("acme/app", credential_of="repository")
    host = credential_advice("acme/app", credential_of="connection")
    none = credential_advice("acme/app", credential_of=None)
    assert own.startswith("credential rejected: the host refused the stored credential")
    assert "code host connection's token" in host and "PATCH /api/codehosts" in host
    assert none.startswith("credential needed")
    assert all("PUT /api/repos/acme/app/credential" in text for text in (own, host, none))

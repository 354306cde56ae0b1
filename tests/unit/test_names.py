"""Names match whole: a trailing newline (which `$` lets through) is refused everywhere."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from repodepot.accounts import validate_user_name
from repodepot.exceptions import InvalidInput
from repodepot.goproxy import versions
from repodepot.imports.validation import validate_name
from repodepot.storage import validate_repo_name

CHECKS: list[tuple[str, Callable[[str], object], str]] = [
    ("import owner/slug", lambda v: validate_name(v, "slug"), "flask"),
    ("user name", validate_user_name, "alice"),
    ("repository name", validate_repo_name, "github.com/acme/app"),
]


@pytest.mark.parametrize(("what", "check", "good"), CHECKS, ids=[c[0] for c in CHECKS])
@pytest.mark.parametrize("suffix", ["\n", "\r\n", "\n\n", " ", "\x00"])
def test_a_name_with_a_trailing_newline_or_control_is_refused(
    what: str, check: Callable[[str], object], good: str, suffix: str
) -> None:
    check(good)  # the name itself is fine
    with pytest.raises(InvalidInput):
        check(good + suffix)


@pytest.mark.parametrize("value", ["v1.2.3\n", "v1.0.0\n"])
def test_a_version_with_a_trailing_newline_is_not_a_version(value: str) -> None:
    assert versions.parse(value.strip()) is not None
    assert versions.parse(value) is None

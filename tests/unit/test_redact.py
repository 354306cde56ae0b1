from __future__ import annotations

import pytest

from repodepot.git.redact import redact, strip_userinfo


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "fatal: unable to access 'https://bob:pw@host/x.git/': 403",
            "fatal: unable to access 'https://***@host/x.git/': 403",
        ),
        ("remote: https://x-access-token:abc@github.com/o/r", "remote: https://***@github.com/o/r"),
        ("token rdp_AbCdEfGhIjKlMnOpQrStUv leaked", "token *** leaked"),
        ("ghp_0123456789abcdefghij0123 and glpat-abcdefghij0123456789", "*** and ***"),
        ("github_pat_11AAAAAAA0123456789_abcdefghij", "***"),
        ("Authorization: Bearer sekrit-value", "Authorization: Bearer ***"),
        ("nothing secret here, https://host/x.git", "nothing secret here, https://host/x.git"),
    ],
)
def test_redact_masks_credentials(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_redact_masks_given_secrets() -> None:
    assert redact("password hunter22 was wrong", ["hunter22"]) == "password *** was wrong"
    assert redact("a b", ["", "a"]) == "a b"  # too short to mask meaningfully


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://u:p@example.com/a.git", "https://example.com/a.git"),
        ("https://tok@example.com:8443/a.git", "https://example.com:8443/a.git"),
        ("http://u:p@[::1]:9/a", "http://[::1]:9/a"),
        ("https://example.com/a.git", "https://example.com/a.git"),
    ],
)
def test_strip_userinfo(url: str, expected: str) -> None:
    assert strip_userinfo(url) == expected

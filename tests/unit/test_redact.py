from __future__ import annotations

import pytest

from repodepot.git.redact import query_secret, redact, strip_credentials


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
        (
            "fatal: unable to access 'https://h/x.git/?private_token=s3cr3t-value&ref=a': 403",
            "fatal: unable to access 'https://h/x.git/?private_token=***&ref=a': 403",
        ),
        ("GET /x?access_token=abcdef HTTP/1.1", "GET /x?access_token=*** HTTP/1.1"),
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
        ("https://h/a.git?private_token=glpat-xyz", "https://h/a.git"),
        ("https://h/a.git?ref=main&access_token=xyz&x=1", "https://h/a.git?ref=main&x=1"),
        ("https://h/a.git?token=1&oauth_token=2&X-Amz-Signature=3&api_key=4", "https://h/a.git"),
        ("https://u:p@h/a.git?job_token=1", "https://h/a.git"),
        ("https://h/a.git?monkey=1&keys=2", "https://h/a.git?monkey=1&keys=2"),
        ("http://u:p@[x/a?token=1", "http://***@[x/a?token=***"),  # unparsable: masked
    ],
)
def test_strip_credentials(url: str, expected: str) -> None:
    assert strip_credentials(url) == expected


def test_query_secret_is_the_first_secret_parameter() -> None:
    assert query_secret("https://h/a.git?ref=x&private_token=a%40b&token=c") == "a@b"
    assert query_secret("https://h/a.git?ref=x&token=") is None
    assert query_secret("https://h/a.git") is None

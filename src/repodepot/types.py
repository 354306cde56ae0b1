"""Type aliases shared across layers."""

from __future__ import annotations

from typing import NewType

RepoName = NewType("RepoName", str)
"""A repository's path-like name, `owner/slug` or `host/owner/name`, validated by storage."""

Sha = NewType("Sha", str)
"""A full 40-hex commit or object id."""

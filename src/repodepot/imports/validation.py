"""What an import may be called: its owner and slug.

Every refusal is InvalidInput naming the field, so the API answers 422 with it. What
it may fetch is `repodepot.git.urls.parse_source`; which addresses it may reach is
`repodepot.outbound`'s policy, the same for every fetch.
"""

from __future__ import annotations

import re

from repodepot.exceptions import InvalidInput

NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")


def validate_name(value: str, field_name: str) -> str:
    """An owner or slug: 1-100 of `[A-Za-z0-9._-]`, not starting with `-` or `.`, no `..`."""
    if not NAME.fullmatch(value) or value.startswith(("-", ".")) or ".." in value:
        raise InvalidInput(
            f"{field_name} must be 1-100 letters, digits, '.', '_' or '-', not starting with "
            "'-' or '.' and without '..'",
            field=field_name,
        )
    if value.endswith((".git", ".lock")):
        raise InvalidInput(f"{field_name} must not end in '.git' or '.lock'", field=field_name)
    return value

"""JSON parsed with a bound on its nesting, for bodies from anyone: clients and code hosts.

`json.loads` recurses once per level: `[` repeated 200,000 times raises RecursionError
(or exhausts the stack of whoever walks the value next). `loads` refuses anything
nested deeper than MAX_JSON_DEPTH with the JSONDecodeError that invalid JSON raises.
"""

from __future__ import annotations

import json
from typing import Any

MAX_JSON_DEPTH = 64


def loads(data: bytes | str) -> Any:
    """Parse JSON nested at most MAX_JSON_DEPTH levels; raises json.JSONDecodeError."""
    try:
        value = json.loads(data)
        if not _too_deep(value):
            return value
    except RecursionError:
        pass  # far deeper than the bound: the parser ran out of stack first
    except UnicodeDecodeError:
        # FastAPI answers only JSONDecodeError with 422; this was an undocumented 400.
        raise json.JSONDecodeError("the body is not UTF-8 text", "", 0) from None
    raise json.JSONDecodeError(f"nested deeper than {MAX_JSON_DEPTH} levels", "", 0)


def _too_deep(value: Any) -> bool:
    pending = [(value, 1)]  # walked without recursion: the value may be 1,000 levels deep
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                return True
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
    return False

"""Property-based API fuzzing with schemathesis, on a fixed and repeatable budget.

Every operation of an OpenAPI document gets `examples` generated requests in each
generation mode (valid and invalid input), derandomized (the same requests on every run)
and without shrinking, so the run costs the same every time. Failures are collected, not
raised, so that one run lists every finding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core import NotSet
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.core.result import Err, Ok

# Zero 5xx, and every answer as the schema declares it: status, media type and body.
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
]
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
_DESTRUCTIVE = re.compile(r"^DELETE ")


@dataclass(frozen=True, kw_only=True, slots=True)
class Finding:
    """One failed check: where, as whom, what was sent and what came back."""

    identity: str
    operation: str
    status: int | None
    request: str
    problem: str

    def __str__(self) -> str:
        return (
            f"{self.operation} as {self.identity} → {self.status}: {self.problem}\n"
            f"    {self.request}"
        )


def fuzz(
    document: dict[str, Any],
    base_url: str,
    identities: dict[str, dict[str, str]],
    *,
    examples: int,
) -> list[Finding]:
    """Send generated requests to `base_url` as each identity (name → headers) in order.

    DELETE operations go last for each identity, so that what they remove (a token,
    say) takes away as little of the rest of the run as it can.
    """
    schema = schemathesis.openapi.from_dict(document)
    loaded = list(schema.get_all_operations())
    broken = [result.err() for result in loaded if isinstance(result, Err)]
    if broken:
        raise AssertionError(f"operations the schema does not describe usably: {broken}")
    operations = sorted(
        (result.ok() for result in loaded if isinstance(result, Ok)),
        key=lambda op: (bool(_DESTRUCTIVE.match(op.label)), op.label),
    )
    findings: dict[tuple[str, int | None, str], Finding] = {}
    for identity, headers in identities.items():
        with requests.Session() as session:
            for operation in operations:
                for mode in MODES:
                    for found in _run(
                        operation, mode, base_url, session, identity, headers, examples
                    ):
                        key = (found.operation, found.status, found.problem.split(":")[0])
                        seen = findings.get(key)
                        identities_seen = f"{seen.identity}, {identity}" if seen else identity
                        if seen is None or identity not in seen.identity.split(", "):
                            findings[key] = replace(seen or found, identity=identities_seen)
    return list(findings.values())


def _run(
    operation: Any,
    mode: GenerationMode,
    base_url: str,
    session: requests.Session,
    identity: str,
    headers: dict[str, str],
    examples: int,
) -> list[Finding]:
    found: list[Finding] = []

    @hypothesis_settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: a fixed cost
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case[Any]) -> None:
        response = None
        try:
            response = case.call(base_url=base_url, session=session, headers=headers, timeout=30)
            case.validate_response(response, checks=CHECKS, headers=headers)
        except (FailureGroup, Exception) as error:  # a failed check or a dropped connection
            found.append(
                Finding(
                    identity=identity,
                    operation=operation.label,
                    status=None if response is None else response.status_code,
                    request=_describe(case),
                    problem=_first_line(error),
                )
            )

    try:
        run()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise
        # An operation without parameters or body has no invalid input to send.
    return found


def _describe(case: schemathesis.Case[Any]) -> str:
    parts = [f"{case.method} {case.formatted_path}"]
    if case.query:
        parts.append(f"query={case.query!r}")
    if not isinstance(case.body, NotSet):
        parts.append(f"body={case.body!r}"[:300])
    return " ".join(parts)


def _first_line(error: BaseException) -> str:
    if isinstance(error, FailureGroup):
        return "; ".join(_first_line(failure) for failure in error.exceptions)
    if isinstance(error, Failure):
        detail = error.message.strip().splitlines()
        return f"{error.title}: {' '.join(detail[:3])}"[:400]
    text = str(error).strip() or type(error).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f"{type(error).__name__}: {' | '.join(lines[:4])}"[:400]

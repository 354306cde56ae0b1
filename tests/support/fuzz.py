"""Property-based API fuzzing with schemathesis, on a fixed and repeatable budget.

Every operation of an OpenAPI document gets `examples` generated requests in each
generation mode (valid and invalid input), derandomized (the same requests on every run)
and without shrinking, so the run costs the same every time. Failures are collected, not
raised, so that one run lists every finding.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, replace
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
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
_PATH_PARAMETER = re.compile(r"\{(\w+)\}")


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
    known: dict[str, list[Any]],
) -> list[Finding]:
    """Send generated requests to `base_url` as each identity (name → headers) in order.

    Random names and ids almost never hit a record, so the handlers past the lookup would
    go untested: half of the requests of an operation with a path parameter named in
    `known` take one of those values for it instead (the rest of the request generated).

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
            caller = _Caller(identity=identity, headers=headers, base_url=base_url, session=session)
            for operation, mode in itertools.product(operations, MODES):
                for found in _run(operation, mode, caller, examples=examples, known=known):
                    _merge(findings, found)
    return list(findings.values())


@dataclass(frozen=True, kw_only=True, slots=True)
class _Caller:
    identity: str
    headers: dict[str, str]
    base_url: str
    session: requests.Session


def _merge(findings: dict[tuple[str, int | None, str], Finding], found: Finding) -> None:
    """One finding per operation, status and kind of problem, naming every identity."""
    key = (found.operation, found.status, found.problem.split(":")[0])
    seen = findings.get(key)
    if seen is None:
        findings[key] = found
    elif found.identity not in seen.identity.split(", "):
        findings[key] = replace(seen, identity=f"{seen.identity}, {found.identity}")


def _run(
    operation: Any,
    mode: GenerationMode,
    caller: _Caller,
    *,
    examples: int,
    known: dict[str, list[Any]],
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
    @given(case=_with_known(operation.as_strategy(generation_mode=mode), operation.path, known))
    def run(case: schemathesis.Case[Any]) -> None:
        response = None
        try:
            response = case.call(
                base_url=caller.base_url, session=caller.session, headers=caller.headers, timeout=30
            )
            case.validate_response(response, checks=CHECKS, headers=caller.headers)
        except (FailureGroup, Exception) as error:  # a failed check or a dropped connection
            found.append(
                Finding(
                    identity=caller.identity,
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


def _with_known(
    cases: st.SearchStrategy[Any], path: str, known: dict[str, list[Any]]
) -> st.SearchStrategy[Any]:
    names = [name for name in _PATH_PARAMETER.findall(path) if name in known]
    if not names:
        return cases
    values = st.fixed_dictionaries({name: st.sampled_from(known[name]) for name in names})

    def pin(drawn: tuple[schemathesis.Case[Any], dict[str, Any]]) -> schemathesis.Case[Any]:
        case, chosen = drawn
        case.path_parameters = {**(case.path_parameters or {}), **chosen}
        return case

    return st.one_of(cases, st.tuples(cases, values).map(pin))


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

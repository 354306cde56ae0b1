"""One owner per table: only a table's owner module reads or writes it; the others call it.

The check reads the source (no import): a module outside a table's owner may not import
the table's model from `repodepot.db.models` or name it in SQL text. The enums in
`db/models.py` are free for all. Each exception is listed with why.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from repodepot.db import models
from repodepot.db.base import Base

SRC = Path(models.__file__).parents[1]  # src/repodepot

# table → the module or package that owns it.
OWNERS = {
    "users": "repodepot.accounts",
    "api_tokens": "repodepot.accounts",
    "sessions": "repodepot.accounts",
    "repositories": "repodepot.repositories",
    "repository_credentials": "repodepot.repositories",
    "import_jobs": "repodepot.imports.service",
    "import_secrets": "repodepot.imports.service",
    "audit_log": "repodepot.audit",
    "code_hosts": "repodepot.codehosts",
    "code_host_syncs": "repodepot.codehosts",
    "repo_sources": "repodepot.codehosts",
    "gitserver_repos": "repodepot.gitserver.service",
    "go_versions": "repodepot.goproxy.pins",
    "upstream_syncs": "repodepot.branches.store",
    "branch_sync_status": "repodepot.branches.store",
    "cache_epochs": "repodepot.caches",
    "groups": "repodepot.access",
    "group_members": "repodepot.access",
    "repository_grants": "repodepot.access",
    "code_host_accounts": "repodepot.permsync",
    "storage_nodes": "repodepot.nodes.registry",
}
# (module, table) a module outside the owner may READ, joined into its own query, and why.
READS = {
    ("repodepot.repositories", "users"): "a repository's owner is shown by name, in one query",
    ("repodepot.access", "users"): "a grant's user and a group's members are shown by name, "
    "and named users are found by name, in the grant's or membership's own query",
    ("repodepot.permsync", "users"): "a linked account's user is shown by name, in the "
    "account's own query",
    ("repodepot.permsync", "code_hosts"): "a linked account's connection is shown by name and "
    "kind in the account's own query, and a link reads the connection's kind to refuse one "
    "without an API",
    ("repodepot.access", "repo_sources"): "a connection-wide grant covers the repositories "
    "the connection yields: one subquery of the one readable query (`granted_ids`)",
    ("repodepot.branches.store", "gitserver_repos"): "a node leases only the upstream fetches "
    "of mirrors on its disk (`shard`), in the lease's own query, and names the node that holds "
    "one it may not fetch",
}
MODELS = {"repodepot.db.models"}
# Where tables are defined and migrated: outside the rule.
EXEMPT = ("repodepot.db.models", "repodepot.db.migrations")

MODEL_TABLES = {
    mapper.class_.__name__: str(mapper.class_.__tablename__) for mapper in Base.registry.mappers
}
_SQL = re.compile(r"\b(?:FROM|JOIN|UPDATE|INTO)\s+\"?([a-z_]+)\"?", re.IGNORECASE)


def owns(module: str, table: str) -> bool:
    owner = OWNERS[table]
    return module == owner or module.startswith(f"{owner}.")


def violations(module: str, source: str) -> list[str]:
    """What `module` (its dotted name, its source) touches that it does not own."""
    if module.startswith(EXEMPT):
        return []
    found: list[str] = []

    def foreign(table: str, how: str, line: int) -> None:
        if table in OWNERS and not owns(module, table) and (module, table) not in READS:
            found.append(f"{module}:{line}: {how} `{table}`, owned by {OWNERS[table]}")

    tree = ast.parse(source)
    modules = _models_aliases(tree)  # names the models module goes by here
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in MODELS:
            for alias in node.names:
                if alias.name in MODEL_TABLES:
                    foreign(MODEL_TABLES[alias.name], f"imports {alias.name} of", node.lineno)
        elif (
            isinstance(node, ast.Attribute)
            and node.attr in MODEL_TABLES
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
        ):
            foreign(MODEL_TABLES[node.attr], f"uses {node.attr} of", node.lineno)
        elif isinstance(node, ast.Call) and _names_a_table(node):
            table = node.args[0].value  # type: ignore[attr-defined]
            foreign(str(table), "declares a table() of", node.lineno)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            for table in _SQL.findall(node.value):
                foreign(table.lower(), "names in SQL", node.lineno)
    return found


def _models_aliases(tree: ast.Module) -> set[str]:
    """`import repodepot.db.models as m` → {"m"}; `from repodepot.db import models` → {"models"}."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.asname or a.name for a in node.names if a.name in MODELS}
        elif isinstance(node, ast.ImportFrom) and node.module == "repodepot.db":
            names |= {a.asname or a.name for a in node.names if a.name == "models"}
    return names


def _names_a_table(node: ast.Call) -> bool:
    """`sa.table("repositories", …)` or `Table("repositories", …)`: a table by its name."""
    name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
    first = node.args[0] if node.args else None
    return (
        name in ("table", "Table")
        and isinstance(first, ast.Constant)
        and isinstance(first.value, str)
        and first.value in OWNERS
    )


def _modules() -> list[tuple[str, Path]]:
    return [
        (".".join(("repodepot", *path.relative_to(SRC).with_suffix("").parts)), path)
        for path in sorted(SRC.rglob("*.py"))
    ]


def test_every_table_has_exactly_one_owner() -> None:
    tables = set(Base.metadata.tables)
    assert tables == set(OWNERS), f"owner missing for {tables - set(OWNERS)}"


def test_no_module_reads_or_writes_a_table_it_does_not_own() -> None:
    found = [
        problem
        for module, path in _modules()
        for problem in violations(module.removesuffix(".__init__"), path.read_text())
    ]
    assert found == []


@pytest.mark.parametrize(
    ("module", "source"),
    [
        # The faults the issue found: each is caught.
        (
            "repodepot.codehosts.service",
            "from repodepot.db.models import GitserverRepo\n",
        ),
        (
            "repodepot.gitserver.janitor",
            "from repodepot.db.models import CloneStatus, Repository\n",
        ),
        (
            "repodepot.gitserver.service",
            "def f(s):\n    return s.execute(text('SELECT sealed_token FROM code_hosts'))\n",
        ),
        (
            "repodepot.imports.service",
            "Q = 'insert into repositories (name) values (:n)'\n",
        ),
        # The same, reached another way.
        (
            "repodepot.web.pages",
            "import repodepot.db.models as m\nq = select(m.Repository)\n",
        ),
        (
            "repodepot.web.pages",
            "from repodepot.db import models\nq = select(models.GitserverRepo)\n",
        ),
        (
            "repodepot.codehosts.store",
            "import sqlalchemy as sa\nREPOS = sa.table('repositories', sa.column('id'))\n",
        ),
    ],
)
def test_a_planted_violation_is_caught(module: str, source: str) -> None:
    assert len(violations(module, source)) == 1


def test_the_owner_and_the_enums_are_free() -> None:
    owner = "from repodepot.db.models import GitserverRepo, CloneStatus\n"
    anyone = "from repodepot.db.models import Visibility, CodeHostKind, ImportStatus\n"
    assert violations("repodepot.gitserver.service", owner) == []
    assert violations("repodepot.web.api.repos", anyone) == []

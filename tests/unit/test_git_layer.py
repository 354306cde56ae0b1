"""Only `repodepot.git` builds a git argv: everyone else calls a typed function of `commands`.

The check reads the source (no import): outside `repodepot/git/`, a call of `.run(`,
`.stream(`, `.start(` or `.popen(` may not take a list or tuple literal (or a name bound to
one in the same module) as its argv, which is how every runner call spells a git command,
nor be made with any argv on the runner by its usual names (`git`, `self._git`, `runner`):
an argv from elsewhere (exec's checked one) goes through `commands` too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import repodepot

SRC = Path(repodepot.__file__).parent  # src/repodepot
RUNNER_METHODS = frozenset({"run", "stream", "start", "popen"})
GIT_LAYER = "repodepot.git"
RUNNER_NAMES = frozenset({"git", "_git", "runner", "_runner"})


def _is_argv(node: ast.expr) -> bool:
    """A list or tuple written out (`["ls-tree", ...]`, `[*a, "x"]`, `["x"] + rest`)."""
    if isinstance(node, ast.List | ast.Tuple | ast.ListComp):
        return True
    return isinstance(node, ast.BinOp) and (_is_argv(node.left) or _is_argv(node.right))


def _argv_names(tree: ast.AST) -> set[str]:
    """Names the module binds to an argv-like literal anywhere (`argv = ["cat-file", ...]`)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and _is_argv(node.value):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign) and node.value is not None and _is_argv(node.value):
            targets = [node.target]
        else:
            continue
        names.update(target.id for target in targets if isinstance(target, ast.Name))
    return names


SPAWNERS = {"create_subprocess_exec", "create_subprocess_shell", "system", "popen", "spawnv"}


def _is_runner(node: ast.expr) -> bool:
    """`git`, `self._git`, `services.git`, `runner`: what the code calls the GitRunner."""
    if isinstance(node, ast.Name):
        return node.id in RUNNER_NAMES
    return isinstance(node, ast.Attribute) and node.attr in RUNNER_NAMES


def violations(module: str, source: str) -> list[str]:
    """The runner calls `module` (its dotted name, its source) makes with an argv of its own."""
    if module == GIT_LAYER or module.startswith(f"{GIT_LAYER}."):
        return []
    tree = ast.parse(source)
    bound = _argv_names(tree)
    found: list[str] = []
    for node in ast.walk(tree):
        if _spawns(node):  # a process of one's own: only the runner starts processes
            line = getattr(node, "lineno", 0)
            found.append(f"{module}:{line}: starts a process: use repodepot.git")
            continue
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in RUNNER_METHODS
        ):
            continue
        first = node.args[0] if node.args else None
        first = next((k.value for k in node.keywords if k.arg == "args"), first)
        if first is None:
            continue
        if (
            _is_argv(first)
            or (isinstance(first, ast.Name) and first.id in bound)
            or _is_runner(node.func.value)
        ):
            found.append(
                f"{module}:{node.lineno}: .{node.func.attr}() given an argv: "
                "add a function to repodepot.git.commands"
            )
    return found


def _spawns(node: ast.AST) -> bool:
    """`import subprocess`, `asyncio.create_subprocess_exec(…)`, `os.system(…)` and kin."""
    if isinstance(node, ast.Import):
        return any(alias.name == "subprocess" for alias in node.names)
    if isinstance(node, ast.ImportFrom):
        return node.module == "subprocess"
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in SPAWNERS
    )


def _modules() -> list[tuple[str, Path]]:
    return [
        (".".join(("repodepot", *path.relative_to(SRC).with_suffix("").parts)), path)
        for path in sorted(SRC.rglob("*.py"))
    ]


def test_no_module_outside_the_git_layer_builds_a_git_argv() -> None:
    found = [
        problem
        for module, path in _modules()
        for problem in violations(module.removesuffix(".__init__"), path.read_text())
    ]
    assert found == []


def test_the_check_reads_every_module() -> None:
    modules = dict(_modules())
    assert "repodepot.web.smarthttp" in modules
    assert "repodepot.goproxy.listing" in modules
    assert len(modules) > 50


@pytest.mark.parametrize(
    ("module", "source"),
    [
        # The argv the layer took over, as the modules wrote them before.
        (
            "repodepot.goproxy.listing",
            "async def f(self, d):\n"
            "    return await self._git.run(\n"
            "        ['ls-tree', '-r', '-z', '--name-only', '--full-tree', 'HEAD'],\n"
            "        git_dir=d, check=False)\n",
        ),
        (
            "repodepot.web.smarthttp",
            "def f(git, path):\n"
            "    return git.stream(['upload-pack', '--strict', '--stateless-rpc', '.'],\n"
            "                      git_dir=path)\n",
        ),
        (
            "repodepot.gitserver.catfile",
            "async def f(self, repo):\n"
            "    return await self._git.start(['cat-file', '--batch'], git_dir=repo)\n",
        ),
        (
            "repodepot.goproxy.zipstream",
            "def f(git, d):\n    return git.popen(('cat-file', '--batch'), git_dir=d)\n",
        ),
        (
            "repodepot.goproxy.tags",
            "async def f(git, d, filters):\n"
            "    return await git.run(['for-each-ref', *filters, 'refs/tags/'], git_dir=d)\n",
        ),
        # A process of one's own, around the runner.
        ("repodepot.gitserver.janitor", "import subprocess\n"),
        (
            "repodepot.goproxy.files",
            "async def f(d):\n"
            "    return await asyncio.create_subprocess_exec('git', '--git-dir', d, 'gc')\n",
        ),
        # An argv built first, then passed by name; by keyword; concatenated.
        (
            "repodepot.gitserver.janitor",
            "async def f(git, d):\n"
            "    argv = ['gc', '--prune=now']\n"
            "    await git.run(argv, git_dir=d)\n",
        ),
        (
            "repodepot.imports.worker",
            "async def f(git):\n    await git.run(args=['version'])\n",
        ),
        (
            "repodepot.goproxy.coderepo",
            "async def f(git, d, a, c):\n"
            "    return await git.run(['merge-base'] + [a, c], git_dir=d, check=False)\n",
        ),
        # An argv from elsewhere, handed straight to the runner (exec, before).
        (
            "repodepot.gitserver.reads",
            "def f(self, path, args):\n"
            "    checked = check_exec(args)\n"
            "    return self._git.stream(checked, git_dir=path, timeout=1.0)\n",
        ),
        (
            "repodepot.web.smarthttp",
            "def f(request, argv):\n    return services(request).git.stream(argv)\n",
        ),
    ],
)
def test_a_planted_argv_is_caught(module: str, source: str) -> None:
    assert len(violations(module, source)) == 1


@pytest.mark.parametrize(
    ("module", "source"),
    [
        # The git layer itself builds argv: that is its job.
        (
            "repodepot.git.commands",
            "async def f(runner, d):\n    await runner.run(['fsck'], git_dir=d)\n",
        ),
        # Calls of the typed layer, and the other run/stream/start methods in the code.
        (
            "repodepot.goproxy.listing",
            "async def f(self, d):\n    return await commands.tag_names(self._git, d)\n",
        ),
        ("repodepot.cli", "def f(work):\n    return asyncio.run(work)\n"),
        (
            "repodepot.client",
            "def f(self, path, h):\n    return self._http.stream('GET', path, headers=h)\n",
        ),
        ("repodepot.goproxy.zipstream", "def f(t):\n    t.start()\n"),
        ("repodepot.composition", "def f(runner):\n    return runner.run()\n"),
    ],
)
def test_what_is_not_an_argv_passes(module: str, source: str) -> None:
    assert violations(module, source) == []

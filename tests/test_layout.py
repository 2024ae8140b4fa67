"""The folders show the architecture: imports between sgsim's packages point one way (README, Layout)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"stylegan2", "checkpoints", "encoders", "sgsim"}
# Which of our packages each package may import; sgsim composes them all.
ALLOWED = {"stylegan2": set(), "checkpoints": set(), "encoders": {"checkpoints"}, "sgsim": OURS}
# Leaf modules any package may import: they import nothing but the standard library. checkpoints.containers is the
# one place that knows weights containers by their bytes, shared by the downloader and the generator loaders.
LEAF_MODULES = {"checkpoints.containers"}


def imported_packages(package: str, root: Path = ROOT) -> dict[str, set[str]]:
    """Our packages imported anywhere in `package` (function-level imports too) -> the files that import them."""
    found: dict[str, set[str]] = {}
    for path in sorted((root / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                if name in LEAF_MODULES:
                    continue
                top = name.split(".")[0]
                if top in OURS and top != package:
                    found.setdefault(top, set()).add(str(path.relative_to(root)))
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_one_way(package):
    forbidden = {name: files for name, files in imported_packages(package).items() if name not in ALLOWED[package]}
    assert not forbidden, f"{package} imports {forbidden}"


def test_the_check_sees_every_kind_of_import(tmp_path):
    (tmp_path / "encoders" / "sub").mkdir(parents=True)
    (tmp_path / "encoders" / "sub" / "late.py").write_text(
        "import torch\nfrom . import sibling\nimport encoders.base\n\ndef f():\n    from sgsim.audio import load_audio\n"
    )
    (tmp_path / "encoders" / "top.py").write_text("import stylegan2.networks as networks, checkpoints\n")
    assert imported_packages("encoders", tmp_path) == {
        "sgsim": {"encoders/sub/late.py"}, "stylegan2": {"encoders/top.py"}, "checkpoints": {"encoders/top.py"},
    }


@pytest.mark.parametrize("module", sorted(LEAF_MODULES))
def test_leaf_modules_import_only_the_standard_library(module):
    path = ROOT / (module.replace(".", "/") + ".py")
    imported = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, f"{module} imports {imported}"


def module_name(path: Path, root: Path = ROOT) -> str:
    """sgsim/editing/editor.py -> sgsim.editing.editor; a package's __init__.py is the package."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sgsim_imports(root: Path = ROOT) -> dict[str, set[str]]:
    """sgsim module -> the sgsim modules it imports anywhere (function-level imports too, relative ones resolved;
    `from package import name` counts as importing the module `name` when it is one), except under TYPE_CHECKING."""
    paths = {module_name(path, root): path for path in (root / "sgsim").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        typing_only = {id(node) for branch in ast.walk(tree) if isinstance(branch, ast.If) and "TYPE_CHECKING" in ast.unparse(branch.test)
                       for statement in branch.body for node in ast.walk(statement)}
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        found = set()
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            else:
                continue
            for name in names:
                while name and name not in paths:
                    name = name.rpartition(".")[0]
                if name and name != module:
                    found.add(name)
        graph[module] = found
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other in a loop (Tarjan's strongly connected components of two or more)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in graph.get(module, ()):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = []
            while not group or group[-1] != module:
                group.append(stack.pop())
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


# What every command may import of the command line: the group and the options they share; never another command.
SHARED_CLI = {"sgsim.cli", "sgsim.cli.options"}


def test_the_command_line_is_a_leaf():
    reaching_up = {module: sorted(t for t in targets if t.startswith("sgsim.cli"))
                   for module, targets in sgsim_imports().items() if not module.startswith("sgsim.cli")}
    assert not {module: targets for module, targets in reaching_up.items() if targets}, "the library imports the command line"


def test_commands_do_not_import_each_other():
    crossing = {module: sorted(t for t in targets if t.startswith("sgsim.cli.") and t not in SHARED_CLI)
                for module, targets in sgsim_imports().items() if module.startswith("sgsim.cli.")}
    assert not {module: targets for module, targets in crossing.items() if targets}


def test_no_circles_inside_sgsim():
    assert circles(sgsim_imports()) == []


def test_the_sgsim_checks_see_what_they_look_for(tmp_path):
    (tmp_path / "sgsim" / "cli").mkdir(parents=True)
    (tmp_path / "sgsim" / "__init__.py").write_text("")
    (tmp_path / "sgsim" / "cli" / "__init__.py").write_text("")
    (tmp_path / "sgsim" / "cli" / "edit.py").write_text("def f():\n    from . import invert\n")
    (tmp_path / "sgsim" / "cli" / "invert.py").write_text("")
    (tmp_path / "sgsim" / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from sgsim import b\n"
                                               "def f():\n    from sgsim.cli.edit import f\n")
    (tmp_path / "sgsim" / "b.py").write_text("import sgsim.c\n")
    (tmp_path / "sgsim" / "c.py").write_text("from sgsim import b\n")
    graph = sgsim_imports(tmp_path)
    assert graph["sgsim.cli.edit"] == {"sgsim.cli", "sgsim.cli.invert"}
    assert graph["sgsim.a"] == {"sgsim.cli.edit"}
    assert circles(graph) == [["sgsim.b", "sgsim.c"]]

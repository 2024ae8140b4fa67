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

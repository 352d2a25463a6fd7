"""Structure the import linter cannot see: no private name crosses a package boundary."""

from __future__ import annotations

import ast

from conftest import ROOT

SRC = ROOT / "src"


def _package(module: str) -> str:
    """mlsd.models.train -> mlsd.models; mlsd.spec -> mlsd.spec."""
    return ".".join(module.split(".")[:2])


def test_no_private_name_is_imported_from_another_package():
    crossings = []
    for path in sorted((SRC / "mlsd").rglob("*.py")):
        module = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith("mlsd"):
                continue
            private = [a.name for a in node.names if a.name.startswith("_") and a.name[1] != "_"]
            if private and _package(node.module) != _package(module):
                crossings.append(f"{module} imports {', '.join(private)} from {node.module}")
    assert not crossings, "promote or move them:\n" + "\n".join(crossings)


def _task_kind_literals() -> dict[str, int]:
    """Per module outside mlsd.tasks and mlsd.spec: string constants naming a task kind."""
    from mlsd.tasks import NAMES

    counts = {}
    for path in sorted((SRC / "mlsd").rglob("*.py")):
        relative = path.relative_to(SRC / "mlsd").as_posix()
        if relative.startswith(("tasks/", "spec/")):
            continue
        tree = ast.parse(path.read_text(), str(path))
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
        }
        n = sum(
            isinstance(node, ast.Constant) and node.value in NAMES and id(node) not in docstrings
            for node in ast.walk(tree)
        )
        if n:
            counts[relative] = n
    return counts


def test_code_asks_the_task_instead_of_naming_it():
    # What differs by task kind lives in mlsd.tasks; a name compared elsewhere is a fact
    # written twice, and the next task kind would have to find every copy.
    counts = _task_kind_literals()
    assert sum(counts.values()) <= 20, counts

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

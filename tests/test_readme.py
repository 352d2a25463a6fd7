"""The Python examples of the README and docs/ run as written (so the docs stay true).

Blocks fenced ```py talk to a running server; tests/e2e runs the same calls against one."""

from __future__ import annotations

import re

from conftest import ROOT


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("MLSD_HOME", str(tmp_path / "ws"))
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    blocks = [
        block
        for page in pages
        for block in re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
    ]
    assert blocks
    for block in blocks:
        scope: dict = {}
        exec(compile(block, "README.md", "exec"), scope)
        if "X" in scope:
            assert scope["X"].shape == (
                len(scope["data"].frame),
                len(scope["fitted"].feature_names),
            )

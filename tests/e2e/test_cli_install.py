"""Installing mlsd: the package metadata setuptools reads without deprecation warnings."""

from __future__ import annotations

import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_license_is_an_spdx_expression_not_a_table():
    # setuptools warns at every install that `license = {text = ...}` stops working in
    # 2027-02; the SPDX string form is the one it keeps.
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    assert project["license"] == "Apache-2.0"
    assert not any("License ::" in c for c in project.get("classifiers", []))
